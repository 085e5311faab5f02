// `strata diff CONTAINER` — docker diff, read offline: the container's RW
// layer against its init layer through the driver's changes().
// `strata diff IMAGE IMAGE` — what docker has no command for (moby#12641):
// files added, changed and removed between two images, with sizes. Each image
// is flattened from its layers' tar-split records (headers and CRC-64 of
// every file: no layer data is read) where it has them; else from the
// driver's directories (the top layer's full tree for vfs/btrfs/overlay,
// the union of the diff dirs with their whiteouts for aufs/overlay2/docker 0.6);
// registry trees from their gzip'd layer blobs.
import * as fs from 'node:fs';
import * as zlib from 'node:zlib';
import { cleanRel } from '../archive/scope.ts';
import { TarParser } from '../archive/tar-reader.ts';
import type { EntryType } from '../archive/tar-header.ts';
import {
  type Change, type ChangeKind, WHITEOUT_META_PREFIX, WHITEOUT_OPAQUE_DIR, WHITEOUT_PREFIX, changeLetter, displayPath,
} from '../archive/types.ts';
import { type DiffFormat, entryRole, opaqueByXattr } from '../archive/diff-format.ts';
import { Crc64 } from '../layerstore/crc64.ts';
import { humanSize } from './docker-units.ts';
import type { StoreModel } from '../layerstore/model.ts';
import { InspectError } from '../layerstore/problems.ts';
import { describeFsError, openRegular } from '../sys/read-only-files.ts';
import { findContainer } from '../layerstore/store.ts';
import { isContainerdModel } from '../layerstore/containerd/store.ts';
import { containerdChanges } from './containerd-diff.ts';
import { driverDirsOf } from './driver-dirs.ts';
import { tarSplitMembers } from '../layerstore/tar-split.ts';
import { readDirNames } from '../sys/read-dir.ts';

// ---- container diff ---------------------------------------------------------------

/** `docker diff`: the changes of a container's RW layer (against its init layer), sorted by path. */
export async function containerChanges(model: StoreModel, ref: string): Promise<Change[]> {
  if (isContainerdModel(model)) return containerdChanges(model, ref);
  const id = findContainer(model, ref);
  const c = model.containers.find((x) => x.id === id)!;
  const dirs = driverDirsOf(model);
  if (!dirs) throw new InspectError(`${model.root} is a registry tree: it has no containers`);
  if (!c.mountId) throw new InspectError(`container ${id} has no RW layer record`, c.configPath);
  if (c.driver && c.driver !== model.driver && model.kind === 'modern') {
    throw new InspectError(`container ${id} was created with storage driver ${c.driver}; read the store with --driver ${c.driver}`, c.configPath);
  }
  let parent: string | null = null;
  let lowers: string[] | undefined;
  if (c.initId && dirs.reachable(c.initId)) parent = c.initId;
  else if (c.parentLayer) parent = model.kind === 'modern' ? model.layers.get(c.parentLayer)?.cacheId ?? null : c.parentLayer;
  if (dirs.needsStoreLowers && c.imageId) lowers = (model.images.get(c.imageId)?.layers ?? []).slice().reverse();
  try {
    return await dirs.changes(c.mountId, parent, lowers);
  } catch (e) {
    throw new InspectError(`cannot compute the changes of container ${id}: ${(e as Error).message}`, dirs.filesDir(c.mountId).dir ?? undefined);
  }
}

/** docker diff's lines: "C /etc". */
export function renderChanges(changes: Change[]): string {
  return changes.map((c) => `${changeLetter[c.kind]} ${displayPath(c.path)}\n`).join('');
}

/** JSON form: docker's API shape ({Path, Kind}) plus the letter. */
export function changesJson(changes: Change[]): { Path: string; Kind: ChangeKind; kind: string }[] {
  return changes.map((c) => ({ Path: displayPath(c.path), Kind: c.kind, kind: changeLetter[c.kind] }));
}

// ---- flattened images -----------------------------------------------------------------

