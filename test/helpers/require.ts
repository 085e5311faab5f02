// Prerequisites for tests that need root, a kernel feature, a VM or dockerd.
// A user without one sees the test skipped with the reason printed; CI sets
// STRATA_REQUIRE_ALL=1 and then a missing prerequisite fails the test instead.
import test from 'ava';
import { execFileSync } from 'node:child_process';

export const requireAll = process.env.STRATA_REQUIRE_ALL === '1';
export const isRoot = process.getuid?.() === 0;

/**
 * `test` (or `test.serial` with serial) when `ok`; otherwise a skipped test,
 * or under STRATA_REQUIRE_ALL=1 a test that fails naming the missing prerequisite.
 */
export function when(ok: boolean, reason: string, opts: { serial?: boolean } = {}): typeof test {
  const base = (opts.serial ? test.serial : test) as typeof test;
  if (ok) return base;
  if (requireAll) {
    const failing = ((title: string) =>
      base(title, (t) => t.fail(`missing prerequisite (STRATA_REQUIRE_ALL=1): ${reason}`))) as unknown as typeof test;
    return failing;
  }
  process.stderr.write(`skipping tests that need: ${reason}\n`);
  return (opts.serial ? test.serial.skip : test.skip) as unknown as typeof test;
}

/** Tests that need root (mknod, mounts, chown, trusted.* xattrs). */
export const asRoot = (opts: { serial?: boolean } = {}) => when(isRoot, 'root (run the tests as root)', opts);

/** Is `tool` on the PATH (as the shell would find it)? */
export function hasTool(tool: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
