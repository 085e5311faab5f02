// The conformance suite for devicemapper, run where device-mapper is: in the
// VM of vm/run.sh, which test/conformance/devicemapper.test.ts boots once and
// whose TAP output it asserts case by case. Each case gets its own pool.
//   ava --config test/conformance/devicemapper-in-vm.config.mjs --tap   (root, a kernel with dm-thin)
// STRATA_DM_CASES (comma-separated names) runs a subset.
import test from 'ava';
import { init } from '../../drivers/devicemapper/devicemapper.ts';
import { withDriver } from './suite.ts';
import { CASES, VM_OPTIONS } from './devicemapper-cases.ts';

const only = process.env.STRATA_DM_CASES?.split(',');
for (const [name, fn] of CASES) {
  if (only && !only.includes(name)) continue;
  test.serial(`devicemapper: ${name}`, async (t) => {
    const t0 = performance.now();
    await withDriver('devicemapper', (home) => init(home, VM_OPTIONS), fn, { log: (m) => t.log(m) });
    // the case's wall time in the VM, for the host-side log (TAP carries none)
    process.stderr.write(`case ${name}: ${Math.round(performance.now() - t0)} ms\n`);
    t.pass();
  });
}
