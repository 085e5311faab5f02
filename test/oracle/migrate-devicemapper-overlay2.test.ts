// A devicemapper store (no device-mapper in this kernel; dockerd 20.10 cannot run it here)
// written by strata's devicemapper driver on real dm-thin in the VM (vm/run.sh runs
// migrate-stores.ts there, the root on a share), migrated on the host — through the read-only
// devicemapper driver — to overlay2 and proven by dockerd: see migrate-scenario.ts.
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startVm, vmMissing } from '../../vm/vm.ts';
import { strataSourceScenario } from './migrate-scenario.ts';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const vmLacks = vmMissing();

strataSourceScenario('devicemapper', 'overlay2', async (root, scratch) => {
  const vm = startVm(['node', '--import=tsx', 'test/oracle/migrate-stores.ts', root], { cwd: repo, shares: [scratch], timeoutSec: 900 });
  const r = await vm.done;
  if (r.code !== 0) throw new Error(`the VM did not write the devicemapper store (exit ${r.code}): ${r.stderr.slice(-2000)}`);
}, vmLacks ? [`a VM with device-mapper: ${vmLacks}`] : []);