export interface FlatEntry {
  type: EntryType;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkname: string;
  /** content fingerprint: CRC-64 hex from tar-split, or null (compare on demand) */
  crc: string | null;
  /** where to read the content for an on-demand comparison (directory sources) */
  file: string | null;
  /** inode identity for directory sources ("dev:ino") */
  inode: string | null;
}

type Flat = Map<string, FlatEntry>;

function removeTree(flat: Flat, rel: string, keep?: Set<string>): void {
  flat.delete(rel);
  const prefix = rel === '' ? '' : rel + '/';
  for (const k of [...flat.keys()]) if (k.startsWith(prefix) && k !== rel && !keep?.has(k)) flat.delete(k);
}

/** Apply one layer's entries (tar form: .wh.<name>, <dir>/.wh..wh..opq) to a flattened tree. */
function applyTarEntry(flat: Flat, added: Set<string>, name: string, e: FlatEntry): void {
  const rel = cleanRel(name);
  if (rel === null || rel === '') return;
  const slash = rel.lastIndexOf('/');
  const dir = slash < 0 ? '' : rel.slice(0, slash);
  const base = slash < 0 ? rel : rel.slice(slash + 1);
  if (base === WHITEOUT_OPAQUE_DIR) {
    const prefix = dir === '' ? '' : dir + '/';
    for (const k of [...flat.keys()]) if (k.startsWith(prefix) && k !== dir && !added.has(k)) flat.delete(k);
    return;
  }
  if (base.startsWith(WHITEOUT_META_PREFIX)) return;
  if (base.startsWith(WHITEOUT_PREFIX)) {
    removeTree(flat, (dir ? dir + '/' : '') + base.slice(WHITEOUT_PREFIX.length));
    return;
  }
  const old = flat.get(rel);
  if (old && old.type === 'dir' && e.type !== 'dir') removeTree(flat, rel, added);
  flat.set(rel, e);
  added.add(rel);
}

async function flattenFromTarSplit(files: string[]): Promise<Flat> {
  const flat: Flat = new Map();
  for (const f of files) {
    const added = new Set<string>();
    for await (const m of tarSplitMembers(f)) {
      const h = m.header;
      applyTarEntry(flat, added, h.name, {
        type: h.type, mode: h.mode, uid: h.uid, gid: h.gid, size: h.type === 'file' ? h.size : 0, mtime: h.mtimeSec,
        linkname: h.linkname, crc: h.type === 'file' ? (m.crc?.toString('hex') ?? '0000000000000000') : null, file: null, inode: null,
      });
    }
  }
  return flat;
}

/** Flatten from gzip'd layer tars (registry blobs), CRC-64 of every file body computed on the way. */
async function flattenFromBlobs(blobs: string[]): Promise<Flat> {
  const flat: Flat = new Map();
  for (const blob of blobs) {
    const added = new Set<string>();
    let current: { name: string; e: FlatEntry; crc: Crc64 | null } | null = null;
    const parser = new TarParser({
      entry: (h) => {
        current = {
          name: h.name, crc: h.type === 'file' ? new Crc64() : null,
          e: { type: h.type, mode: h.mode, uid: h.uid, gid: h.gid, size: h.type === 'file' ? h.size : 0, mtime: h.mtimeSec, linkname: h.linkname, crc: null, file: null, inode: null },
        };
      },
      data: (chunk) => current?.crc?.update(chunk),
      entryEnd: () => {
        const c = current!;
        if (c.crc) c.e.crc = c.crc.digest().toString('hex');
        applyTarEntry(flat, added, c.name, c.e);
        current = null;
      },
    });
    let fd: number;
    try {
      fd = openRegular(blob).fd;
    } catch (e) {
      throw new InspectError(`${blob}: layer blob ${describeFsError(e)}`, blob);
    }
    const input = fs.createReadStream('', { fd, highWaterMark: 1 << 20 });
    const gunzip = zlib.createGunzip();
    input.on('error', (e) => gunzip.destroy(e));
    input.pipe(gunzip);
    try {
      for await (const chunk of gunzip) if (!parser.ended) parser.push(chunk as Buffer);
      parser.end();
    } catch (e) {
      throw new InspectError(`${blob}: cannot be read as a gzip'd tar (${(e as Error).message})`, blob);
    } finally {
      input.destroy();
      gunzip.destroy();
    }
  }
  return flat;
}

