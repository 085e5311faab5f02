// Layer change lists, as `docker diff` / the naive diff driver compute them.
//
// changesDirs      moby archive.ChangesDirs: compare two full trees.
// changesFromDiffDir  the same answer from a driver's own-changes dir (aufs diff/<id>,
//                  overlay2 <id>/diff) plus its lower diff dirs, without mounting
//                  anything: walks only the diff dir and looks entries up in the lowers.
// changesSize      moby archive.ChangesSize.
//
// All paths in Change are raw byte strings (see types.ts); every walk is
// synchronous and never follows symlinks.
import fs from 'node:fs';
import { lgetxattr, S_IFDIR, S_IFMT, S_IFREG } from '../sys/syscalls.ts';
import { type DiffFormat, entryRole, hiddenEntry, opaqueByXattr } from './diff-format.ts';
import { type Change, ChangeKind, fsPath, rawPath, sortChanges } from './types.ts';
import { type DirEntry, readDirEntries } from '../sys/read-dir.ts';

type Stat = fs.BigIntStats;
type Entry = DirEntry<Buffer>;

const CAPABILITY_XATTR = 'security.capability';
const NS = 1_000_000_000n;
const IFDIR = BigInt(S_IFDIR);
const IFMT = BigInt(S_IFMT);
const IFREG = BigInt(S_IFREG);

function lstat(raw: string): Stat | undefined {
  return fs.lstatSync(fsPath(raw), { bigint: true, throwIfNoEntry: false });
}

function readEntries(raw: string): Entry[] {
  return readDirEntries(fsPath(raw));
}

/** A user-given directory as a raw path without trailing slashes ('' for '/'). */
function rootOf(dir: string): string {
  return rawPath(dir).replace(/\/+$/, '');
}

function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a % b < 0n ? q - 1n : q;
}

/**
 * moby sameFsTimeSpec: tar (and GNU tar) keep whole seconds only, so equal
 * seconds with either side at 0 ns counts as the same time.
 */
function sameFsTimeSpec(a: bigint, b: bigint): boolean {
  if (a === b) return true;
  const as = floorDiv(a, NS);
  const bs = floorDiv(b, NS);
  return as === bs && (a - as * NS === 0n || b - bs * NS === 0n);
}

/**
 * moby statDifferent (changes_unix.go up to v25, the system.StatT version).
 * Size and mtime are skipped when `oldMode & S_IFDIR == S_IFDIR`; that mask
 * test is also true for block devices (0o060000) and sockets (0o140000), so
 * those are compared like directories (mode/owner/rdev only). Kept on purpose:
 * a change list that disagrees with dockerd's is worse than a quirk.
 */
function statDifferent(o: Stat, n: Stat): boolean {
  if (o.mode !== n.mode || o.uid !== n.uid || o.gid !== n.gid || o.rdev !== n.rdev) return true;
  if ((o.mode & IFDIR) !== IFDIR) return !sameFsTimeSpec(o.mtimeNs, n.mtimeNs) || o.size !== n.size;
  return false;
}

/** moby FileInfo.isDir: the S_IFDIR bit, so again true for block devices and sockets. */
function dirLike(st: Stat): boolean {
  return (st.mode & IFDIR) !== 0n;
}

function realDir(st: Stat): boolean {
  return (st.mode & IFMT) === IFDIR;
}

function capability(raw: string): Buffer | null {
  try {
    return lgetxattr(fsPath(raw), CAPABILITY_XATTR);
  } catch {
    return null; // moby ignores lgetxattr errors here (`info.capability, _ = ...`)
  }
}

/**
 * The Modify test for an entry present in both trees. security.capability is
 * read (an FFI call per side) only for two regular files whose stat agrees:
 * any other pair is either already different or, in practice, cannot carry
 * a file capability.
 */
function modified(oldRaw: string, o: Stat, newRaw: string, n: Stat): boolean {
  if (statDifferent(o, n)) return true;
  if ((n.mode & IFMT) !== IFREG) return false;
  const a = capability(oldRaw);
  const b = capability(newRaw);
  if (a === null || b === null) return (a?.length ?? 0) !== (b?.length ?? 0); // nil == empty, as bytes.Equal
  return !a.equals(b);
}

const add = (out: Change[], path: string) => out.push({ path, kind: ChangeKind.Add });
const modify = (out: Change[], path: string) => out.push({ path, kind: ChangeKind.Modify });
const del = (out: Change[], path: string) => out.push({ path, kind: ChangeKind.Delete });

// ---- changesDirs ------------------------------------------------------------

