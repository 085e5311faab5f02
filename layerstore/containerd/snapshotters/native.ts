// containerd's native snapshotter (snapshots/native/native.go): every
// active or committed snapshot is a full copy of its parent's tree
// (fs.CopyDir) at snapshots/<id>, changed in place; a view with a parent has
// no tree of its own (it bind-mounts the parent's), one without gets an empty
// snapshots/<id>. Removal renames to snapshots/rm-<id>, creation goes through
// snapshots/new-*: both are leftovers when no record names them. Usage of an
// active snapshot (and at commit) is fs.DiskUsage of the whole copy.
import * as path from 'node:path';
import type { SnapshotterFacts } from '../snapshotter.ts';
import { treeUsage } from './usage.ts';

export const native: SnapshotterFacts = {
  name: 'native',
  trees: 'full',
  idDirs: ['snapshots'],
  ownDir: (s) => (!s.id || (s.kind === 'View' && s.parent !== null) ? null : path.join('snapshots', s.id)),
  tree: (s, parentTree) => (s.kind === 'View' && s.parent !== null ? parentTree() : s.id ? path.join('snapshots', s.id) : null),
  activeUsage: (tree) => treeUsage(tree),
};
