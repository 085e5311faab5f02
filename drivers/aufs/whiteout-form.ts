// Put-time conversion of a layer's writable branch from what fuse-overlayfs
// wrote into it back to the aufs form, so diff/<id> is always what the aufs
// module would have left (what dockerd's aufs driver and every aufs reader
// expect). fuse-overlayfs 1.10, as root, writes:
//   - a deleted entry `x`            char device 0/0 `x`       → empty 0444 file `.wh.x`
//   - a dir it creates (new, or over a deleted one)
//                                    trusted.overlay.opaque=y, a `.wh..wh..opq` file
//                                    (0700) and a `.wh..opq` char 0/0
//                                    → `.wh..wh..opq` (0444) where a lower has that dir
//                                      (aufs's diropq), nothing for a new dir
//   - copied-up entries              user.fuseoverlayfs.origin → dropped
//   - a lower file copied up unchanged (it does so to every other link of a
//     lower hardlink set when one link is removed)
//                                    → removed, so the lower file, still linked to
//                                      its set, shows through as under aufs
// `.wh.` files already in the branch are aufs form and kept; fuse-overlayfs
// honours them and removes `.wh.x` itself when `x` is created again.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { OVERLAY_OPAQUE_XATTR, OVERLAY_USER_OPAQUE_XATTR, WHITEOUT_OPAQUE_DIR, WHITEOUT_PREFIX } from '../../archive/types.ts';
import * as sys from '../../sys/syscalls.ts';

const OPAQUE_XATTRS = [OVERLAY_OPAQUE_XATTR, OVERLAY_USER_OPAQUE_XATTR, 'user.fuseoverlayfs.opaque'];
/** fuse-overlayfs's own bookkeeping xattrs (and the kernel overlay's, should a branch have been mounted so) */
const UNION_XATTR = /^(user\.fuseoverlayfs\.|trusted\.overlay\.|user\.overlay\.)/;
/** where fuse-overlayfs records the lower path an upper entry was copied up from */
const ORIGIN_XATTR = 'user.fuseoverlayfs.origin';
/** the char device fuse-overlayfs leaves beside its opaque marker */
const FUSE_OPQ_DEVICE = '.wh..opq';
/** aufs's whiteouts are empty, read-only files */
const WHITEOUT_MODE = 0o444;

export interface ConversionStats {
  whiteouts: number;
  unchangedCopyUps: number;
  opaqueDirs: number;
  xattrsDropped: number;
}

/**
 * Rewrite `branch` (a layer's diff dir, unmounted) into the aufs form.
 * `lowers` are its parents' diff dirs, nearest first: an opaque marker is
 * kept only on a directory some lower also has, as aufs makes one only there.
 */
export function toAufsForm(branch: string, lowers: string[]): ConversionStats {
  const stats: ConversionStats = { whiteouts: 0, unchangedCopyUps: 0, opaqueDirs: 0, xattrsDropped: 0 };
  const stack = [''];
  while (stack.length) {
    const rel = stack.pop()!;
    const dir = path.join(branch, rel);
    convertDir(dir, rel, lowers, stats);
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) {
        stack.push(path.join(rel, e.name)); // its xattrs are read, then dropped, by convertDir
        continue;
      }
      if (e.isFile() && unchangedCopyUp(p, path.join(rel, e.name), branch, lowers)) {
        fs.unlinkSync(p);
        stats.unchangedCopyUps++;
        continue;
      }
      dropUnionXattrs(p, stats);
      if (e.isCharacterDevice() && fs.lstatSync(p).rdev === 0) {
        // the aufs whiteout first: a conversion cut short here and run again loses nothing;
        // none where no lower shows the name (a new entry renamed away), as aufs makes none there
        if (e.name !== FUSE_OPQ_DEVICE && lowerShown(path.join(rel, e.name), branch, lowers) !== null) {
          writeMarker(path.join(dir, WHITEOUT_PREFIX + e.name));
          stats.whiteouts++;
        }
        fs.unlinkSync(p);
      }
    }
  }
  return stats;
}

/** The directory's own opacity: union xattr → aufs marker (where a lower has the dir) or nothing. */
function convertDir(dir: string, rel: string, lowers: string[], stats: ConversionStats): void {
  const opaque = OPAQUE_XATTRS.some((x) => isY(xattrOf(dir, x)));
  // the marker is settled before the xattr that says so goes: a conversion cut short and run again ends the same
  if (opaque && rel !== '') { // the branch root is never opaque in aufs
    const marker = path.join(dir, WHITEOUT_OPAQUE_DIR);
    if (lowers.some((l) => fs.lstatSync(path.join(l, rel), { throwIfNoEntry: false })?.isDirectory())) {
      writeMarker(marker);
      stats.opaqueDirs++;
    } else fs.rmSync(marker, { force: true });
  }
  dropUnionXattrs(dir, stats);
}

