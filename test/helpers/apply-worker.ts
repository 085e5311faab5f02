// Tests that must go through the apply worker: force it for the test (mode
// 'always' waits for it to start, so even a small tar is handed over) and put
// the mode back after.
import type { ExecutionContext } from 'ava';
import { applyOffload } from '../../archive/apply.ts';

export function forceApplyWorker(t: ExecutionContext): void {
  const was = applyOffload.mode;
  applyOffload.mode = 'always';
  t.teardown(() => (applyOffload.mode = was));
}
