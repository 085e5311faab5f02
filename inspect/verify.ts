// `strata verify`: recompute what a store's metadata claims and list every
// disagreement with the file it is about. Nothing is written; layer files are
// read through tar-split reassembly (read-only, O_NOATIME where allowed).
//
// Modern store: image id = sha256 of the config bytes; each layer's ChainID
// from its parent and DiffID; DiffID = sha256 of the tar rebuilt from
// tar-split.json.gz and the driver's files (CRC-64 per file); `size` = what
// applyDiff returns (Σ tar entry sizes on the naive path, directory.Size of the
// diff dir on the native overlay2/aufs path); every cache-id, mount-id and
// init-id has its driver directory; parents exist.
// Legacy store: parents, driver directories, tar-data.json.gz reassembly
// (CRC-64 per file; DiffID against .migration-diffid when the 1.10 migration
// left one), layersize against the era's sizing (StoreSize for docker 0.6,
// directory.Size of an aufs diff for 0.7+).
// Registry v1 tree: the layer blob decompresses and parses, json Size matches
// its content, a "sha256:" _checksum matches sha256(json + "\n" + blob).
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { TarParser } from '../archive/tar-reader.ts';
import { driverDirsOf, type DriverDirs } from './driver-dirs.ts';
import { layoutFor } from '../drivers/all.ts';
import { chainIdOf, imageIdOf } from '../layerstore/digests.ts';
import { directorySize } from '../archive/tree-size.ts';
import { graphStoreSize } from './layer-sizes.ts';
import type { LayerRecord, StoreModel } from '../layerstore/model.ts';
import type { Problem } from '../layerstore/problems.ts';
import { TEXT_CAP, describeFsError, openRegular, readFileReadOnly } from '../sys/read-only-files.ts';
import { DirFileGetter, TarSplitFormatError, digestLayer, readTarSplit } from '../layerstore/tar-split.ts';

export interface VerifyCounts {
  images: number;
  layers: number;
  /** layers whose tar was rebuilt from tar-split and hashed */
  layersReassembled: number;
  /** bytes of the rebuilt tars */
  bytesReassembled: number;
  containers: number;
  tags: number;
}

export interface VerifyReport {
  root: string;
  kind: string;
  driver: string | null;
  checked: VerifyCounts;
  /** checks that could not be made (not damage): e.g. a tarsum checksum */
  notChecked: Problem[];
  /** every problem of the store, reading included */
  problems: Problem[];
  ok: boolean;
}

export interface VerifyOptions {
  /** rebuild layer tars from tar-split and hash them (default true) */
  content?: boolean;
}

/** Σ of the sizes tar-split records (moby's naive ApplyDiff size: Σ tar header sizes). */
async function tarSplitSizeSum(file: string): Promise<number> {
  let total = 0;
  for await (const e of readTarSplit(file)) if (e.type === 'file') total += e.size;
  return total;
}