/**
 * `p` (at `rel` in the branch) is a copy-up of the lower file at the same
 * path (fuse-overlayfs's origin xattr names it: a renamed file's names the
 * old path) of one lone link, identical to that lower file: owner, mode,
 * size, ns mtime, xattrs and bytes. Dropping it changes nothing the union
 * shows but the inode.
 */
function unchangedCopyUp(p: string, rel: string, branch: string, lowers: string[]): boolean {
  const origin = xattrOf(p, ORIGIN_XATTR);
  if (origin === null || origin.toString().replace(/\0$/, '') !== rel) return false; // stored with its C string's NUL
  const st = fs.lstatSync(p, { bigint: true });
  if (st.nlink !== 1n) return false;
  // the lower file must show through once this copy is gone: not if a dir above it was
  // made opaque meanwhile (renamed away, the dir replaced, renamed back)
  const lower = lowerShown(rel, branch, lowers);
  if (!lower) return false;
  const lt = fs.lstatSync(lower, { bigint: true });
  if (!lt.isFile() || lt.mode !== st.mode || lt.uid !== st.uid || lt.gid !== st.gid || lt.size !== st.size || lt.mtimeNs !== st.mtimeNs) return false;
  if (!sameXattrs(p, lower)) return false;
  return fs.readFileSync(p).equals(fs.readFileSync(lower));
}

/**
 * The lower entry the union shows at `rel` once `branch`'s own entry there
 * is gone: the first lower that has it, unless a whiteout of it or of a dir
 * above it, an opaque dir above it (in the branch or a nearer lower), or a
 * non-directory above it hides it. Null when none shows.
 */
export function lowerShown(rel: string, branch: string, lowers: string[]): string | null {
  const parts = rel.split(path.sep).filter(Boolean);
  for (const [i, layer] of [branch, ...lowers].entries()) {
    let dir = layer;
    let opaqueAbove = false;
    for (let k = 0; k < parts.length; k++) {
      if (k > 0 && exists(path.join(dir, WHITEOUT_OPAQUE_DIR))) opaqueAbove = true;
      if (exists(path.join(dir, WHITEOUT_PREFIX + parts[k]))) return null;
      const p = path.join(dir, parts[k]);
      const st = fs.lstatSync(p, { throwIfNoEntry: false });
      if (!st) break;
      if (k === parts.length - 1) {
        if (i > 0) return p; // the branch's own entry is the one to see through
        break;
      }
      if (!st.isDirectory()) return null;
      dir = p;
    }
    if (opaqueAbove) return null; // nothing below this layer shows there
  }
  return null;
}

const exists = (p: string): boolean => fs.lstatSync(p, { throwIfNoEntry: false }) !== undefined;

function sameXattrs(a: string, b: string): boolean {
  const own = (p: string) => sys.llistxattr(p).filter((n) => !UNION_XATTR.test(n)).sort();
  const na = own(a);
  const nb = own(b);
  if (na.join('\0') !== nb.join('\0')) return false;
  return na.every((n) => Buffer.compare(xattrOf(a, n) ?? Buffer.alloc(0), xattrOf(b, n) ?? Buffer.alloc(0)) === 0);
}

function writeMarker(p: string): void {
  fs.rmSync(p, { force: true });
  fs.writeFileSync(p, '', { mode: WHITEOUT_MODE, flag: 'wx' });
  fs.chmodSync(p, WHITEOUT_MODE); // whatever the umask
}

function dropUnionXattrs(p: string, stats: ConversionStats): void {
  let names: string[];
  try {
    names = sys.llistxattr(p);
  } catch {
    return; // a filesystem without xattrs holds none to drop
  }
  for (const n of names) {
    if (!UNION_XATTR.test(n)) continue;
    sys.lremovexattr(p, n);
    stats.xattrsDropped++;
  }
}

function xattrOf(p: string, name: string): Buffer | null {
  try {
    return sys.lgetxattr(p, name);
  } catch {
    return null;
  }
}

const isY = (v: Buffer | null): boolean => v !== null && v.length === 1 && v[0] === 0x79;
