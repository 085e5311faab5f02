// containerd's overlayfs snapshotter (snapshots/overlay/overlay.go):
// snapshots/<id>/fs is a snapshot's own changes (an overlay upper dir:
// whiteouts as 0/0 char devices, opaque dirs by trusted.overlay.opaque) over
// its parents' fs dirs; an active one also has snapshots/<id>/work. An
// active snapshot's usage is fs.DiskUsage of its fs dir.
import * as path from 'node:path';
import type { SnapshotterFacts } from '../snapshotter.ts';
import { treeUsage } from './usage.ts';

const own = (id: string) => path.join('snapshots', id);

export const overlayfs: SnapshotterFacts = {
  name: 'overlayfs',
  trees: 'upper',
  idDirs: ['snapshots'],
  ownDir: (s) => (s.id ? own(s.id) : null),
  tree: (s) => (s.id ? path.join(own(s.id), 'fs') : null),
  activeUsage: (tree) => treeUsage(tree),
  extraDirs: (home, s): Record<string, string> => (s.kind === 'Active' && s.id ? { WorkDir: path.join(home, own(s.id), 'work') } : {}),
};
