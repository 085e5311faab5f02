// How a diff dir (a layer's own changes, as aufs, overlay2 or fuse-overlayfs keep
// them) records deletions and opaque directories. One table, read by the change
// walker (changes.ts) and by inspect's image flattener, so both agree.
//
//   aufs            `.wh.<name>` hides <name>; `.wh..wh..opq` makes the dir opaque;
//                   other `.wh..wh.*` (plnk, orph, aufs) are aufs's own bookkeeping.
//   overlay         a char device 0/0 hides its own name; `trusted.overlay.opaque=y`
//                   on a dir makes it opaque. `.wh.` names are ordinary files here:
//                   the kernel shows them.
//   overlay-userxattr  the same as a `userxattr` mount reads it: `user.overlay.opaque=y`.
//   fuse-overlayfs  what fuse-overlayfs honours (checked on this machine, 1.10):
//                   both of the above, any entry named `.wh.<name>` (whatever its
//                   type) hides <name> and is never shown, and opacity comes from
//                   `.wh..wh..opq` or the trusted.overlay / user.overlay /
//                   user.fuseoverlayfs `opaque=y` xattrs. The `.wh..opq` char device
//                   it leaves in dirs it recreates is therefore a whiteout of `.opq`,
//                   not a marker: it alone does not make the dir opaque.
import { lgetxattr, type PathArg } from '../sys/syscalls.ts';
import { OVERLAY_OPAQUE_XATTR, OVERLAY_USER_OPAQUE_XATTR, WHITEOUT_META_PREFIX, WHITEOUT_OPAQUE_DIR, WHITEOUT_PREFIX } from './types.ts';

export type DiffFormat = 'aufs' | 'overlay' | 'overlay-userxattr' | 'fuse-overlayfs';

export type EntryRole =
  /** an ordinary entry of the layer */
  | { role: 'content' }
  /** hides `of` (a name in the same directory) in the layers below */
  | { role: 'whiteout'; of: string }
  /** marks the containing directory opaque */
  | { role: 'opaque' }
  /** union bookkeeping that hides nothing */
  | { role: 'internal' };

const CONTENT: EntryRole = { role: 'content' };
const OPAQUE: EntryRole = { role: 'opaque' };
const INTERNAL: EntryRole = { role: 'internal' };

/**
 * The role of directory entry `name` in a diff dir of format `fmt`.
 * `whiteoutDevice` is asked only for character devices' sake: it must say whether
 * the entry is a char device with rdev 0 (callers pass a lazy check so that the
 * common case costs no lstat).
 */
export function entryRole(name: string, whiteoutDevice: () => boolean, fmt: DiffFormat): EntryRole {
  if ((fmt === 'aufs' || fmt === 'fuse-overlayfs') && name.startsWith(WHITEOUT_PREFIX)) {
    if (name === WHITEOUT_OPAQUE_DIR) return OPAQUE;
    if (fmt === 'aufs' && name.startsWith(WHITEOUT_META_PREFIX)) return INTERNAL;
    return { role: 'whiteout', of: name.slice(WHITEOUT_PREFIX.length) };
  }
  if (fmt !== 'aufs' && whiteoutDevice()) return { role: 'whiteout', of: name };
  return CONTENT;
}

/** Whether an entry is bookkeeping rather than content (the Add walk's filter). */
export function hiddenEntry(name: string, whiteoutDevice: () => boolean, fmt: DiffFormat): boolean {
  return entryRole(name, whiteoutDevice, fmt).role !== 'content';
}

const OPAQUE_XATTRS: Record<DiffFormat, string[]> = {
  aufs: [],
  overlay: [OVERLAY_OPAQUE_XATTR],
  'overlay-userxattr': [OVERLAY_USER_OPAQUE_XATTR],
  'fuse-overlayfs': [OVERLAY_OPAQUE_XATTR, OVERLAY_USER_OPAQUE_XATTR, 'user.fuseoverlayfs.opaque'],
};

/**
 * Whether directory `dir` is opaque by xattr in format `fmt` (the marker file is the
 * caller's to notice while listing). Only 'y' counts: on 6.7+ kernels 'x' means "has
 * xattr whiteouts", not opaque.
 */
export function opaqueByXattr(dir: PathArg, fmt: DiffFormat): boolean {
  for (const name of OPAQUE_XATTRS[fmt]) {
    let v: Buffer | null = null;
    try {
      v = lgetxattr(dir, name);
    } catch {
      continue; // ENOTSUP and friends: no such marker here
    }
    if (v !== null && v.length === 1 && v[0] === 0x79) return true;
  }
  return false;
}