/**
 * moby `archive.ChangesDirs(newDir, oldDir)`: what changed from `oldDir` to
 * `newDir`, sorted by path then kind. `oldDir` null compares against an empty
 * tree (everything Add).
 *
 * - Add for entries missing in old (and everything below an added directory);
 *   Delete for entries missing in new (only the top of a deleted subtree);
 *   Modify when mode (with type), uid, gid, rdev differ, or mtime/size for
 *   non-directories (see statDifferent), or security.capability differs.
 * - A directory with changes below it gets a Modify even if unchanged itself.
 * - A new non-directory is not descended into: replacing a directory by a
 *   file is a single Modify. (Replacing one by a block device or socket also
 *   reports each of the old directory's entries as Deleted: moby's isDir quirk.)
 * - The root is never reported. Entries that are the same inode in both trees
 *   (same dev and ino) are skipped with their subtree, as moby's walker does
 *   for hard-linked trees.
 *
 * Throws if either root is not a directory (a symlink to one is refused, where
 * moby would silently report nothing); entries vanishing mid-walk count as absent.
 */
export function changesDirs(newDir: string, oldDir: string | null): Change[] {
  const newRoot = rootOf(newDir);
  const out: Change[] = [];
  if (!lstat(newRoot || '/')?.isDirectory()) throw new Error(`changesDirs: ${newDir} is not a directory`);
  if (oldDir === null) {
    addChildren(newRoot, '', out, null);
  } else {
    const oldRoot = rootOf(oldDir);
    if (!lstat(oldRoot || '/')?.isDirectory()) throw new Error(`changesDirs: ${oldDir} is not a directory`);
    compareChildren(newRoot, oldRoot, '', true, true, out);
  }
  return sortChanges(out);
}

/** Add for every entry of directory `dirRaw` (changes named under `rel`), recursively; union bookkeeping filtered when `fmt` is given. */
function addChildren(dirRaw: string, rel: string, out: Change[], fmt: DiffFormat | null): void {
  for (const e of readEntries(dirRaw || '/')) {
    const name = e.name.toString('latin1');
    if (fmt !== null && hiddenIn(dirRaw, name, e, fmt)) continue;
    const path = `${rel}/${name}`;
    add(out, path);
    if (e.isDirectory()) addChildren(`${dirRaw}/${name}`, path, out, fmt);
  }
}

/**
 * Where a hinted comparison looks (changesDirsHinted): directories in
 * `dirty` are compared entry by entry; below a path in `full`, everything.
 */
interface Pruning {
  touched: Set<string>;
  dirty: Set<string>;
  full: Set<string>;
}

function compareChildren(newRoot: string, oldRoot: string, rel: string, newIsDir: boolean, oldIsDir: boolean, out: Change[], prune: Pruning | null = null): void {
  const oldNames = new Map<string, Entry>();
  if (oldIsDir) for (const e of readEntries(oldRoot + rel || '/')) oldNames.set(e.name.toString('latin1'), e);
  if (newIsDir) {
    for (const e of readEntries(newRoot + rel || '/')) {
      const name = e.name.toString('latin1');
      const path = `${rel}/${name}`;
      if (!oldNames.has(name)) {
        add(out, path);
        if (e.isDirectory()) addChildren(newRoot + path, path, out, null);
        continue;
      }
      oldNames.delete(name);
      // in both trees and named by no hint: the same entry (hints cover every difference)
      if (prune !== null && !prune.touched.has(path) && !prune.dirty.has(path)) continue;
      const n = lstat(newRoot + path);
      const o = lstat(oldRoot + path);
      if (!n || !o) {
        // vanished between readdir and lstat: absent on that side
        if (n) {
          add(out, path);
          if (n.isDirectory()) addChildren(newRoot + path, path, out, null);
        } else if (o) del(out, path);
        continue;
      }
      if (n.dev === o.dev && n.ino === o.ino) continue;
      const start = out.length;
      const changed = modified(oldRoot + path, o, newRoot + path, n);
      if (changed) modify(out, path);
      if (dirLike(n)) {
        // a type change is compared in full whatever the hints say
        const below = prune === null || prune.full.has(path) || realDir(n) !== realDir(o) ? null : prune;
        if (below === null || below.dirty.has(path)) compareChildren(newRoot, oldRoot, path, realDir(n), realDir(o), out, below);
        if (!changed && out.length > start) modify(out, path);
      }
    }
  }
  for (const name of oldNames.keys()) del(out, `${rel}/${name}`);
}

/**
 * Where two trees may differ, as a driver that knows it says (btrfs send):
 * raw paths ('/a/b') of entries that may have changed, been added or been
 * removed (`touched`), and of those whose whole subtree may differ
 * (`full`: rename targets, new directories). A path may name an entry in
 * either tree, or in neither; naming too much only costs time.
 */
