// The conformance suite for devicemapper, run where device-mapper is: in the
// VM of vm/run.sh, which test/conformance/devicemapper.test.ts boots once and
// whose TAP output it asserts case by case. Each case gets its own pool.
//   ava --config test/conformance/devicemapper-in-vm.config.mjs --tap   (root, a kernel with dm-thin)
// STRATA_DM_CASES (comma-separated names) runs a subset.
// The cases' scratch (the home with its loop files, and the flat trees) is on
// an ext4 loop mount: the VM's /tmp is a tmpfs, which on its 6.1 kernel has no
// user.* xattrs, and CopyFidelity's flat tree needs them.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { init } from '../../drivers/devicemapper/devicemapper.ts';
import { loopMount, type LoopMount } from '../../sys/loop.ts';
import { withDriver } from './suite.ts';
import { CASES, VM_OPTIONS } from './devicemapper-cases.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-dm-scratch-'));
const scratch = path.join(tmp, 'mnt');
let mounted: LoopMount | null = null;

test.before(() => {
  const img = path.join(tmp, 'scratch.img');
  fs.closeSync(fs.openSync(img, 'w'));
  fs.truncateSync(img, 4 * 1024 ** 3); // sparse; the loop files in it are sparse too
  execFileSync('mkfs.ext4', ['-q', '-E', 'lazy_itable_init=1', img], { stdio: 'pipe' });
  fs.mkdirSync(scratch);
  mounted = loopMount(img, scratch);
});

test.after.always(() => {
  mounted?.unmount();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const only = process.env.STRATA_DM_CASES?.split(',');
for (const [name, fn] of CASES) {
  if (only && !only.includes(name)) continue;
  test.serial(`devicemapper: ${name}`, async (t) => {
    const t0 = performance.now();
    await withDriver('devicemapper', (home) => init(home, VM_OPTIONS), fn, { base: scratch, log: (m) => t.log(m) });
    // the case's wall time in the VM, for the host-side log (TAP carries none)
    process.stderr.write(`case ${name}: ${Math.round(performance.now() - t0)} ms\n`);
    t.pass();
  });
}