function entryOf(st: fs.Stats, file: string, linkname: string): FlatEntry {
  const t = st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isCharacterDevice() ? 'char'
    : st.isBlockDevice() ? 'block' : st.isFIFO() ? 'fifo' : 'file';
  return {
    type: t, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, size: t === 'file' ? st.size : 0, mtime: Math.floor(st.mtimeMs / 1000),
    linkname, crc: null, file: t === 'file' ? file : null, inode: `${st.dev}:${st.ino}`,
  };
}

/** Walk a layer directory; `format` set: it is a diff dir whose whiteouts apply to what is below. */
function applyDir(flat: Flat, root: string, format: DiffFormat | null): void {
  const added = new Set<string>();
  const walk = (absRaw: Buffer, rel: string) => {
    for (const name of readDirNames(absRaw)) {
      const n = name.toString('latin1');
      const p = Buffer.concat([absRaw, Buffer.from('/'), name]);
      const r = rel ? `${rel}/${n}` : n;
      const st = fs.lstatSync(p);
      // a full-tree layer (format null) has no bookkeeping entries
      const role = format === null ? null : entryRole(n, () => st.isCharacterDevice() && st.rdev === 0, format);
      if (role && role.role !== 'content') {
        if (role.role === 'opaque') applyTarEntry(flat, added, r, entryOf(st, '', ''));
        else if (role.role === 'whiteout') {
          // a whiteout hides the layers below, never this layer's own entry of that name
          const target = rel ? `${rel}/${role.of}` : role.of;
          if (!added.has(target)) removeTree(flat, target, added);
        }
        continue;
      }
      if (format !== null && st.isDirectory() && opaqueByXattr(p, format)) {
        applyTarEntry(flat, added, `${r}/${WHITEOUT_OPAQUE_DIR}`, entryOf(st, '', ''));
      }
      applyTarEntry(flat, added, r, entryOf(st, p.toString('latin1'), st.isSymbolicLink() ? fs.readlinkSync(p, { encoding: 'buffer' }).toString('latin1') : ''));
      if (st.isDirectory()) walk(p, r);
    }
  };
  walk(Buffer.from(root), '');
}

/** The flattened file tree of an image. */
export async function flattenImage(model: StoreModel, imageId: string): Promise<Flat> {
  const img = model.images.get(imageId);
  if (!img) throw new InspectError(`no such image: ${imageId}`);
  const layers = img.layers.map((k) => model.layers.get(k));
  if (layers.some((l) => !l)) throw new InspectError(`image ${imageId} has layers missing from the store`, img.configPath);
  if (layers.every((l) => l!.tarSplit)) return flattenFromTarSplit(layers.map((l) => l!.tarSplit!));
  const dirs = driverDirsOf(model);
  if (!dirs) {
    const blobs = layers.map((l) => l!.blob);
    if (blobs.some((b) => !b)) throw new InspectError(`image ${imageId} has layers without a blob`, img.configPath);
    return flattenFromBlobs(blobs as string[]);
  }
  const dirOf = (key: string) => {
    const l = model.layers.get(key)!;
    const id = l.cacheId;
    if (!id) throw new InspectError(`layer ${key} has no cache-id`, l.dir);
    const f = dirs.filesDir(id);
    if (f.dir === null) throw new InspectError(`layer ${key}: ${f.reason}`, l.dir);
    return f.dir;
  };
  const flat: Flat = new Map();
  if (!dirs.holdsDiffs) {
    applyDir(flat, dirOf(img.layers[img.layers.length - 1]), null);
    return flat;
  }
  for (const k of img.layers) applyDir(flat, dirOf(k), dirs.diffFormat);
  return flat;
}

// ---- image diff -----------------------------------------------------------------------

export interface DiffEntry {
  path: string;
  type: EntryType;
  size: number;
}