export interface ChangeHints {
  touched: Iterable<string>;
  full: Iterable<string>;
}

/**
 * changesDirs(newDir, oldDir) computed only where `hints` say the trees may
 * differ: each directory on the way to a hinted path is listed on both sides
 * (names only in one are Adds and Deletes) and its hinted entries compared
 * exactly as changesDirs does; every other entry and subtree is taken as the
 * same in both. Equal to changesDirs when the hints cover every difference
 * (a changed inode with several links needs each of its paths hinted).
 */
export function changesDirsHinted(newDir: string, oldDir: string, hints: ChangeHints): Change[] {
  const newRoot = rootOf(newDir);
  const oldRoot = rootOf(oldDir);
  for (const [dir, raw] of [[newDir, newRoot], [oldDir, oldRoot]]) {
    if (!lstat(raw || '/')?.isDirectory()) throw new Error(`changesDirs: ${dir} is not a directory`);
  }
  const full = new Set(hints.full);
  const touched = new Set([...hints.touched, ...full]);
  const dirty = new Set<string>();
  for (const p of touched) {
    for (let i = p.lastIndexOf('/'); i > 0; i = p.lastIndexOf('/', i - 1)) {
      const dir = p.slice(0, i);
      if (dirty.has(dir)) break;
      dirty.add(dir);
    }
  }
  const out: Change[] = [];
  compareChildren(newRoot, oldRoot, '', true, true, out, { touched, dirty, full });
  return sortChanges(out);
}

// ---- changesFromDiffDir -----------------------------------------------------

export type { DiffFormat };

/** One directory of one layer, as the union sees it. */
interface LayerDir {
  raw: string;
  /** visible entries (whiteouts and aufs metadata removed) */
  entries: Map<string, Entry>;
  /** names this directory whites out in the layers below */
  whiteouts: Set<string>;
  /** a `.wh..wh..opq` marker was listed (aufs, fuse-overlayfs); xattrs are read lazily */
  opaqueMarker: boolean;
}

/** Whether entry `name` of `dirRaw` is union bookkeeping (shared by the listing and the Add walk). */
function hiddenIn(dirRaw: string, name: string, e: Entry, fmt: DiffFormat): boolean {
  return hiddenEntry(name, () => whiteoutDevice(dirRaw, name, e), fmt);
}

function whiteoutDevice(dirRaw: string, name: string, e: Entry): boolean {
  return e.isCharacterDevice() && lstat(`${dirRaw}/${name}`)?.rdev === 0n;
}

function readLayerDir(raw: string, fmt: DiffFormat): LayerDir {
  const dir: LayerDir = { raw, entries: new Map(), whiteouts: new Set(), opaqueMarker: false };
  for (const e of readEntries(raw || '/')) {
    const name = e.name.toString('latin1');
    const r = entryRole(name, () => whiteoutDevice(raw, name, e), fmt);
    if (r.role === 'content') dir.entries.set(name, e);
    else if (r.role === 'whiteout') dir.whiteouts.add(r.of);
    else if (r.role === 'opaque') dir.opaqueMarker = true;
  }
  return dir;
}

function opaque(dir: LayerDir, fmt: DiffFormat): boolean {
  return dir.opaqueMarker || opaqueByXattr(fsPath(dir.raw), fmt);
}

/** Where `name` resolves in a union of directories (nearest first): its layer index, or -1 if absent/whited out. */
function resolve(name: string, layers: LayerDir[]): number {
  for (let i = 0; i < layers.length; i++) {
    if (layers[i].entries.has(name)) return i;
    if (layers[i].whiteouts.has(name)) return -1;
  }
  return -1;
}

/**
 * The layers that make up the union view of directory `name` (found first in
 * layers[from]): that dir and the same-named dirs below it, stopping after an
 * opaque one and before a whiteout or a non-directory.
 */
function childLayers(name: string, layers: LayerDir[], from: number, fmt: DiffFormat): LayerDir[] {
  const out: LayerDir[] = [];
  for (let i = from; i < layers.length; i++) {
    const e = layers[i].entries.get(name);
    if (e === undefined) {
      if (layers[i].whiteouts.has(name)) break;
      continue;
    }
    if (!e.isDirectory()) break;
    const d = readLayerDir(`${layers[i].raw}/${name}`, fmt);
    out.push(d);
    if (opaque(d, fmt)) break;
  }
  return out;
}

