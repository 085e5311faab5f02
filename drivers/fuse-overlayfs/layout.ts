// fuse-overlayfs's on-disk layout (read, not driven): overlay2's
// (drivers/overlay2/layout.ts), with the whiteouts fuse-overlayfs honours in
// its diff dirs (archive/diff-format.ts); diffs are the change walkers over
// the diff dirs and their recorded lowers.
import { overlay2StyleLayout } from '../overlay2/layout.ts';
import type { DriverFolder } from '../layout.ts';

export const layout = overlay2StyleLayout('fuse-overlayfs', 'fuse-overlayfs', 'diff-dirs');

export const folder: DriverFolder = { layout };
