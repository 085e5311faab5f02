// overlay2 through the conformance suite twice: with the native diff paths
// (diff dir export/apply, changes from the diff dir and its lowers) and with
// the naive ones forced, so native and naive are held to the same cases.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { backingFsName } from '../../drivers/backing-fs.ts';
import { init } from '../../drivers/overlay2/overlay2.ts';
import { probeNativeDiff } from '../../drivers/overlay2/probes.ts';
import { runningInUserNS } from '../../sys/userns.ts';
import { asRoot } from '../helpers/require.ts';
import { runConformance, xfsProjectQuotaHome } from './suite.ts';

const xfs = xfsProjectQuotaHome();
const common = {
  deepLayers: 128,
  diffApplyFiles: [10, 100],
  serial: true,
  // moby mounts without redirect_dir: renaming a lower directory is EXDEV, as under dockerd
  renameDirectories: false,
  // and with index=off: writing a lower file through one hardlink copies it up alone
  hardlinksBreakOnCopyUp: true,
  quota: { kind: 'filesystem' as const, ...xfs },
};

runConformance('overlay2', (home) => init(home, []), common);
runConformance('overlay2-naive', (home) => init(home, ['overlay2.force_naive_diff=true']), common);

// test/conformance/overlay2-userns.test.ts runs this file again inside a user namespace
asRoot({ serial: true })('overlay2 status: userxattr exactly in a user namespace (off tmpfs), and the native diff as its probe says', async (t) => {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-ov2-status-'));
  t.teardown(() => fs.rmSync(home, { recursive: true, force: true }));
  const d = await init(home, []);
  t.teardown(() => d.cleanup());
  const status = Object.fromEntries(d.status());
  const tmpfs = backingFsName(home) === 'tmpfs';
  t.log(`in a user namespace: ${runningInUserNS()}; home on tmpfs: ${tmpfs}; status ${JSON.stringify(status)}`);
  t.is(status.userxattr, String(runningInUserNS() && !tmpfs));
  const probe = path.join(home, 'probe');
  fs.mkdirSync(probe);
  t.is(status['Native Overlay Diff'], String(probeNativeDiff(probe, status.userxattr === 'true').native), status['Native Overlay Diff (why not)']);
});