export interface ChangedEntry {
  path: string;
  type: EntryType;
  oldSize: number;
  newSize: number;
  /** what differs: type, content, size, mode, owner, link, mtime */
  what: string[];
}

export interface ImageDiff {
  from: string;
  to: string;
  added: DiffEntry[];
  changed: ChangedEntry[];
  removed: DiffEntry[];
}

function crcOfFile(file: string): string {
  let fd: number;
  try {
    fd = openRegular(Buffer.from(file, 'latin1')).fd;
  } catch (e) {
    throw new InspectError(`${file}: ${describeFsError(e)}`, file);
  }
  try {
    const c = new Crc64();
    const buf = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      c.update(buf.subarray(0, n));
    }
    return c.digest().toString('hex');
  } finally {
    fs.closeSync(fd);
  }
}

function contentOf(e: FlatEntry): string | null {
  if (e.crc !== null) return e.crc;
  if (e.file) return crcOfFile(e.file);
  return null;
}

function differences(a: FlatEntry, b: FlatEntry): string[] {
  const what: string[] = [];
  if (a.type !== b.type) return ['type'];
  if (a.type === 'file' && !(a.inode !== null && a.inode === b.inode)) {
    if (a.size !== b.size) what.push('size');
    else if (contentOf(a) !== contentOf(b)) what.push('content');
  }
  if (a.mode !== b.mode) what.push('mode');
  if (a.uid !== b.uid || a.gid !== b.gid) what.push('owner');
  if (a.linkname !== b.linkname) what.push('link');
  if (a.type !== 'dir' && what.length === 0 && a.mtime !== b.mtime) what.push('mtime');
  return what;
}

/** Files added, changed and removed going from image `from` to image `to`. */
export async function diffImages(model: StoreModel, from: string, to: string): Promise<ImageDiff> {
  const a = await flattenImage(model, from);
  const b = await flattenImage(model, to);
  const out: ImageDiff = { from, to, added: [], changed: [], removed: [] };
  const sorted = (m: Flat) => [...m.keys()].sort();
  for (const k of sorted(b)) {
    const eb = b.get(k)!;
    const ea = a.get(k);
    if (!ea) out.added.push({ path: `/${displayPath(k)}`, type: eb.type, size: eb.size });
    else {
      const what = differences(ea, eb);
      if (what.length) out.changed.push({ path: `/${displayPath(k)}`, type: eb.type, oldSize: ea.size, newSize: eb.size, what });
    }
  }
  for (const k of sorted(a)) if (!b.has(k)) out.removed.push({ path: `/${displayPath(k)}`, type: a.get(k)!.type, size: a.get(k)!.size });
  return out;
}

export function renderImageDiff(d: ImageDiff): string {
  const sum = (xs: { size: number }[]) => xs.reduce((s, x) => s + x.size, 0);
  const lines = [
    ...d.added.map((e) => `A ${e.path}${e.type === 'dir' ? '/' : ''}  ${humanSize(e.size)}`),
    ...d.changed.map((e) => `C ${e.path}${e.type === 'dir' ? '/' : ''}  ${humanSize(e.oldSize)} → ${humanSize(e.newSize)} (${e.what.join(', ')})`),
    ...d.removed.map((e) => `D ${e.path}${e.type === 'dir' ? '/' : ''}  ${humanSize(e.size)}`),
  ].sort((x, y) => {
    const px = x.slice(2).split('  ')[0];
    const py = y.slice(2).split('  ')[0];
    return px < py ? -1 : px > py ? 1 : 0;
  });
  const grow = sum(d.added) + d.changed.reduce((s, c) => s + c.newSize - c.oldSize, 0) - sum(d.removed);
  lines.push(`${d.added.length} added (${humanSize(sum(d.added))}), ${d.changed.length} changed, ${d.removed.length} removed (${humanSize(sum(d.removed))}); size ${grow >= 0 ? '+' : '-'}${humanSize(Math.abs(grow))}`);
  return lines.map((l) => l + '\n').join('');
}
