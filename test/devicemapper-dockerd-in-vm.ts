// Run in the VM (test/devicemapper-dockerd.test.ts boots it): a real dockerd
// 20.10 on devicemapper (loop-lvm, small loop files; no udev there, hence
// dm.override_udev_sync_check) builds the oracle's sample store (an import, a
// Dockerfile build, one container run: test/oracle/store.ts); after a clean
// stop its data root (on tmpfs: dockerd's bolt files need a shared mmap, which
// 9p refuses) is packed with `tar -S` into <out>/data-root.tar, and what it
// built into <out>/store.json.
//   node --import=tsx test/devicemapper-dockerd-in-vm.ts <out>
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startDockerd } from './oracle/dockerd.ts';
import { buildSampleStore } from './oracle/store.ts';

const out = process.argv[2]!;
const opts = ['dm.override_udev_sync_check=true', 'dm.loopdatasize=4G', 'dm.loopmetadatasize=256M', 'dm.basesize=2G'];
const d = await startDockerd({ driver: 'devicemapper', dir: '/tmp/dmd', extraArgs: opts.flatMap((o) => ['--storage-opt', o]), startTimeoutMs: 300_000 });
let store;
try {
  store = await buildSampleStore(d);
} catch (e) {
  process.stderr.write(d.logTail(40) + '\n');
  throw e;
} finally {
  const report = await d.stop({ timeoutMs: 120_000 });
  process.stderr.write(`dockerd stopped: ${JSON.stringify(report.exit)} forced=${report.forced}\n`);
}
execFileSync('tar', ['-C', d.dataRoot, '-cSf', path.join(out, 'data-root.tar'), '.']);
fs.writeFileSync(path.join(out, 'store.json'), JSON.stringify(store));