export async function verifyStore(model: StoreModel, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const content = opts.content ?? true;
  const problems = model.problems;
  const notChecked: Problem[] = [];
  const counts: VerifyCounts = { images: model.images.size, layers: model.layers.size, layersReassembled: 0, bytesReassembled: 0, containers: model.containers.length, tags: model.tags.length };
  const dirs = driverDirsOf(model);

  const reassemble = async (layer: LayerRecord, filesDir: string): Promise<string | null> => {
    try {
      const d = await digestLayer(layer.tarSplit!, new DirFileGetter(filesDir), (p, m) => problems.add(p, m));
      counts.layersReassembled++;
      counts.bytesReassembled += d.tarSize;
      return d.diffId;
    } catch (e) {
      if (e instanceof TarSplitFormatError) problems.add(layer.tarSplit!, e.message.slice(layer.tarSplit!.length + 2));
      else problems.add(layer.tarSplit!, `cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
      return null;
    }
  };

  if (model.kind === 'modern') {
    for (const img of model.images.values()) {
      try {
        const actual = imageIdOf(readFileReadOnly(img.configPath));
        if (actual !== img.id) problems.add(img.configPath, `content hashes to ${actual}, not the image id ${img.id} its name says`);
      } catch {
        // unreadable: already reported by the reader
      }
      if (img.parent && !model.images.has(img.parent)) {
        problems.add(path.join(model.metaDir, 'imagedb', 'metadata', 'sha256', img.id.slice(7), 'parent'), `parent image ${img.parent} is not in imagedb`);
      }
    }
    // every parent file on a loop is part of it: each is named
    for (const loop of parentLoops(model.images.keys(), (id) => model.images.get(id)?.parent ?? null)) {
      const text = `image parent chain loops: ${loop.map(short).join(' → ')} → ${short(loop[0])}`;
      for (const id of loop) problems.add(path.join(model.metaDir, 'imagedb', 'metadata', 'sha256', id.slice(7), 'parent'), text);
    }
    for (const loop of parentLoops(model.layers.keys(), (k) => model.layers.get(k)?.parent ?? null)) {
      const text = `layer parent chain loops: ${loop.map(short).join(' → ')} → ${short(loop[0])}`;
      for (const k of loop) problems.add(path.join(model.layers.get(k)!.dir, 'parent'), text);
    }
    const links = dirs?.layout.links;
    if (dirs && links) {
      for (const p of links.problems(dirs.home)) problems.add(p.path, p.message);
      for (const layer of model.layers.values()) checkOverlay2Lowers(model, layer, dirs);
    }
    for (const layer of model.layers.values()) await verifyModernLayer(model, layer, dirs!, content, reassemble);
    for (const c of model.containers) {
      if (c.driver && c.driver !== model.driver) continue;
      const md = path.join(model.metaDir, 'layerdb', 'mounts', c.id);
      const mountGone = c.mountId ? dirs!.unreachable(c.mountId) : null;
      const initGone = c.initId ? dirs!.unreachable(c.initId) : null;
      if (mountGone) problems.add(path.join(md, 'mount-id'), `container RW layer ${c.mountId}: ${mountGone}`);
      if (initGone) problems.add(path.join(md, 'init-id'), `container init layer ${c.initId}: ${initGone}`);
      if (c.parentLayer && !model.layers.has(c.parentLayer)) problems.add(path.join(md, 'parent'), `parent layer ${c.parentLayer} is not in layerdb`);
      const img = c.imageId ? model.images.get(c.imageId) : undefined;
      if (img && c.parentLayer && img.layers[img.layers.length - 1] !== c.parentLayer) {
        problems.add(path.join(md, 'parent'), `parent layer ${c.parentLayer} is not the top layer of the container's image ${img.id}`);
      }
    }
  } else if (model.kind === 'legacy') {
    for (const layer of model.layers.values()) await verifyLegacyLayer(model, layer, dirs!, content, reassemble, notChecked);
    for (const c of model.containers) {
      if (!dirs || (c.driver && c.driver !== model.driver && layoutFor(c.driver)?.graphdriver !== false)) continue;
      const own = dirs.filesDir(c.id);
      if (own.dir === null) problems.add(c.configPath, `container layer: ${own.reason}`);
    }
  } else {
    for (const layer of model.layers.values()) await verifyRegistryLayer(model, layer, notChecked);
  }
  const list = problems.list;
  return {
    root: model.root, kind: model.kind, driver: model.driver, checked: counts, notChecked, problems: list,
    ok: !list.some((p) => p.severity === 'error'),
  };
}

const short = (id: string) => id.replace(/^sha256:/, '').slice(0, 12);

/**
 * Every loop of a parent relation, each once, as the ids on it (the smallest
 * first, so a loop is reported the same way whichever member a walk starts
 * from). Linear: each id is walked once.
 */
export function parentLoops(ids: Iterable<string>, parentOf: (id: string) => string | null): string[][] {
  const state = new Map<string, 'walking' | 'done'>();
  const loops: string[][] = [];
  for (const start of ids) {
    const pathIds: string[] = [];
    let cur: string | null = start;
    while (cur !== null && !state.has(cur)) {
      state.set(cur, 'walking');
      pathIds.push(cur);
      cur = parentOf(cur);
    }
    if (cur !== null && state.get(cur) === 'walking') {
      const loop = pathIds.slice(pathIds.indexOf(cur));
      const min = loop.indexOf([...loop].sort()[0]);
      loops.push([...loop.slice(min), ...loop.slice(0, min)]);
    }
    for (const id of pathIds) state.set(id, 'done');
  }
  return loops;
}

/**
 * A layout with links (overlay2): a layer's `lower` names, nearest first, the
 * driver dirs of its layerdb parent chain (moby writes the parent's link, then
 * the parent's lower). Bad entries themselves are the layout's links.problems.
 */