/** All names visible in the union of `layers`. */
function unionNames(layers: LayerDir[]): string[] {
  const decided = new Set<string>();
  const names: string[] = [];
  for (const l of layers) {
    for (const n of l.entries.keys()) {
      if (!decided.has(n)) {
        decided.add(n);
        names.push(n);
      }
    }
    for (const w of l.whiteouts) decided.add(w);
  }
  return names;
}

/**
 * The change list of one layer stored as its own changes only (aufs
 * `diff/<id>`, overlay2 `<id>/diff`), computed from that diff dir and the
 * parent layers' diff dirs (`lowers`, nearest first), all in whiteout format
 * `format`. Gives exactly what `changesDirs(union(diffDir, ...lowers),
 * union(...lowers))` gives, where union is the overlay/aufs merged view, but
 * walks only `diffDir` and looks names up in the lowers' directory listings.
 *
 * Union rules per format are in diff-format.ts (overlay: char 0/0 and the
 * opaque xattr of the mount's namespace; aufs: `.wh.` entries; fuse-overlayfs:
 * both). As in the kernel, opacity of a layer's root directory is ignored.
 * The 6.7+ xattr whiteouts are not read. Throws if a directory cannot be read
 * or an entry vanishes (diff dirs must be quiescent).
 */
export function changesFromDiffDir(diffDir: string, lowers: string[], format: DiffFormat): Change[] {
  const out: Change[] = [];
  const upper = readLayerDir(rootOf(diffDir), format);
  const old = lowers.map((l) => readLayerDir(rootOf(l), format));
  diffLayerDir(upper, '', old, true, format, out);
  return sortChanges(out);
}

/**
 * Compare directory `rel` of the diff dir (`upper`) with its old union view
 * (`old`, empty when it was not a directory). `inherit`: whether the new view
 * of this directory still includes `old` (false below an opaque upper dir).
 */
function diffLayerDir(upper: LayerDir, rel: string, old: LayerDir[], inherit: boolean, fmt: DiffFormat, out: Change[]): void {
  for (const [name, e] of upper.entries) {
    const path = `${rel}/${name}`;
    const newRaw = `${upper.raw}/${name}`;
    const at = resolve(name, old);
    if (at < 0) {
      add(out, path);
      if (e.isDirectory()) addChildren(newRaw, path, out, fmt);
      continue;
    }
    const oldRaw = `${old[at].raw}/${name}`;
    const n = lstat(newRaw);
    const o = lstat(oldRaw);
    if (!n || !o) throw new Error(`changesFromDiffDir: ${!n ? newRaw : oldRaw} vanished during the walk`);
    if (n.dev === o.dev && n.ino === o.ino) continue;
    const start = out.length;
    const changed = modified(oldRaw, o, newRaw, n);
    if (changed) modify(out, path);
    if (dirLike(n)) {
      const below = realDir(o) ? childLayers(name, old, at, fmt) : [];
      if (realDir(n)) {
        const child = readLayerDir(newRaw, fmt);
        // opacity only matters when there is something below to hide
        const childInherit = inherit && !(below.length > 0 && opaque(child, fmt));
        diffLayerDir(child, path, below, childInherit, fmt, out);
      } else {
        // block device/socket over a directory: moby's isDir quirk deletes every old entry
        for (const c of unionNames(below)) del(out, `${path}/${c}`);
      }
      if (!changed && out.length > start) modify(out, path);
    }
  }
  if (inherit) {
    for (const w of upper.whiteouts) {
      if (!upper.entries.has(w) && resolve(w, old) >= 0) del(out, `${rel}/${w}`);
    }
  } else {
    for (const c of unionNames(old)) if (!upper.entries.has(c)) del(out, `${rel}/${c}`);
  }
}

// ---- changesSize ------------------------------------------------------------

/**
 * moby `archive.ChangesSize`: bytes of the Add/Modify entries of `changes`,
 * lstat'ed under `dir` (the last component is never followed; a symlink
 * counts its target length). Directories count 0; an inode with nlink > 1 is
 * counted once (keyed by dev+ino). Paths that no longer exist are skipped.
 */
export function changesSize(dir: string, changes: Change[]): number {
  const root = rootOf(dir);
  const seen = new Set<string>();
  let size = 0n;
  for (const c of changes) {
    if (c.kind === ChangeKind.Delete) continue;
    const st = lstat(root + (c.path.startsWith('/') ? c.path : `/${c.path}`));
    if (!st || st.isDirectory()) continue;
    if (st.nlink > 1n) {
      const key = `${st.dev}:${st.ino}`;
      if (seen.has(key)) continue;
      seen.add(key);
    }
    size += st.size;
  }
  return Number(size);
}
