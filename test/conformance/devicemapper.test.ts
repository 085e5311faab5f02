// devicemapper through the conformance suite, on real dm-thin: this host's
// kernel has no device-mapper, so one VM (vm/run.sh) runs every case
// (devicemapper-in-vm.ts, under ava there) and each case here asserts its
// result, so a failure names its case and carries the VM's message.
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseTap, startVm, vmMissing, type TapResult } from '../../vm/vm.ts';
import { when } from '../helpers/require.ts';
import { CASES } from './devicemapper-cases.ts';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const missing = vmMissing();
const inVm = when(missing === null, `a VM with device-mapper: ${missing}`);

let vm: ReturnType<typeof startVm> | null = null;
let scratch: string | null = null;

/** The one VM run of the whole suite, started by the first case that asks. */
function results(): Promise<TapResult[]> {
  if (!vm) {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-dm-vm-'));
    vm = startVm(['npx', 'ava', '--config', 'test/conformance/devicemapper-in-vm.config.mjs', '--tap'], { cwd: repo, shares: [scratch], timeoutSec: 1200 });
  }
  return vm.done.then((r) => {
    const tap = parseTap(r.stdout);
    if (tap.length === 0) throw new Error(`the VM's ava run reported nothing (exit ${r.code}): ${r.stderr.slice(-2000)}`);
    return tap;
  });
}

test.after.always(() => {
  vm?.stop();
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
});

for (const [name] of CASES) {
  inVm(`devicemapper: ${name}`, async (t) => {
    t.timeout(25 * 60_000);
    const r = (await results()).find((x) => x.title === `devicemapper: ${name}`);
    t.truthy(r, `the VM's run has no result for ${name}`);
    t.true(r!.ok, r!.detail);
  });
}
