// containerd's btrfs snapshotter (a subvolume per snapshot) against a real
// containerd whose root is on a loop-mounted btrfs made here: see
// helpers/containerd-full-trees.ts. du without -x: each subvolume is a device
// of its own, and du -x would leave them out.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { busyboxAvailable } from '../fixtures/busybox-rootfs.ts';
import { fullTreeSnapshotterTests } from './helpers/containerd-full-trees.ts';
import { hasTool, isRoot } from './helpers/require.ts';
import { loopBtrfs, loopBtrfsMissing } from './helpers/tiny-fs.ts';
import { containerdBin } from '../fixtures/containerd.ts';

const btrfsMissing = loopBtrfsMissing();

fullTreeSnapshotterTests('btrfs', {
  ok: isRoot && fs.existsSync(containerdBin) && hasTool('ctr') && busyboxAvailable() && btrfsMissing === null,
  need: `root, containerd + ctr (apt: containerd), busybox-static and a loop-mounted btrfs${btrfsMissing ? ` (${btrfsMissing})` : ''}`,
  place: () => {
    const f = loopBtrfs(512);
    return { root: path.join(f.dir, 'containerd'), cleanup: () => f.cleanup() };
  },
  du: ['-s'],
});
