// What the driver home sits on: moby's FsMagic names (statfs f_type) and the
// d_type check overlay drivers need.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { mountFor } from '../sys/mountinfo.ts';

const FS_MAGIC: Record<number, string> = {
  0x61756673: 'aufs', 0x9123683e: 'btrfs', 0x28cd3d45: 'cramfs', 0xf15f: 'ecryptfs', 0xef53: 'extfs',
  0xf2f52010: 'f2fs', 0x47504653: 'gpfs', 0x72b6: 'jffs2', 0x3153464a: 'jfs', 0x6969: 'nfs', 0x858458f6: 'ramfs',
  0x52654973: 'reiserfs', 0x517b: 'smb', 0x73717368: 'squashfs', 0x01021994: 'tmpfs', 0xa501fcf5: 'vxfs',
  0x58465342: 'xfs', 0x2fc12fc1: 'zfs', 0x794c7630: 'overlayfs', 0x65735546: 'fuse',
};

/** moby's name for the filesystem under `p` (or its nearest existing ancestor), "unsupported" when unknown. */
export function backingFsName(p: string): string {
  let dir = path.resolve(p);
  while (!fs.existsSync(dir)) dir = path.dirname(dir);
  const type = fs.statfsSync(dir).type >>> 0;
  return FS_MAGIC[type] ?? 'unsupported';
}

/**
 * d_type support. Node hides DT_UNKNOWN (it falls back to lstat), so the
 * readdir test moby does cannot be made from here; the only common
 * filesystem formatted without d_type is xfs with ftype=0, which xfs_info
 * reports. Every other backing fs the overlay drivers accept has d_type.
 */
export function supportsDType(home: string): boolean {
  if (backingFsName(home) !== 'xfs') return true;
  try {
    const mnt = mountFor(home)?.mountPoint ?? home;
    return !/ftype=0/.test(execFileSync('xfs_info', [mnt], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }));
  } catch {
    return true; // no xfsprogs: assume the default (ftype=1 since xfsprogs 3.2.3)
  }
}
