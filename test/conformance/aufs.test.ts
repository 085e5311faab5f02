// aufs through the conformance suite. This kernel has no aufs module, so
// every layer with parents is mounted through the FUSE union (fuse-overlayfs)
// and converted back into the aufs form at its last put; the native diff
// paths read those aufs-form diff dirs, the naive ones the mounted trees, and
// both are held to the same cases.
import * as fs from 'node:fs';
import { init } from '../../drivers/aufs/aufs.ts';
import { hasTool, isRoot, when } from '../helpers/require.ts';
import { runConformance } from './suite.ts';

const fuseMissing = !isRoot ? 'root' : !fs.existsSync('/dev/fuse') || !hasTool('fuse-overlayfs') || !hasTool('fusermount3')
  ? '/dev/fuse, fuse-overlayfs and fusermount3 (the FUSE union of aufs layers)' : null;

if (fuseMissing === null) {
  const common = {
    deepLayers: 127, // moby's aufs depth: TestMountMoreThan42Layers' 126 layers and a base
    diffApplyFiles: [10, 100],
    serial: true,
    // fuse-overlayfs (like aufs without its dirren option) refuses to rename a lower directory: EXDEV
    renameDirectories: false,
    // and it copies up one path of a lower hardlink set (aufs's pseudo-links would keep them joined)
    hardlinksBreakOnCopyUp: true,
    quota: { kind: 'unsupported' as const },
  };
  runConformance('aufs', (home) => init(home, []), common);
  runConformance('aufs-naive', (home) => init(home, ['aufs.force_naive_diff=true']), common);
} else when(false, fuseMissing)('aufs conformance through the FUSE union', () => undefined);