function checkOverlay2Lowers(model: StoreModel, layer: LayerRecord, dirs: DriverDirs): void {
  const cacheId = layer.cacheId;
  if (!cacheId || !fs.existsSync(path.join(dirs.home, cacheId))) return;
  const lowers = dirs.recordedLowers(cacheId);
  if (lowers === null) return;
  const expected: string[] = [];
  const seen = new Set<string>();
  for (let p = layer.parent; p !== null; p = model.layers.get(p)?.parent ?? null) {
    if (seen.has(p) || p === layer.key) return; // a loop: reported as one
    seen.add(p);
    const c = model.layers.get(p)?.cacheId;
    if (!c) return; // the chain is broken: reported where it breaks
    expected.push(c);
  }
  if (lowers.join(':') !== expected.join(':')) {
    model.problems.add(dirs.layout.links!.lowersFile(dirs.home, cacheId), `names the layers [${lowers.map(short).join(', ')}], but layerdb's parent chain of ${short(layer.key)} is [${expected.map(short).join(', ')}]`);
  }
}

type Reassemble = (layer: LayerRecord, filesDir: string) => Promise<string | null>;

async function verifyModernLayer(model: StoreModel, layer: LayerRecord, dirs: DriverDirs, content: boolean, reassemble: Reassemble): Promise<void> {
  const problems = model.problems;
  const diffId = layer.diffId;
  const parent = layer.parent;
  if (diffId) {
    const expected = chainIdOf(parent, diffId);
    if (expected !== layer.key) {
      problems.add(layer.dir, `chain id ${layer.key} does not follow from ${parent ? `parent ${parent} and ` : ''}DiffID ${diffId} (expected ${expected})`);
    }
  }
  if (parent && !model.layers.has(parent)) problems.add(path.join(layer.dir, 'parent'), `parent layer ${parent} is not in layerdb`);
  const cacheId = layer.cacheId;
  const size = layer.size;
  if (!cacheId) return;
  const files = dirs.filesDir(cacheId);
  // a devicemapper device that is not mounted is read from the thin pool in userspace (withFilesDir)
  const fromPool = files.dir === null && dirs.rebuildsFiles;
  if (files.dir === null && !fromPool) {
    problems.add(path.join(layer.dir, 'cache-id'), `layer data ${cacheId}: ${files.reason}`);
    return;
  }
  if (!layer.tarSplit) {
    problems.add(path.join(layer.dir, 'tar-split.json.gz'), 'is missing: the layer tar (and its DiffID) cannot be rebuilt');
    return;
  }
  let tarSum: number | null = null;
  if (size !== null) {
    try {
      tarSum = await tarSplitSizeSum(layer.tarSplit);
    } catch {
      // reported by the reassembly below
    }
  }
  // nothing below needs the files: no thin device is rebuilt for it
  if (fromPool && !content && !dirs.holdsDiffs) {
    if (tarSum !== null && size !== null && tarSum !== size) problems.add(path.join(layer.dir, 'size'), `says ${size} bytes, but its tar entries total ${tarSum} bytes`);
    return;
  }
  const check = async (dir: string, where: string): Promise<void> => {
    if (size !== null) {
      const candidates = [tarSum];
      if (dirs.holdsDiffs) candidates.push(directorySize(dir));
      if (tarSum !== null && !candidates.includes(size)) {
        const what = dirs.holdsDiffs ? `its files total ${candidates[1]} bytes (directory.Size of ${dir}) and its tar entries ${tarSum}` : `its tar entries total ${tarSum} bytes`;
        problems.add(path.join(layer.dir, 'size'), `says ${size} bytes, but ${what}`);
      }
    }
    if (!content) return;
    const actual = await reassemble(layer, dir);
    if (actual && diffId && actual !== diffId) {
      problems.add(path.join(layer.dir, 'diff'), `says ${diffId}, but the tar rebuilt from tar-split and ${where} hashes to ${actual}`);
    }
  };
  if (files.dir !== null) return check(files.dir, files.dir);
  try {
    await dirs.withFilesDir(cacheId, (dir) => check(dir, `thin device ${cacheId} (read from the pool, mounted at ${dir})`));
  } catch (e) {
    problems.add(path.join(layer.dir, 'cache-id'), `layer data ${cacheId}: cannot be read from the thin pool (${(e as Error).message})`);
  }
}

