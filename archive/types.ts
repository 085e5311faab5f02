// Types shared by the tar engine, the change walkers and the drivers.
//
// Paths inside the engine are *raw byte strings*: a JS string whose code units
// are the path's bytes (latin1 decoding). Layer tars carry arbitrary bytes in
// names, and this keeps them exact while still allowing cheap string work
// (sorting by code unit is sorting by byte). `fsPath()` turns one into the
// Buffer the fs API wants; `displayPath()` decodes it for people.

/** How whiteouts are represented in a directory that receives a layer. */
export type WhiteoutFormat =
  /** aufs / tar form: `.wh.<name>` and `<dir>/.wh..wh..opq` kept as empty files */
  | 'aufs'
  /** overlayfs form: char device 0/0 named `<name>`, `trusted.overlay.opaque=y` on the dir */
  | 'overlay'
  /**
   * overlayfs form as a `userxattr` mount reads it (in a user namespace, where
   * trusted.* is out of reach): char device 0/0, `user.overlay.opaque=y`
   */
  | 'overlay-userxattr'
  /** a flat tree (vfs, btrfs, devicemapper, a mounted union): whiteouts remove, no marker kept */
  | 'none';

/** moby archive.ChangeType values, with the letters `docker diff` prints. */
export enum ChangeKind {
  Modify = 0,
  Add = 1,
  Delete = 2,
}

export const changeLetter: Record<ChangeKind, string> = {
  [ChangeKind.Modify]: 'C',
  [ChangeKind.Add]: 'A',
  [ChangeKind.Delete]: 'D',
};

/** One change, `path` absolute from the layer root ('/etc/passwd'), raw byte string. */
export interface Change {
  path: string;
  kind: ChangeKind;
}

/** Order changes like moby's changeList sort: by path, then kind. */
export function sortChanges(changes: Change[]): Change[] {
  return changes.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : a.kind - b.kind));
}

/** Raw byte string → Buffer for fs calls. */
export function fsPath(raw: string): Buffer {
  return Buffer.from(raw, 'latin1');
}

/** A JS (UTF-8) string such as a user-given directory → raw byte string. */
export function rawPath(s: string): string {
  return Buffer.from(s, 'utf8').toString('latin1');
}

/** Raw byte string → readable text (invalid UTF-8 becomes U+FFFD). */
export function displayPath(raw: string): string {
  return Buffer.from(raw, 'latin1').toString('utf8');
}

/** A message line past this many characters keeps its head (the entry's name) and tail (the cause). */
const MAX_LINE = 8192;

/**
 * Text for one line of a message: control characters (a name may hold any
 * byte) shown as \xHH, and a line made huge by a huge name (a PAX path may
 * be megabytes) cut in the middle, saying how much was left out.
 */
export function oneLine(text: string): string {
  let s = text.replace(/[\x00-\x1f\x7f]/g, (c) => '\\x' + c.charCodeAt(0).toString(16).padStart(2, '0'));
  if (s.length > MAX_LINE) s = `${s.slice(0, 6144)} …(${s.length - 7168} characters left out)… ${s.slice(-1024)}`;
  return s;
}

export const WHITEOUT_PREFIX = '.wh.';
export const WHITEOUT_META_PREFIX = '.wh..wh.';
export const WHITEOUT_LINK_DIR = '.wh..wh.plnk';
export const WHITEOUT_OPAQUE_DIR = '.wh..wh..opq';
export const OVERLAY_OPAQUE_XATTR = 'trusted.overlay.opaque';
export const OVERLAY_USER_OPAQUE_XATTR = 'user.overlay.opaque';

/** The opaque-dir xattr of an overlayfs form, or null for the forms without one. */
export function overlayOpaqueXattr(f: WhiteoutFormat): string | null {
  return f === 'overlay' ? OVERLAY_OPAQUE_XATTR : f === 'overlay-userxattr' ? OVERLAY_USER_OPAQUE_XATTR : null;
}
