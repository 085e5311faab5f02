// containerd's native snapshotter (full copies of each tree) against a real
// containerd on a root in the temp dir: see helpers/containerd-full-trees.ts.
import * as fs from 'node:fs';
import { busyboxAvailable } from '../fixtures/busybox-rootfs.ts';
import { fullTreeSnapshotterTests } from './helpers/containerd-full-trees.ts';
import { hasTool, isRoot } from './helpers/require.ts';
import { containerdBin } from '../fixtures/containerd.ts';

fullTreeSnapshotterTests('native', {
  ok: isRoot && fs.existsSync(containerdBin) && hasTool('ctr') && busyboxAvailable(),
  need: 'root, containerd + ctr (apt: containerd) and busybox-static',
  du: ['-sx'],
});
