// overlay2 through the conformance suite twice: with the native diff paths
// (diff dir export/apply, changes from the diff dir and its lowers) and with
// the naive ones forced, so native and naive are held to the same cases.
import { init } from '../../drivers/overlay2/overlay2.ts';
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
