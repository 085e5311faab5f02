// A snapshot's usage as containerd's snapshotters measure it (continuity
// fs/du_unix.go): allocated blocks × 512 and the count of distinct inodes
// (dev + ino), either of a whole tree (fs.DiskUsage) or of what a tree adds
// to or modifies in its parent's (fs.DiffUsage, the btrfs snapshotter's).
import * as fs from 'node:fs';
import { walkTree } from '../../../archive/tree-size.ts';
import { lgetxattr } from '../../../sys/syscalls.ts';
import { readDirNames } from '../../../sys/read-dir.ts';

export interface Usage {
  size: number;
  inodes: number;
}

type Stat = fs.BigIntStats;

const join = (dir: Buffer, name: Buffer) => Buffer.concat([dir, Buffer.from('/'), name]);
const lstat = (p: Buffer): Stat | undefined => fs.lstatSync(p, { bigint: true, throwIfNoEntry: false });

class Counter {
  private readonly seen = new Set<string>();
  size = 0;

  count(st: { dev: number | bigint; ino: number | bigint; blocks: number | bigint }): void {
    const key = `${st.dev}:${st.ino}`;
    if (this.seen.has(key)) return;
    this.seen.add(key);
    this.size += Number(st.blocks) * 512;
  }

  /** Every entry of the tree at `p` (itself too unless `skipRoot`), by full paths as Go's filepath.Walk goes. */
  tree(p: Buffer, skipRoot = false): void {
    const st = lstat(p);
    if (!st) return;
    if (!skipRoot) this.count(st);
    if (st.isDirectory()) for (const n of readDirNames(p)) this.tree(join(p, n));
  }

  usage(): Usage {
    return { size: this.size, inodes: this.seen.size };
  }
}

/** fs.DiskUsage: the whole tree at `dir`, the root included. */
export function treeUsage(dir: string): Usage {
  const c = new Counter();
  walkTree(dir, { entry: (_p, st) => (c.count(st), st.isDirectory()) });
  return c.usage();
}

/**
 * fs.DiffUsage(lower, upper): the entries of `upper` that fs.Changes reports
 * as added or modified against `lower` (its double walk: no whiteouts, a
 * directory counts only when its own mode, owner or rdev changed, not for
 * changes below it), each inode once. The root is never counted.
 */
export function diffUsage(lower: string, upper: string): Usage {
  const c = new Counter();
  compareDirs(Buffer.from(lower), Buffer.from(upper), c);
  return c.usage();
}

function compareDirs(lower: Buffer, upper: Buffer, c: Counter): void {
  const below = new Set(readDirNames(lower).map((n) => n.toString('latin1')));
  for (const name of readDirNames(upper)) {
    const u = join(upper, name);
    const ust = lstat(u);
    if (!ust) continue;
    const l = join(lower, name);
    const lst = below.has(name.toString('latin1')) ? lstat(l) : undefined;
    if (!lst) {
      c.tree(u);
      continue;
    }
    if (!sameFile(l, lst, u, ust)) c.count(ust);
    if (!ust.isDirectory()) continue;
    // a directory over a non-directory: everything in it is new
    if (lst.isDirectory()) compareDirs(l, u, c);
    else c.tree(u, true);
  }
}

const NS = 1_000_000_000n;

/** continuity's sameFile: stat, then capabilities, then (not for directories) size, mtime and, for truncated times, the content. */
function sameFile(a: Buffer, as: Stat, b: Buffer, bs: Stat): boolean {
  if (as.dev === bs.dev && as.ino === bs.ino) return true;
  if (as.mode !== bs.mode || as.uid !== bs.uid || as.gid !== bs.gid || as.rdev !== bs.rdev) return false;
  if (!sameCapability(a, b)) return false;
  if (as.isDirectory()) return true;
  if (as.size !== bs.size) return false;
  if (as.mtimeNs / NS !== bs.mtimeNs / NS) return false;
  const [an, bn] = [as.mtimeNs % NS, bs.mtimeNs % NS];
  if (an === 0n && bn === 0n) {
    if (as.isSymbolicLink()) return fs.readlinkSync(a, 'buffer').equals(fs.readlinkSync(b, 'buffer'));
    return as.size === 0n || sameContent(a, b);
  }
  return an === bn;
}

function sameCapability(a: Buffer, b: Buffer): boolean {
  const [x, y] = [lgetxattr(a, 'security.capability'), lgetxattr(b, 'security.capability')];
  return (x ?? Buffer.alloc(0)).equals(y ?? Buffer.alloc(0));
}

function sameContent(a: Buffer, b: Buffer): boolean {
  const [fa, fb] = [fs.openSync(a, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW), fs.openSync(b, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW)];
  try {
    const [ba, bb] = [Buffer.alloc(32 << 10), Buffer.alloc(32 << 10)];
    for (;;) {
      const [na, nb] = [fs.readSync(fa, ba), fs.readSync(fb, bb)];
      if (na !== nb || !ba.subarray(0, na).equals(bb.subarray(0, nb))) return false;
      if (na === 0) return true;
    }
  } finally {
    fs.closeSync(fa);
    fs.closeSync(fb);
  }
}
