// Copies of a generated store for tests that damage one (cp -a keeps owners,
// modes, times, xattrs such as trusted.overlay.opaque, devices and hardlinks).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export function copyStore(src: string): { root: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-copy-'));
  const root = path.join(dir, 'root');
  execFileSync('cp', ['-a', src, root]);
  return { root, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** `du -sx --block-size=1 <dir>`: bytes of disk blocks, hardlinks once, one filesystem. */
export function duBytes(dir: string): number {
  return Number(execFileSync('du', ['-sx', '--block-size=1', dir], { encoding: 'utf8' }).split('\t')[0]);
}
