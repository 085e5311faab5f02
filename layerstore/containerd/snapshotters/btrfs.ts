// containerd's btrfs snapshotter (snapshots/btrfs/btrfs.go): each snapshot
// is a subvolume named by its id under the directory of its kind — active/,
// view/ (read-only snapshots of the parent's) and snapshots/ (committed: a
// read-only snapshot of the active one, which is then deleted) — holding the
// whole file system. An active snapshot's usage (and the figure recorded at
// commit) is fs.DiffUsage against its parent's committed tree, fs.DiskUsage
// without a parent.
import * as path from 'node:path';
import { isSubvolume } from '../../../drivers/btrfs/ioctl.ts';
import type { SnapshotterFacts } from '../snapshotter.ts';
import type { BackendSnapshot } from './meta-store.ts';
import { diffUsage, treeUsage } from './usage.ts';

const KIND_DIRS: Partial<Record<BackendSnapshot['kind'], string>> = { Active: 'active', View: 'view', Committed: 'snapshots' };

const own = (s: BackendSnapshot) => (s.id && KIND_DIRS[s.kind] ? path.join(KIND_DIRS[s.kind]!, s.id) : null);

export const btrfs: SnapshotterFacts = {
  name: 'btrfs',
  trees: 'full',
  idDirs: ['active', 'view', 'snapshots'],
  ownDir: own,
  tree: own,
  activeUsage: (tree, parentTree) => (parentTree === null ? treeUsage(tree) : diffUsage(parentTree, tree)),
  // a copied root (cp -a, rsync) reads the same, but btrfs send, quotas and containerd's Remove need subvolumes
  checkTree: (tree) => (isSubvolume(tree) ? null : 'is not a btrfs subvolume (a copy of the root?)'),
};
