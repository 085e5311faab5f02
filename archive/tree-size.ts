// The one walk behind every size of a tree: moby's directory.Size here,
// docker 0.6's StoreSize (inspect/layer-sizes.ts) and du (inspect/df.ts) are
// visitors of walkTree, which lstats each entry once and, past
// BY_HANDLE_PAST, goes on through directory handles (one component per
// call), so a tree deeper than PATH_MAX (any tar can make one) is walked whole.
import * as fs from 'node:fs';
import { at, BY_HANDLE_PAST, openDirNoFollow, self } from './in-root.ts';
import { lstatQuiet } from '../sys/read-only-files.ts';
import { readDirNames } from '../sys/read-dir.ts';

export interface TreeVisitor {
  /** One entry, the root included; `parentDev` is its directory's st_dev. True: walk into this directory. */
  entry(p: Buffer, st: fs.Stats, parentDev: number): boolean;
  /** A directory that cannot be listed; default: throw. */
  unreadable?(p: Buffer, e: NodeJS.ErrnoException): void;
}

const SLASH = Buffer.from('/');

/**
 * Visit `root` and everything below it. `rootParentDev` is the device the
 * root is measured against (default: its own). A missing root throws.
 */
export function walkTree(root: string, v: TreeVisitor, rootParentDev?: number): void {
  const p = Buffer.from(root);
  const st = fs.lstatSync(p);
  if (v.entry(p, st, rootParentDev ?? st.dev)) walkDir(p, st.dev, v);
}

function listed(p: Buffer, list: () => Buffer[], v: TreeVisitor): Buffer[] | null {
  try {
    return list();
  } catch (e) {
    if (!v.unreadable) throw e;
    v.unreadable(p, e as NodeJS.ErrnoException);
    return null;
  }
}

function walkDir(p: Buffer, dev: number, v: TreeVisitor): void {
  if (p.length > BY_HANDLE_PAST) {
    const fd = openDirNoFollow(p);
    if (fd === null) return;
    try {
      return byHandle(fd, p, dev, v);
    } finally {
      fs.closeSync(fd);
    }
  }
  for (const n of listed(p, () => readDirNames(p), v) ?? []) {
    const q = Buffer.concat([p, SLASH, n]);
    const st = lstatQuiet(q);
    if (st && v.entry(q, st, dev)) walkDir(q, st.dev, v);
  }
}

/** The contents of the directory `fd` (at `p`), each named by one component under its directory's handle. */
function byHandle(fd: number, p: Buffer, dev: number, v: TreeVisitor): void {
  for (const n of listed(p, () => readDirNames(self(fd)), v) ?? []) {
    const q = at(fd, n.toString('latin1'));
    const st = lstatQuiet(q);
    if (!st || !v.entry(Buffer.concat([p, SLASH, n]), st, dev)) continue;
    const child = openDirNoFollow(q);
    if (child === null) continue;
    try {
      byHandle(child, Buffer.concat([p, SLASH, n]), st.dev, v);
    } finally {
      fs.closeSync(child);
    }
  }
}

/** Count an inode once: false when `st` (an inode with several links) was counted before. */
export function firstLink(seen: Set<string>, st: fs.Stats): boolean {
  if (st.nlink <= 1) return true;
  const key = `${st.dev}:${st.ino}`;
  if (seen.has(key)) return false;
  seen.add(key);
  return true;
}

/**
 * moby directory.Size (aufs DiffSize, overlay2's native ApplyDiff and
 * DiffSize): Σ st_size of everything but directories, each hardlinked inode once.
 */
export function directorySize(dir: string): number {
  let total = 0;
  const seen = new Set<string>();
  walkTree(dir, {
    entry(_p, st) {
      if (st.isDirectory()) return true;
      if (firstLink(seen, st)) total += st.size;
      return false;
    },
  });
  return total;
}