async function verifyLegacyLayer(model: StoreModel, layer: LayerRecord, dirs: DriverDirs, content: boolean, reassemble: Reassemble, notChecked: Problem[]): Promise<void> {
  const problems = model.problems;
  const files = dirs.filesDir(layer.key);
  if (files.dir === null) {
    problems.add(layer.dir, `layer data: ${files.reason}`);
    return;
  }
  const sizeFile = path.join(layer.dir, 'layersize');
  if (layer.size !== null) {
    let measured: number | null = null;
    let how = '';
    if (model.era === 'docker-0.6') {
      measured = graphStoreSize(files.dir);
      how = `StoreSize of ${files.dir}`;
    } else if (dirs.holdsDiffs) {
      measured = directorySize(files.dir);
      how = `directory.Size of ${files.dir}`;
    } else if (layer.tarSplit) {
      try {
        measured = await tarSplitSizeSum(layer.tarSplit);
        how = `Σ tar entry sizes in ${layer.tarSplit}`;
      } catch {
        // reported by the reassembly below
      }
    } else {
      notChecked.push({ path: sizeFile, message: `${dirs.name} computed it against the parent layer; not recomputed`, severity: 'warning' });
    }
    if (measured !== null && measured !== layer.size) problems.add(sizeFile, `says ${layer.size} bytes, ${how} is ${measured}`);
  }
  if (!content || !layer.tarSplit) return;
  const actual = await reassemble(layer, files.dir);
  if (actual && layer.diffId && actual !== layer.diffId) {
    problems.add(path.join(layer.dir, '.migration-diffid'), `says ${layer.diffId}, the rebuilt tar hashes to ${actual}`);
  }
}

/** What a registry layer blob holds: Σ regular file sizes (+ symlink target lengths: docker's TreeSize), Σ header sizes. Streamed. */
async function blobSizes(blob: string): Promise<{ treeSize: number; headerSum: number }> {
  let treeSize = 0;
  let headerSum = 0;
  const parser = new TarParser({
    entry: (h) => {
      headerSum += h.size;
      if (h.type === 'file') treeSize += h.size;
      else if (h.type === 'symlink') treeSize += Buffer.byteLength(h.linkname, 'latin1');
    },
    data: () => undefined,
    entryEnd: () => undefined,
  });
  const input = fs.createReadStream('', { fd: openRegular(blob).fd, highWaterMark: 1 << 20 });
  const gunzip = zlib.createGunzip();
  input.on('error', (e) => gunzip.destroy(e));
  input.pipe(gunzip);
  try {
    for await (const chunk of gunzip) {
      if (!parser.ended) parser.push(chunk as Buffer);
    }
    parser.end();
  } finally {
    input.destroy();
    gunzip.destroy();
  }
  return { treeSize, headerSum };
}

async function verifyRegistryLayer(model: StoreModel, layer: LayerRecord, notChecked: Problem[]): Promise<void> {
  const problems = model.problems;
  if (!layer.blob) return; // reported by the reader
  let sizes: { treeSize: number; headerSum: number };
  try {
    sizes = await blobSizes(layer.blob);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    problems.add(layer.blob, code === 'ENOTREG' || code === 'ELOOP' ? describeFsError(e) : `is not a readable gzip'd tar (${(e as Error).message})`);
    return;
  }
  if (layer.size !== null && layer.size !== sizes.treeSize && layer.size !== sizes.headerSum) {
    problems.add(path.join(layer.dir, 'json'), `says Size ${layer.size}, the layer holds ${sizes.treeSize} bytes of files`);
  }
  const sumFile = path.join(layer.dir, '_checksum');
  let sum: string;
  try {
    sum = readFileReadOnly(sumFile, TEXT_CAP).toString('utf8').trim();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') problems.warn(sumFile, 'is missing');
    else problems.add(sumFile, describeFsError(e));
    return;
  }
  if (sum.startsWith('sha256:')) {
    const h = createHash('sha256');
    try {
      h.update(readFileReadOnly(path.join(layer.dir, 'json')));
      h.update('\n');
      hashFile(h, layer.blob);
    } catch {
      return; // the json and the blob are reported by the reader and blobSizes
    }
    const actual = `sha256:${h.digest('hex')}`;
    if (actual !== sum) problems.add(sumFile, `says ${sum}, sha256(json + "\\n" + layer) is ${actual}`);
  } else {
    notChecked.push({ path: sumFile, message: `${sum.split(':')[0]} checksums are not recomputed`, severity: 'warning' });
  }
}

function hashFile(h: ReturnType<typeof createHash>, file: string): void {
  const { fd } = openRegular(file);
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** The report as text: counts, then every problem. */
export function renderVerify(r: VerifyReport): string {
  const c = r.checked;
  let s = `${r.root}: ${r.kind} store${r.driver ? ` (${r.driver})` : ''}: ${c.images} images, ${c.layers} layers (${c.layersReassembled} rebuilt from tar-split, ${c.bytesReassembled} bytes), ${c.containers} containers, ${c.tags} references\n`;
  for (const p of r.notChecked) s += `not checked: ${p.path}: ${p.message}\n`;
  const errors = r.problems.filter((p) => p.severity === 'error').length;
  s += r.ok ? `ok${r.problems.length ? ` (${r.problems.length} warnings)` : ''}\n` : `${errors} problem${errors === 1 ? '' : 's'}\n`;
  return s;
}
