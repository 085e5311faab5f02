// A tiny ext4 on a loop device, to run a driver home out of blocks or inodes;
// a btrfs on one, for the btrfs driver's tests.
// Loop devices through sys/loop.ts, whose detach waits until the kernel has
// let the device go (udev may still hold it just after umount).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { detachLoop, loopMount, type LoopMount } from '../../sys/loop.ts';
import { runningInUserNS } from '../../sys/userns.ts';
import { hasTool, isRoot } from './require.ts';

/** Why a tiny loop fs cannot be made here, or null. */
export function tinyFsMissing(): string | null {
  if (!isRoot) return 'root (loop mounts)';
  if (runningInUserNS()) return 'the initial user namespace (loop mounts are refused in a user namespace)';
  if (!hasTool('mkfs.ext4') || !hasTool('losetup')) return 'mkfs.ext4 (e2fsprogs) and losetup (util-linux)';
  return null;
}

export interface TinyFs {
  dir: string;
  /** Unmount, detach the loop device, remove the image. */
  cleanup(): void;
}

/**
 * A `sizeMiB` ext4 with no blocks reserved for root (root would write on
 * into them), and `inodes` inodes when given (mkfs rounds up a little);
 * `journal: false` leaves the journal out, for a few MiB that are all data.
 */
export function tinyExt4(sizeMiB: number, inodes?: number, opts: { journal?: boolean } = {}): TinyFs {
  return loopFs('ext4', sizeMiB, (img) => execFileSync('mkfs.ext4', ['-q', '-F', '-m', '0', '-b', '1024', ...(inodes ? ['-N', String(inodes)] : []),
    ...(opts.journal === false ? ['-O', '^has_journal'] : []), img], { stdio: 'pipe' }));
}

/** Why a loop-mounted btrfs cannot be made here, or null. */
export function loopBtrfsMissing(): string | null {
  if (!isRoot) return 'root (loop mounts)';
  if (runningInUserNS()) return 'the initial user namespace (loop mounts are refused in a user namespace)';
  if (!hasTool('mkfs.btrfs') || !hasTool('losetup')) return 'mkfs.btrfs (btrfs-progs) and losetup (util-linux)';
  if (!fs.readFileSync('/proc/filesystems', 'utf8').includes('\tbtrfs')) return 'btrfs in the kernel (modprobe btrfs)';
  return null;
}

/** A `sizeMiB` btrfs (sparse image; mkfs.btrfs wants at least ~110 MiB) on a loop device. */
export function loopBtrfs(sizeMiB = 512): TinyFs {
  return loopFs('btrfs', sizeMiB, (img) => execFileSync('mkfs.btrfs', ['-q', '-f', img], { stdio: 'pipe' }));
}

/** An image file of `sizeMiB`, formatted by `mkfs`, loop-mounted as `type`. */
function loopFs(type: string, sizeMiB: number, mkfs: (img: string) => void): TinyFs {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), `strata-${type === 'ext4' ? 'tinyfs' : type}-`));
  const img = path.join(tmp, `${type}.img`);
  const dir = path.join(tmp, 'mnt');
  let loop: LoopMount | undefined;
  try {
    fs.mkdirSync(dir);
    fs.writeFileSync(img, '');
    fs.truncateSync(img, sizeMiB * 2 ** 20);
    mkfs(img);
    loop = loopMount(img, dir, { type });
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  return {
    dir,
    cleanup() {
      try {
        try {
          loop!.unmount();
        } catch {
          // busy (a failing test leaked an fd): detach lazily so no mount or loop device outlives it
          execFileSync('umount', ['-l', dir]);
          detachLoop(loop!.device, img, { wait: false });
        }
      } finally {
        fs.rmSync(tmp, { recursive: true, force: true });
      }
    },
  };
}

/** Write into `file` until the fs refuses (ENOSPC), in ever smaller pieces: the fs is then out of blocks. */
export function fillUp(file: string): void {
  const fd = fs.openSync(file, 'a');
  try {
    for (const size of [1 << 20, 64 << 10, 1 << 10, 1]) {
      const buf = Buffer.alloc(size, 0x5a);
      for (;;) {
        try {
          if (fs.writeSync(fd, buf) < size) break;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOSPC') break;
          throw e;
        }
      }
    }
  } finally {
    fs.closeSync(fd);
  }
}
