// The fast path (balena-engine's storagemigration, done our way): an image
// layer's aufs diff dir becomes the target's diff dir by hard links, whiteouts
// converted to the overlay form. O(entries), not O(bytes): no file's data is
// read or written. Only read-only image layers take it — a container's rw
// (and -init) layer is an overlay upperdir the kernel writes in place, so a
// linked inode there would let a write reach the source.
//
//   .wh.<x>          → char device 0/0 <x>, with the marker's owner and times
//   .wh..wh..opq     → trusted.overlay.opaque=y on its directory
//   .wh..wh.plnk/    aufs's pseudo-links (a copied-up hardlinked file kept under
//   .wh..wh.orph/    its inode number): the names elsewhere in the diff that
//   other .wh..wh.*  use them are links of the same inode already, so linking
//                    those names resolves them; the bookkeeping itself is dropped
import * as fs from 'node:fs';
import * as path from 'node:path';
import { copyTree } from '../archive/copy-tree.ts';
import { removeTree } from '../archive/remove-tree.ts';
import { OVERLAY_OPAQUE_XATTR, WHITEOUT_META_PREFIX, WHITEOUT_OPAQUE_DIR, WHITEOUT_PREFIX } from '../archive/types.ts';
import type { DiffFormat } from '../archive/diff-format.ts';
import { tarSplitMembers, DirFileGetter } from '../layerstore/tar-split.ts';
import * as sys from '../sys/syscalls.ts';
import { MigrateError } from './plan.ts';

/** The diff-dir forms the fast path converts between (source form → target form). */
export function canLinkDiff(from: DiffFormat | null, to: DiffFormat | undefined): boolean {
  return from === 'aufs' && to === 'overlay';
}

/**
 * Fill the empty diff dir `dst` with hard links of the aufs diff dir `src`
 * (same filesystem), whiteouts converted (see above); `src` is only read.
 * Directories, symlinks and devices are new inodes with the source's owner,
 * mode, xattrs and ns times (copyTree's hardlink mode).
 */
export function linkAufsDiff(src: string, dst: string): void {
  copyTree(src, dst, { mode: 'hardlink' });
  convertWhiteouts(src, dst);
}

/** Times of a directory whose entries the conversion changed, set back from its source. */
function restoreTimes(src: string, dst: string): void {
  const st = fs.lstatSync(src, { bigint: true });
  sys.lutimensNs(dst, st.mtimeNs, st.atimeNs);
}

/** A marker the aufs form cannot hold (the source is not a diff dir aufs wrote): refused naming it. */
function notAufs(src: string, name: string, why: string): MigrateError {
  return new MigrateError(`${path.join(src, name)}: ${why}; not an aufs diff dir, the source is untouched`);
}

function convertWhiteouts(src: string, dst: string): void {
  let changed = false;
  for (const e of fs.readdirSync(dst, { withFileTypes: true })) {
    const d = path.join(dst, e.name);
    const hides = e.name.startsWith(WHITEOUT_PREFIX) && !e.name.startsWith(WHITEOUT_META_PREFIX) ? e.name.slice(WHITEOUT_PREFIX.length) : null;
    if ((e.name === WHITEOUT_OPAQUE_DIR || hides !== null) && !e.isFile()) throw notAufs(src, e.name, 'a whiteout marker that is not a regular file');
    if (hides === '' || hides === '.' || hides === '..') throw notAufs(src, e.name, `a whiteout of ${JSON.stringify(hides)}, which names no entry`);
    if (hides !== null && fs.lstatSync(path.join(dst, hides), { throwIfNoEntry: false })) throw notAufs(src, e.name, `a whiteout of ${JSON.stringify(hides)}, which the same layer holds`);
    if (e.name === WHITEOUT_OPAQUE_DIR) {
      fs.unlinkSync(d); // a name of the source's marker inode: only this name goes
      sys.lsetxattr(dst, OVERLAY_OPAQUE_XATTR, Buffer.from('y'));
      changed = true;
    } else if (e.name.startsWith(WHITEOUT_META_PREFIX)) {
      removeTree(d);
      changed = true;
    } else if (e.name.startsWith(WHITEOUT_PREFIX)) {
      const st = fs.lstatSync(d, { bigint: true });
      fs.unlinkSync(d);
      const hidden = path.join(dst, e.name.slice(WHITEOUT_PREFIX.length));
      sys.mknod(hidden, sys.S_IFCHR, 0);
      fs.lchownSync(hidden, Number(st.uid), Number(st.gid));
      sys.lutimensNs(hidden, st.mtimeNs, st.atimeNs);
      changed = true;
    } else if (e.isDirectory()) convertWhiteouts(path.join(src, e.name), d);
  }
  if (changed) restoreTimes(src, dst);
}

/**
 * The fast path's check, O(files): every regular file the layer's tar-split
 * names is, in `dst`, the very inode it is in `src` with the recorded size —
 * so the reassembled tar is the source's, byte for byte, and its DiffID the
 * one the source's files give (`strata verify` rehashes it). The first
 * mismatch, or null.
 */
export async function linkedFilesProblem(tarSplit: string, src: string, dst: string): Promise<string | null> {
  const from = new DirFileGetter(src);
  const to = new DirFileGetter(dst);
  const statOf = (g: DirFileGetter, name: string) => {
    const fd = g.open(name);
    try {
      return fs.fstatSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  };
  for await (const m of tarSplitMembers(tarSplit)) {
    // whiteouts are 'file' entries of the tar form; the conversion made them devices and xattrs
    if (m.header.type !== 'file' || path.posix.basename(m.header.name).startsWith(WHITEOUT_PREFIX)) continue;
    let a: fs.Stats;
    let b: fs.Stats;
    try {
      a = statOf(from, m.header.name);
      b = statOf(to, m.header.name);
    } catch (e) {
      return `${to.where(m.header.name)}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`;
    }
    if (a.ino !== b.ino || a.dev !== b.dev) return `${to.where(m.header.name)}: not a link of ${from.where(m.header.name)}`;
    if (b.size !== m.header.size) return `${to.where(m.header.name)}: ${b.size} bytes, the layer's tar records ${m.header.size}`;
  }
  return null;
}
