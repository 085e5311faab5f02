// devicemapper through the conformance suite, on real dm-thin: this host's
// kernel has no device-mapper, so one VM (vm/run.sh) runs every case
// (devicemapper-in-vm.ts, under ava there) and each case here asserts its
// result, so a failure names its case and carries the VM's message.
// The same boot then writes a data root through the driver
// (fixtures/devmapper-vm-store.ts: two images, one container) onto a share,
// which the host reads back with the read-only driver (no device-mapper
// here: devices rebuilt from the pool files), digest for digest.
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseTap, startVm, vmMissing, type TapResult, type VmRun } from '../../vm/vm.ts';
import { treeDigest } from '../../archive/digest.ts';
import { init } from '../../drivers/devicemapper/devicemapper.ts';
import { CONTAINER_ID, RW_FILE } from '../../fixtures/devmapper-vm-store.ts';
import { when } from '../helpers/require.ts';
import { CASES } from './devicemapper-cases.ts';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const missing = vmMissing();
const inVm = when(missing === null, `a VM with device-mapper: ${missing}`);

let vm: ReturnType<typeof startVm> | null = null;
let scratch: string | null = null;

/** The one VM run of the whole suite, started by the first case that asks. */
function boot(): Promise<VmRun> {
  if (!vm) {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-dm-vm-'));
    const script = 'npx ava --config test/conformance/devicemapper-in-vm.config.mjs --tap; node --import=tsx fixtures/devmapper-vm-store.ts "$1/root" "$1/digests.json"';
    vm = startVm(['bash', '-c', script, 'vm', scratch], { cwd: repo, shares: [scratch], timeoutSec: 1200 });
  }
  return vm.done;
}

function results(): Promise<TapResult[]> {
  return boot().then((r) => {
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
    const took = (await boot()).stderr.split('\n').find((l) => l.startsWith(`case ${name}: `));
    if (took) t.log(`in the VM: ${took}`);
    t.truthy(r, `the VM's run has no result for ${name}`);
    t.true(r!.ok, r!.detail);
    t.false(r!.skip, `${name} was skipped in the VM: ${r!.detail}`);
  });
}

inVm('devicemapper: a store the driver wrote in the VM, read on the host read-only: every layer digests as it did in the VM', async (t) => {
  t.timeout(25 * 60_000);
  const r = await boot();
  const file = path.join(scratch!, 'digests.json');
  t.true(fs.existsSync(file), `the VM wrote no store (exit ${r.code}): ${r.stderr.slice(-2000)}`);
  const want = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, string>;
  t.is(Object.keys(want).length, 5, 'three image layers, the init layer and the RW layer');
  const d = await init(path.join(scratch!, 'root', 'devicemapper'), [], { mode: 'read-only' });
  t.teardown(() => d.cleanup());
  for (const [id, digest] of Object.entries(want)) {
    const dir = await d.get(id);
    try {
      t.is(await treeDigest(dir), digest, `layer ${id}`);
    } finally {
      await d.put(id);
    }
  }
  const mountId = Object.keys(want).find((id) => !id.endsWith('-init') && want[`${id}-init`] !== undefined)!;
  const changes = await d.changes(mountId, `${mountId}-init`);
  t.deepEqual(changes.map((c) => c.path), [`/${RW_FILE}`], `the container ${CONTAINER_ID.slice(0, 12)} changed one file`);
});
