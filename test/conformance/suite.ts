// The driver conformance suite: one set of checks every driver's test file
// runs with `runConformance(name, makeDriver, opts)`.
//
// Sources, ported (not translated):
// - moby daemon/graphdriver/graphtest: CreateEmpty, CreateBase, CreateSnap,
//   DeepLayerRead, DiffApply, Changes, SetQuota with their helpers and exact
//   trees (createBase, addManyFiles, changeManyFiles, addManyLayers, …);
// - containerd core/snapshots/testsuite: the layer cases, each a chain of
//   declarative appliers checked against a flat apply (checkSnapshots);
// - containers/storage drivers/graphtest: Echo.
// Plus ApplyDiffWhiteouts (a registry-style layer tar with `.wh.` and opaque
// markers applied over a parent) and CopyFidelity (every file kind through
// a chain), which the upstream suites only cover indirectly.
//
// Every layer built from appliers is checked twice: its mounted view against
// the flat tree (treeManifest, mtimes to the ns, directory mtimes left out),
// and through the diff side: diff(layer, parent) applied with applyDiff onto
// a fresh child of the parent must give the same tree.
//
// The checks are plain async functions that throw on failure (`checks`), so
// test/conformance/broken.test.ts can show that they do fail for broken drivers.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { exportDir } from '../../archive/export.ts';
import { manifestDiff, treeManifest, type DigestOptions } from '../../archive/digest.ts';
import { ChangeKind, changeLetter, sortChanges, type Change } from '../../archive/types.ts';
import { QuotaNotSupportedError, type Driver } from '../../drivers/driver.ts';
import { hasTool, isRoot, when } from '../helpers/require.ts';
import * as A from './appliers.ts';
import { loopMount, type LoopMount } from '../../sys/loop.ts';
import { runningInUserNS } from '../../sys/userns.ts';

// ---- options -----------------------------------------------------------------------

export interface QuotaHome {
  /** a directory on a filesystem with quotas enabled, to hold the driver's home */
  dir: string;
  cleanup: () => Promise<void>;
}

export type QuotaSetup =
  /** the driver never does quotas: SetQuota asserts moby's ErrQuotaNotSupported */
  | { kind: 'unsupported' }
  /**
   * the driver enforces quotas on a suitable filesystem: SetQuota runs in a
   * home made by `makeHome` and requires enforcement (moby required=true).
   * `missing` names a missing prerequisite (the test is then skipped with it).
   */
  | { kind: 'filesystem'; missing: string | null; kernel?: boolean; makeHome: () => Promise<QuotaHome> };

export interface ConformanceOptions {
  /** DeepLayerRead depth (moby: 128 for overlay2/fuse-overlayfs, 50 for overlay) */
  deepLayers: number;
  /** DiffApply file counts (default 10 and 100) */
  diffApplyFiles?: number[];
  /** containerd Rename moves a lower directory; overlayfs without redirect_dir cannot (default true) */
  renameDirectories?: boolean;
  quota?: QuotaSetup;
  /** run this driver's tests one at a time (drivers that mount) */
  serial?: boolean;
  /**
   * overlayfs with index=off (moby's overlay2): writing a lower-layer file that
   * has hardlinks copies up that one path, splitting it from its links. Where
   * true, CopyFidelity does not write through a hardlink of a lower layer.
   */
  hardlinksBreakOnCopyUp?: boolean;
}

/** What a check gets: the driver under test and a scratch directory on the same filesystem. */
export interface CheckContext {
  driver: Driver;
  /** scratch space for flat trees and tar files (not inside the driver home) */
  work: string;
  log: (msg: string) => void;
}

// ---- assertions -----------------------------------------------------------------------

export class ConformanceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConformanceError';
  }
}

function check(ok: unknown, msg: string): asserts ok {
  if (!ok) throw new ConformanceError(msg);
}

function checkEqual<T>(actual: T, expected: T, what: string): void {
  if (actual !== expected) throw new ConformanceError(`${what}: expected ${String(expected)}, got ${String(actual)}`);
}

// ---- helpers (moby graphtest testutil) ---------------------------------------------------

/** 64 random hex digits, like moby's stringid.GenerateRandomID. */
export function randomId(): string {
  return randomBytes(32).toString('hex');
}

/**
 * Deterministic bytes for (size, seed), built like graphtest's randomContent
 * (7 bytes per 63-bit draw, low byte first) from a SplitMix64 generator.
 * Only determinism matters: content is always regenerated to be checked.
 */
export function randomContent(size: number, seed: number): Buffer {
  let state = BigInt.asUintN(64, BigInt(seed) * 0x9e3779b97f4a7c15n + 0x632be59bd9b4e019n);
  const next63 = (): bigint => {
    state = BigInt.asUintN(64, state + 0x9e3779b97f4a7c15n);
    let z = state;
    z = BigInt.asUintN(64, (z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n);
    z = BigInt.asUintN(64, (z ^ (z >> 27n)) * 0x94d049bb133111ebn);
    return (z ^ (z >> 31n)) >> 1n;
  };
  const out = Buffer.alloc(size);
  for (let i = 0; i < size; i += 7) {
    let v = next63();
    for (let j = 0; i + j < size && j < 7; j++) {
      out[i + j] = Number(v & 0xffn);
      v >>= 8n;
    }
  }
  return out;
}

/** get(), run, put() — also on error. */
async function withLayer<T>(d: Driver, id: string, fn: (root: string) => T | Promise<T>): Promise<T> {
  const root = await d.get(id);
  try {
    return await fn(root);
  } finally {
    await d.put(id);
  }
}

/** readDir hiding lost+found (ext4 roots on devicemapper). */
function readDir(dir: string): string[] {
  return fs.readdirSync(dir).filter((n) => n !== 'lost+found');
}

/** graphtest verifyFile: type, perm, sticky/setuid/setgid bits and owner (os.Stat: follows symlinks). */
function verifyFile(p: string, type: number, perm: number, uid: number, gid: number): void {
  const st = fs.statSync(p);
  checkEqual((st.mode & 0o170000).toString(8), type.toString(8), `${p} file type`);
  checkEqual((st.mode & 0o7777).toString(8), perm.toString(8), `${p} mode (perm|sticky|setuid|setgid)`);
  checkEqual(st.uid, uid, `${p} uid`);
  checkEqual(st.gid, gid, `${p} gid`);
}

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_ISUID = 0o4000;
const S_ISVTX = 0o1000;

/**
 * graphtest createBase: "a subdir" 0705|sticky owned 1:2, "a file" = "Some
 * data" 0222|setuid. moby sets umask 0 around it; we chmod explicitly instead,
 * because the umask is per process and tests here run concurrently.
 */
export async function createBase(d: Driver, id: string): Promise<void> {
  await d.createReadWrite(id, null);
  await withLayer(d, id, (root) => {
    const sub = path.join(root, 'a subdir');
    fs.mkdirSync(sub, 0o705);
    fs.chmodSync(sub, 0o705 | S_ISVTX); // after mkdir: the umask, and mkdir(2) may drop the sticky bit
    fs.lchownSync(sub, 1, 2);
    const file = path.join(root, 'a file');
    fs.writeFileSync(file, 'Some data', { mode: 0o222 });
    fs.chmodSync(file, 0o222 | S_ISUID);
  });
}

/** graphtest verifyBase. */
export async function verifyBase(d: Driver, id: string): Promise<void> {
  await withLayer(d, id, (root) => {
    verifyFile(path.join(root, 'a subdir'), S_IFDIR, 0o705 | S_ISVTX, 1, 2);
    verifyFile(path.join(root, 'a file'), S_IFREG, 0o222 | S_ISUID, 0, 0);
    const names = readDir(root);
    checkEqual(names.length, 2, `entries in the root of ${id} (${names.join(', ')})`);
  });
}

function writeFile0755(p: string, content: Buffer | string): void {
  fs.writeFileSync(p, content, { mode: 0o755 });
}

/** graphtest addFile (mode 0755). */
export async function addFile(d: Driver, id: string, name: string, content: Buffer | string): Promise<void> {
  await withLayer(d, id, (root) => writeFile0755(path.join(root, name), content));
}

export async function addDirectory(d: Driver, id: string, dir: string): Promise<void> {
  await withLayer(d, id, (root) => fs.mkdirSync(path.join(root, dir), { recursive: true, mode: 0o755 }));
}

export async function removeAll(d: Driver, id: string, ...names: string[]): Promise<void> {
  await withLayer(d, id, (root) => {
    for (const n of names) fs.rmSync(path.join(root, n), { recursive: true, force: true });
  });
}

export async function checkFile(d: Driver, id: string, name: string, content: Buffer | string): Promise<void> {
  await withLayer(d, id, (root) => {
    const got = fs.readFileSync(path.join(root, name));
    check(got.equals(Buffer.from(content)), `${id}: ${name}: mismatched file content ${got.toString('hex')}, expecting ${Buffer.from(content).toString('hex')}`);
  });
}

export async function checkFileRemoved(d: Driver, id: string, name: string): Promise<void> {
  await withLayer(d, id, (root) => {
    let exists = true;
    try {
      fs.statSync(path.join(root, name));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      exists = false;
    }
    check(!exists, `${id}: file still exists: ${name}`);
  });
}

/** graphtest addManyFiles: `directory-<i>/file-<i+j>` = randomContent(64, seed+i+j), 100 per directory. */
export async function addManyFiles(d: Driver, id: string, count: number, seed: number): Promise<void> {
  await withLayer(d, id, (root) => {
    for (let i = 0; i < count; i += 100) {
      const dir = path.join(root, `directory-${i}`);
      fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
      for (let j = 0; i + j < count && j < 100; j++) {
        writeFile0755(path.join(dir, `file-${i + j}`), randomContent(64, seed + i + j));
      }
    }
  });
}

/** graphtest changeManyFiles: rewrite (j%3==0), add (1), remove (2); returns the changes made. */
export async function changeManyFiles(d: Driver, id: string, count: number, seed: number): Promise<Change[]> {
  return withLayer(d, id, (root) => {
    const changes: Change[] = [];
    for (let i = 0; i < count; i += 100) {
      const dir = `/directory-${i}`;
      fs.mkdirSync(path.join(root, dir), { recursive: true, mode: 0o755 });
      for (let j = 0; i + j < count && j < 100; j++) {
        if (j === 0) changes.push({ path: dir, kind: ChangeKind.Modify });
        switch (j % 3) {
          case 0: {
            const p = `${dir}/file-${i + j}`;
            writeFile0755(path.join(root, p), randomContent(64, seed + i + j));
            changes.push({ path: p, kind: ChangeKind.Modify });
            break;
          }
          case 1: {
            const p = `${dir}/file-${seed}-${i + j}`;
            writeFile0755(path.join(root, p), randomContent(64, seed + i + j));
            changes.push({ path: p, kind: ChangeKind.Add });
            break;
          }
          case 2: {
            const p = `${dir}/file-${i + j}`;
            fs.rmSync(path.join(root, p));
            changes.push({ path: p, kind: ChangeKind.Delete });
            break;
          }
        }
      }
    }
    return changes;
  });
}

export async function checkManyFiles(d: Driver, id: string, count: number, seed: number): Promise<void> {
  await withLayer(d, id, (root) => {
    for (let i = 0; i < count; i += 100) {
      for (let j = 0; i + j < count && j < 100; j++) {
        const p = path.join(root, `directory-${i}`, `file-${i + j}`);
        const got = fs.readFileSync(p);
        check(got.equals(randomContent(64, seed + i + j)), `${id}: directory-${i}/file-${i + j}: content is not randomContent(64, ${seed + i + j})`);
      }
    }
  });
}

/** graphtest addLayerFiles. */
async function addLayerFiles(d: Driver, id: string, parent: string, i: number): Promise<void> {
  await withLayer(d, id, (root) => {
    writeFile0755(path.join(root, 'top-id'), id);
    const dir = path.join(root, `layer-${i}`);
    fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
    writeFile0755(path.join(dir, 'layer-id'), id);
    writeFile0755(path.join(dir, 'parent-id'), parent);
  });
}

/** graphtest addManyLayers: `count` random-id layers on top of `base`; returns the top id. */
export async function addManyLayers(d: Driver, base: string, count: number): Promise<string> {
  let last = base;
  for (let i = 1; i <= count; i++) {
    const next = randomId();
    await d.create(next, last);
    await addLayerFiles(d, next, last, i);
    last = next;
  }
  return last;
}

/** graphtest checkManyLayers: follow layer-<i>/parent-id from the top down. */
export async function checkManyLayers(d: Driver, top: string, count: number): Promise<void> {
  await withLayer(d, top, (root) => {
    let expected = fs.readFileSync(path.join(root, 'top-id'), 'utf8');
    checkEqual(expected, top, 'top-id');
    for (let i = count; i > 0; i--) {
      const dir = path.join(root, `layer-${i}`);
      checkEqual(fs.readFileSync(path.join(dir, 'layer-id'), 'utf8'), expected, `layer-${i}/layer-id`);
      expected = fs.readFileSync(path.join(dir, 'parent-id'), 'utf8');
    }
  });
}

function showChange(c: Change): string {
  return `${changeLetter[c.kind]} ${c.path}`;
}

/** graphtest checkChanges: same count, then equal after sorting by (path, kind). */
export function checkChanges(expected: Change[], actual: Change[]): void {
  const e = sortChanges([...expected]).map(showChange);
  const a = sortChanges([...actual]).map(showChange);
  const detail = () => `\nexpected:\n  ${e.join('\n  ')}\ngot:\n  ${a.join('\n  ')}`;
  if (e.length !== a.length) throw new ConformanceError(`unexpected number of changes, expected ${e.length}, got ${a.length}${detail()}`);
  for (let i = 0; i < e.length; i++) {
    if (e[i] !== a[i]) throw new ConformanceError(`unexpected change, expecting ${e[i]}, got ${a[i]}${detail()}`);
  }
}

async function drain(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

// ---- tree comparison (containerd checkSnapshots) ------------------------------------------

/** Driver views and flat trees differ in root metadata and directory mtimes by construction. */
const COMPARE: DigestOptions = { dirMtimes: false, rootMetadata: false };

async function expectSameTree(actualDir: string, expectedDir: string, what: string): Promise<void> {
  const [a, e] = await Promise.all([treeManifest(actualDir, COMPARE), treeManifest(expectedDir, COMPARE)]);
  const diff = manifestDiff(e, a);
  if (diff !== '') throw new ConformanceError(`${what}: tree differs from the expected one (- expected, + actual):\n${diff}`);
}

/** diff(id, parent) applied onto a fresh child of `parent` must give the same tree as `id`. */
async function checkDiffSide(d: Driver, id: string, parent: string | null, what: string): Promise<void> {
  const replay = `${id}-replay`;
  await d.create(replay, parent);
  try {
    const tar = await drain(d.diff(id, parent));
    await d.applyDiff(replay, parent, Readable.from([tar]));
    const expected = await d.get(id);
    try {
      await withLayer(d, replay, (root) => expectSameTree(root, expected, `${what}: diff(layer, parent) applied onto a new child of the parent`));
    } finally {
      await d.put(id);
    }
  } finally {
    await d.remove(replay);
  }
}

/**
 * containerd checkSnapshots: a chain of layers, each made by one applier on
 * a child of the previous, each checked against the flat apply of all
 * appliers so far and through the diff side. Returns the layer ids.
 */
export async function checkLayers(
  ctx: CheckContext,
  appliers: A.Applier[],
  label = 'layer',
  opts: {
    /** keep the flat tree here (an existing empty directory; the caller removes it) */
    flat?: string;
    /** which layers (0-based) also get the diff-side check; default all */
    diffSide?: (i: number) => boolean;
  } = {},
): Promise<string[]> {
  const { driver: d } = ctx;
  const flat = opts.flat ?? fs.mkdtempSync(path.join(ctx.work, 'flat-'));
  const ids: string[] = [];
  let parent: string | null = null;
  try {
    for (const [i, applier] of appliers.entries()) {
      const id = `${label}-${i + 1}-${randomId().slice(0, 12)}`;
      const what = `${label} ${i + 1} (${applier.what || 'no changes'})`;
      await d.create(id, parent);
      ids.push(id);
      const stamp = A.nextStamp();
      await withLayer(d, id, (root) => applier.apply(root, stamp));
      applier.apply(flat, stamp);
      await withLayer(d, id, (root) => expectSameTree(root, flat, `${what}: mounted view`));
      if (opts.diffSide?.(i) ?? true) await checkDiffSide(d, id, parent, what);
      parent = id;
    }
  } finally {
    if (opts.flat === undefined) fs.rmSync(flat, { recursive: true, force: true });
  }
  return ids;
}

// ---- the checks -------------------------------------------------------------------------------

/** moby DriverTestCreateEmpty (+ containerd RootPermission: the root is 0755 root:root). */
async function createEmpty({ driver: d }: CheckContext): Promise<void> {
  await d.create('empty', null);
  check(d.exists('empty'), "Newly created image doesn't exist");
  await withLayer(d, 'empty', (root) => {
    verifyFile(root, S_IFDIR, 0o755, 0, 0);
    const names = readDir(root);
    check(names.length === 0, `New directory not empty: ${names.join(', ')}`);
  });
  await d.remove('empty');
  check(!d.exists('empty'), 'removed layer still exists');
}

/** moby DriverTestCreateBase. */
async function createBaseCheck({ driver: d }: CheckContext): Promise<void> {
  await createBase(d, 'Base');
  await verifyBase(d, 'Base');
  await d.remove('Base');
}

/** moby DriverTestCreateSnap: a child sees the parent's exact modes and owners. */
async function createSnap({ driver: d }: CheckContext): Promise<void> {
  await createBase(d, 'Base');
  await d.create('Snap', 'Base');
  await verifyBase(d, 'Snap');
  await d.remove('Snap');
  await d.remove('Base');
}

/** moby DriverTestDeepLayerRead. */
async function deepLayerRead({ driver: d }: CheckContext, layers: number): Promise<void> {
  const base = randomId();
  await d.create(base, null);
  const content = 'test content';
  await addFile(d, base, 'testfile.txt', content);
  const top = await addManyLayers(d, base, layers);
  await checkManyLayers(d, top, layers);
  await checkFile(d, top, 'testfile.txt', content);
}

/** moby DriverTestDiffApply: Diff(upper, base) applied onto a new child of base; sizes must agree. */
async function diffApply({ driver: d }: CheckContext, fileCount: number): Promise<void> {
  const base = randomId();
  const upper = randomId();
  const deleteFile = 'file-remove.txt';
  const deleteFileContent = 'This file should get removed in upper!';
  const deleteDir = 'var/lib';

  await d.create(base, null);
  await addManyFiles(d, base, fileCount, 3);
  await addFile(d, base, deleteFile, deleteFileContent);
  await addDirectory(d, base, deleteDir);

  await d.create(upper, base);
  await addManyFiles(d, upper, fileCount, 6);
  await removeAll(d, upper, deleteFile, deleteDir);

  const diffSize = await d.diffSize(upper, null);

  const diff = randomId();
  await d.create(diff, base);
  await checkManyFiles(d, diff, fileCount, 3);
  await checkFile(d, diff, deleteFile, deleteFileContent);

  const arch = await drain(d.diff(upper, base));
  const applyDiffSize = await d.applyDiff(diff, base, Readable.from([arch]));
  checkEqual(applyDiffSize, diffSize, 'Apply diff size different (applyDiff result vs diffSize(upper, ""))');

  await checkManyFiles(d, diff, fileCount, 6);
  await checkFileRemoved(d, diff, deleteFile);
  await checkFileRemoved(d, diff, deleteDir);
}

/** The 21 changes changeManyFiles(20, seed 6) makes, written out. */
export const EXPECTED_CHANGES_20_6: readonly string[] = [
  'C /directory-0',
  ...[0, 3, 6, 9, 12, 15, 18].map((n) => `C /directory-0/file-${n}`),
  ...[1, 4, 7, 10, 13, 16, 19].map((n) => `A /directory-0/file-6-${n}`),
  ...[2, 5, 8, 11, 14, 17].map((n) => `D /directory-0/file-${n}`),
];

/** moby DriverTestChanges: Changes(upper, base) equals what changeManyFiles did (21 changes). */
async function changes({ driver: d }: CheckContext): Promise<void> {
  const base = randomId();
  const upper = randomId();
  await d.create(base, null);
  await addManyFiles(d, base, 20, 3);
  await d.create(upper, base);
  const expected = await changeManyFiles(d, upper, 20, 6);
  const literal = sortChanges([...expected]).map(showChange);
  const written = [...EXPECTED_CHANGES_20_6].sort((a, b) => {
    const pa = a.slice(2), pb = b.slice(2);
    return pa < pb ? -1 : pa > pb ? 1 : 0;
  });
  check(literal.length === 21 && literal.join('\n') === written.join('\n'), `changeManyFiles(20, 6) made an unexpected change list:\n${literal.join('\n')}`);
  checkChanges(expected, await d.changes(upper, base));
}

/** A random 8-byte-word file like graphtest's writeRandomFile; returns the errno code of a failed write, or null. */
function writeRandomFile(p: string, size: number): string | null {
  const chunk = randomContent(1 << 20, 0);
  const fd = fs.openSync(p, 'w', 0o700);
  try {
    for (let left = size; left > 0; left -= chunk.length) {
      fs.writeSync(fd, chunk, 0, Math.min(left, chunk.length));
    }
    fs.fsyncSync(fd);
    return null;
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === undefined) throw e;
    // libuv 1.46 (Node 20) has no name for EDQUOT: its code is 'UNKNOWN'
    return err.errno === -os.constants.errno.EDQUOT ? 'EDQUOT' : err.code;
  } finally {
    fs.closeSync(fd);
  }
}

const MiB = 1 << 20;

/**
 * moby DriverTestSetQuota: a 50M RW layer over Base takes 25 MiB and refuses
 * 50 MiB more with EDQUOT or ENOSPC. `required` false: ErrQuotaNotSupported
 * is an accepted answer (returned as 'not supported'); true: it fails.
 */
async function setQuota({ driver: d, log }: CheckContext, required: boolean): Promise<'enforced' | 'not supported'> {
  await createBase(d, 'Base');
  const layer = `${d.name}Test`;
  try {
    await d.createReadWrite(layer, 'Base', { storageOpt: { size: '50M' } });
  } catch (e) {
    if (e instanceof QuotaNotSupportedError) {
      check(e.message === 'Filesystem does not support, or has not enabled quotas', `quota error message: ${e.message}`);
      if (!required) {
        log(`quota not supported here: ${e.detail ?? e.message}`);
        return 'not supported';
      }
    }
    throw e;
  }
  await withLayer(d, layer, (root) => {
    const small = writeRandomFile(path.join(root, 'smallfile'), 25 * MiB);
    check(small === null, `writing 25 MiB into a 50M layer failed: ${small}`);
    const big = writeRandomFile(path.join(root, 'bigfile'), 50 * MiB);
    check(big !== null, 'expected write to fail(), instead had success (quota not enforced)');
    check(big === 'EDQUOT' || big === 'ENOSPC', `expect write() to fail with EDQUOT or ENOSPC, got ${big}`);
    fs.rmSync(path.join(root, 'bigfile'), { force: true });
    fs.rmSync(path.join(root, 'smallfile'), { force: true });
  });
  return 'enforced';
}

/** A driver that never does quotas must say so with moby's error, on RW layers. */
async function quotaUnsupported({ driver: d }: CheckContext): Promise<void> {
  await createBase(d, 'Base');
  let err: unknown;
  try {
    await d.createReadWrite(`${d.name}Test`, 'Base', { storageOpt: { size: '50M' } });
  } catch (e) {
    err = e;
  }
  check(err instanceof QuotaNotSupportedError, `createReadWrite with size=50M: expected ErrQuotaNotSupported, got ${err === undefined ? 'success' : String(err)}`);
}

/** containerd LayerFileupdate (moby#21555), five times, each starting on a new second. */
async function layerFileUpdate(ctx: CheckContext): Promise<void> {
  for (let i = 0; i < 5; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, 1000 - (Date.now() % 1000)));
    await checkLayers(ctx, [
      A.apply(
        A.mkdir('/etc', 0o700),
        A.createFile('/etc/hosts', 'mydomain 10.0.0.1', 0o644),
        A.createFile('/etc/profile', 'PATH=/usr/bin', 0o644),
      ),
      A.apply(
        A.writeFile('/etc/hosts', 'mydomain 10.0.0.2'),
        A.createFile('/etc/profile', 'PATH=/usr/bin', 0o666),
        A.mkdir('/root', 0o700),
        A.createFile('/root/.bashrc', 'PATH=/usr/sbin:/usr/bin', 0o644),
      ),
    ], `update${i + 1}`);
  }
}

/** containerd RemoveDirectoryInLowerLayer (moby#25244). */
async function removeDirectoryInLowerLayer(ctx: CheckContext): Promise<void> {
  await checkLayers(ctx, [
    A.apply(A.mkdir('/lib', 0o700), A.createFile('/lib/hidden', '', 0o644)),
    A.apply(A.remove('/lib'), A.mkdir('/lib', 0o700), A.createFile('/lib/not-hidden', '', 0o644)),
    A.apply(A.createFile('/lib/newfile', '', 0o644)),
  ]);
}

/** containerd Chown (moby#20240, #24913, #28391). */
async function chown(ctx: CheckContext): Promise<void> {
  await checkLayers(ctx, [
    A.apply(
      A.mkdir('/opt', 0o700), A.mkdir('/opt/a', 0o700), A.mkdir('/opt/a/b', 0o700),
      A.createFile('/opt/a/b/file.txt', 'hello', 0o644),
    ),
    A.apply(
      A.chown('/opt', 1, 1), A.chown('/opt/a', 1, 1), A.chown('/opt/a/b', 1, 1),
      A.chown('/opt/a/b/file.txt', 1, 1),
    ),
  ]);
}

/** containerd Rename (moby#25409); the directory rename only where the driver can do it. */
async function renameCheck(ctx: CheckContext, renameDirectories: boolean): Promise<void> {
  await checkLayers(ctx, [
    A.apply(
      A.mkdir('/dir1', 0o700), A.mkdir('/somefiles', 0o700),
      A.createFile('/somefiles/f1', 'was here first!', 0o644),
      A.createFile('/somefiles/f2', 'nothing interesting', 0o644),
    ),
    A.apply(
      ...(renameDirectories ? [A.rename('/dir1', '/dir2')] : []),
      A.createFile('/somefiles/f1-overwrite', 'new content 1', 0o644),
      A.rename('/somefiles/f1-overwrite', '/somefiles/f1'),
      A.rename('/somefiles/f2', '/somefiles/f3'),
    ),
  ]);
}

/** containerd DirectoryPermissionOnCommit (moby#27298). */
async function directoryPermissionOnCommit(ctx: CheckContext): Promise<void> {
  await checkLayers(ctx, [
    A.apply(
      A.mkdir('/dir1', 0o700), A.mkdir('/dir2', 0o700), A.mkdir('/dir3', 0o700), A.mkdir('/dir4', 0o700),
      A.createFile('/dir4/f1', '...', 0o644), A.mkdir('/dir5', 0o700), A.createFile('/dir5/f1', '...', 0o644),
      A.chown('/dir1', 1, 1), A.chown('/dir2', 1, 1), A.chown('/dir3', 1, 1), A.chown('/dir5', 1, 1),
      A.chown('/dir5/f1', 1, 1),
    ),
    A.apply(A.chown('/dir2', 0, 0), A.remove('/dir3'), A.chown('/dir4', 1, 1), A.chown('/dir4/f1', 1, 1)),
    A.apply(
      A.mkdir('/dir3', 0o700), A.chown('/dir3', 1, 1), A.remove('/dir5'), A.mkdir('/dir5', 0o700),
      A.chown('/dir5', 1, 1),
    ),
  ]);
}

/** containerd DeletedFilesInChildSnapshot. */
async function deletedFilesInChildSnapshot(ctx: CheckContext): Promise<void> {
  await checkLayers(ctx, [
    A.apply(A.createFile('/foo', 'foo\n', 0o777), A.createFile('/foobar', 'foobar\n', 0o777)),
    A.apply(A.remove('/foobar')),
    A.apply(),
  ]);
}

/** containerd MoveFileFromLowerLayer: a file moved by hardlink + remove. */
async function moveFileFromLowerLayer(ctx: CheckContext): Promise<void> {
  await checkLayers(ctx, [
    A.apply(
      A.mkdir('/dir1', 0o700), A.createFile('/dir1/f1', 'Hello', 0o644),
      A.mkdir('/dir2', 0o700), A.createFile('/dir2/f2', '...', 0o644),
    ),
    A.apply(
      A.mkdir('/dir3', 0o700), A.createFile('/dir3/f1', 'Hello', 0o644), A.remove('/dir1'),
      A.link('/dir2/f2', '/dir3/f2'), A.remove('/dir2/f2'),
    ),
  ]);
}

/**
 * containerd RemoveIntermediateSnapshot, for graphdrivers: a graphdriver does
 * not refuse to remove a layer with children (moby's layer store does), so
 * the check is that removing top → intermediate → base leaves each remaining
 * layer intact and finally nothing behind.
 */
async function removeIntermediate(ctx: CheckContext): Promise<void> {
  const { driver: d } = ctx;
  const [base, inter, top] = await checkLayers(ctx, [
    A.apply(A.createFile('/base', 'base', 0o644)),
    A.apply(A.createFile('/inter', 'inter', 0o644)),
    A.apply(A.createFile('/top', 'top', 0o644)),
  ], 'chain');
  const manifest = async (id: string) => withLayer(d, id, (root) => treeManifest(root, COMPARE));
  const baseBefore = await manifest(base);
  const interBefore = await manifest(inter);
  await d.remove(top);
  check(!d.exists(top), 'top layer still exists after remove');
  checkEqual(manifestDiff(baseBefore, await manifest(base)), '', 'base layer changed by removing the top layer');
  checkEqual(manifestDiff(interBefore, await manifest(inter)), '', 'intermediate layer changed by removing the top layer');
  await d.remove(inter);
  check(!d.exists(inter), 'intermediate layer still exists after remove');
  checkEqual(manifestDiff(baseBefore, await manifest(base)), '', 'base layer changed by removing the intermediate layer');
  await d.remove(base);
  check(!d.exists(base), 'base layer still exists after remove');
  await d.remove(base); // removing an unknown id is not an error (moby os.RemoveAll semantics)
}

/** containerd 128LayersMount: 1 + 127 layers overwriting, adding and replacing, compared with a flat apply. */
async function layers128(ctx: CheckContext, count = 128): Promise<void> {
  const appliers: A.Applier[] = [A.apply(
    A.createFile('/bottom', 'way at the bottom\n', 0o777),
    A.createFile('/overwriteme', 'FIRST!\n', 0o777),
    A.mkdir('/addhere', 0o755),
    A.mkdir('/onlyme', 0o755),
    A.createFile('/onlyme/bottom', 'bye!\n', 0o777),
  )];
  for (let i = 1; i < count; i++) {
    appliers.push(A.apply(
      A.createFile('/overwriteme', `${i} WAS HERE!\n`, 0o777),
      A.createFile(`/addhere/file-${i}`, 'same\n', 0o755),
      A.remove('/onlyme'),
      A.mkdir('/onlyme', 0o755),
      A.createFile(`/onlyme/file-${i}`, 'only me!\n', 0o777),
    ));
  }
  // Each naive diff with a parent ends with moby's sleep to the next second:
  // check the diff side on the first layers, every 32nd and the last.
  await checkLayers(ctx, appliers, 'deep', { diffSide: (i) => i < 2 || i % 32 === 0 || i === count - 1 });
}

/** containers/storage DriverTestEcho: Changes across delete-and-recreate of nested directories. */
async function echo({ driver: d }: CheckContext): Promise<void> {
  const components = 10;
  for (let depth = 0; depth < components; depth++) {
    const base = randomId();
    const second = randomId();
    const third = randomId();
    await d.create(base, null);
    const paths: string[] = [];
    let expected: Change[] = [];
    await withLayer(d, base, (root) => {
      let p = '';
      for (let i = 0; i < components - 1; i++) {
        p += `/subdir${i + 1}`;
        paths.push(p);
        fs.mkdirSync(root + p, 0o700);
        expected.push({ path: p, kind: ChangeKind.Add });
      }
      p += '/file';
      paths.push(p);
      fs.writeFileSync(root + p, randomContent(128, depth), { mode: 0o600 });
      expected.push({ path: p, kind: ChangeKind.Add });
    });
    checkChanges(expected, await d.changes(base, null));

    await d.create(second, base);
    await withLayer(d, second, (root) => fs.rmSync(root + paths[depth], { recursive: true }));
    expected = paths.slice(0, depth).map((p) => ({ path: p, kind: ChangeKind.Modify }));
    expected.push({ path: paths[depth], kind: ChangeKind.Delete });
    checkChanges(expected, await d.changes(second, base));

    await d.create(third, second);
    expected = paths.slice(0, depth).map((p) => ({ path: p, kind: ChangeKind.Modify }));
    await withLayer(d, third, (root) => {
      for (let i = depth; i < components - 1; i++) {
        fs.mkdirSync(root + paths[i], 0o700);
        expected.push({ path: paths[i], kind: ChangeKind.Add });
      }
      fs.writeFileSync(root + paths[paths.length - 1], randomContent(128, depth), { mode: 0o600 });
      expected.push({ path: paths[paths.length - 1], kind: ChangeKind.Add });
    });
    checkChanges(expected, await d.changes(third, second));
  }
}

/**
 * A registry-style layer tar (aufs/tar-form whiteouts: `.wh.<name>` deletes,
 * `<dir>/.wh..wh..opq` hides everything below `dir` from lower layers) applied
 * with applyDiff onto a child of a parent must give the flattened tree.
 */
async function applyDiffWhiteouts(ctx: CheckContext): Promise<void> {
  const { driver: d } = ctx;
  const lower = A.apply(
    A.mkdir('/etc', 0o755), A.createFile('/etc/a', 'a', 0o644), A.mkdir('/etc/sub', 0o755),
    A.createFile('/etc/sub/c', 'c', 0o600), A.createFile('/keep', 'keep', 0o644),
    A.createFile('/gone', 'gone', 0o644), A.mkdir('/dir-gone', 0o755), A.createFile('/dir-gone/x', 'x', 0o644),
    A.mkdir('/usr', 0o755), A.createFile('/usr/old', 'old', 0o644),
  );
  // the change, declared twice: as the flat result and as the layer's tar form
  const upperFlat = A.apply(
    A.remove('/etc'), A.mkdir('/etc', 0o750), A.createFile('/etc/new', 'new', 0o644),
    A.remove('/gone'), A.remove('/dir-gone'), A.createFile('/added', 'added', 0o644),
    A.createFile('/usr/new', 'new', 0o644),
  );
  const upperTarForm = A.apply(
    A.mkdir('/etc', 0o750), A.createFile('/etc/.wh..wh..opq', '', 0o644), A.createFile('/etc/new', 'new', 0o644),
    A.createFile('/.wh.gone', '', 0o644), A.createFile('/.wh.dir-gone', '', 0o644), A.createFile('/added', 'added', 0o644),
    A.mkdir('/usr', 0o755), A.createFile('/usr/new', 'new', 0o644),
  );

  const flat = fs.mkdtempSync(path.join(ctx.work, 'flat-'));
  const layerDir = fs.mkdtempSync(path.join(ctx.work, 'layer-'));
  try {
    const [parent] = await checkLayers(ctx, [lower], 'lower', { flat });
    const stamp = A.nextStamp();
    upperFlat.apply(flat, stamp);
    upperTarForm.apply(layerDir, stamp);
    const tar = await drain(exportDir(layerDir, { whiteouts: 'aufs' }));
    const child = `upper-${randomId().slice(0, 12)}`;
    await d.create(child, parent);
    await d.applyDiff(child, parent, Readable.from([tar]));
    await withLayer(d, child, (root) => expectSameTree(root, flat, 'layer tar with .wh. and opaque markers applied over its parent'));
  } finally {
    fs.rmSync(flat, { recursive: true, force: true });
    fs.rmSync(layerDir, { recursive: true, force: true });
  }
}

/**
 * Every file kind a layer can hold, through a chain: setuid/setgid/sticky
 * modes, owners, a fifo, devices, symlinks (also dangling), hardlinks, user
 * and security xattrs, a non-UTF-8 name, an empty file; then a child changes
 * some of them and a grandchild deletes and replaces others.
 */
async function copyFidelity(ctx: CheckContext, hardlinksBreakOnCopyUp = false): Promise<void> {
  // in a user namespace nobody may make device nodes or set trusted.* xattrs
  const hostNs = !runningInUserNS();
  // vfs_cap_data v2: cap_net_bind_service, then cap_net_raw
  const cap = Buffer.from('0100000200040000000000000000000000000000', 'hex');
  const cap2 = Buffer.from('0100000200200000000000000000000000000000', 'hex');
  const odd = Buffer.from([0x6e, 0x6f, 0x6e, 0xff, 0xfe, 0x75, 0x74, 0x66]); // 'non\xff\xfeutf'
  await checkLayers(ctx, [
    A.apply(
      A.mkdir('/bin', 0o755), A.createFile('/bin/su', 'su binary', 0o4755), A.createFile('/bin/wall', 'wall', 0o2755),
      A.mkdir('/tmp', 0o1777), A.createFile('/empty', '', 0o644),
      A.createFile('/owned', 'owned', 0o640), A.chown('/owned', 1000, 1001),
      A.mkfifo('/fifo', 0o620),
      ...(hostNs ? [A.mknod('/null', 'char', 1, 3, 0o666), A.mknod('/loop9', 'block', 7, 9, 0o660)] : []),
      A.symlink('/bin/su', '/su-link'), A.symlink('does/not/exist', '/dangling'),
      A.createFile('/hard-a', 'shared inode', 0o644), A.link('/hard-a', '/hard-b'), A.link('/hard-a', '/bin/hard-c'),
      A.createFile('/xattrs', 'x', 0o644), A.setXattr('/xattrs', 'user.comment', 'hello'),
      ...(hostNs ? [A.setXattr('/xattrs', 'trusted.strata', Buffer.from([0, 1, 2, 255]))] : []),
      A.createFile('/bin/ping', 'ping', 0o755), A.setXattr('/bin/ping', 'security.capability', cap),
      A.mkdir('/xdir', 0o755), A.setXattr('/xdir', 'user.dir', 'on a directory'),
      A.createFile(odd, 'bytes', 0o640),
    ),
    A.apply(
      A.chmod('/bin/su', 0o755), A.chown('/bin/wall', 0, 5),
      ...(hardlinksBreakOnCopyUp ? [] : [A.writeFile('/hard-b', 'rewritten through b')]),
      A.remove('/fifo'), A.mkfifo('/fifo2', 0o600),
      // moby's ChangesDirs sees an xattr-only change for security.capability
      // alone; other xattrs count once the file is modified
      A.setXattr('/bin/ping', 'security.capability', cap2),
      A.writeFile('/xattrs', 'y'), A.setXattr('/xattrs', 'user.comment', 'changed'),
      A.remove('/dangling'), A.symlink('/owned', '/dangling'),
    ),
    A.apply(
      A.remove('/bin'), A.mkdir('/bin', 0o700), A.createFile('/bin/su', 'new su', 0o4750),
      ...(hostNs ? [A.remove('/null')] : []), A.createFile('/null', 'now a file', 0o644), A.remove('/xdir'),
    ),
  ], 'kinds');
}

/** Every check, as a plain async function that throws a ConformanceError (or the driver's error) on failure. */
export const checks = {
  createEmpty,
  createBase: createBaseCheck,
  createSnap,
  deepLayerRead,
  diffApply,
  changes,
  setQuota,
  quotaUnsupported,
  layerFileUpdate,
  removeDirectoryInLowerLayer,
  chown,
  rename: renameCheck,
  directoryPermissionOnCommit,
  deletedFilesInChildSnapshot,
  moveFileFromLowerLayer,
  removeIntermediate,
  layers128,
  echo,
  applyDiffWhiteouts,
  copyFidelity,
};

// ---- running them ---------------------------------------------------------------------------

/**
 * Make a scratch area and a driver in it, run `fn`, then cleanup() the driver
 * and remove everything, also on failure. `home` is `<tmp>/root/<name>`.
 */
export async function withDriver<T>(
  name: string,
  makeDriver: (home: string) => Promise<Driver>,
  fn: (ctx: CheckContext) => Promise<T>,
  opts: { base?: string; log?: (msg: string) => void } = {},
): Promise<T> {
  const tmp = fs.mkdtempSync(path.join(opts.base ?? os.tmpdir(), `strata-conformance-${name}-`));
  let driver: Driver | undefined;
  try {
    driver = await makeDriver(path.join(tmp, 'root', name));
    const work = path.join(tmp, 'work');
    fs.mkdirSync(work, { recursive: true });
    return await fn({ driver, work, log: opts.log ?? (() => {}) });
  } finally {
    try {
      if (driver) await driver.cleanup();
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }
}

/** Make a loop-mounted xfs with project quotas enforced; throws the mount error. */
function makeXfsQuotaHome(): QuotaHome {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-xfs-quota-'));
  const img = path.join(tmp, 'xfs.img');
  const mnt = path.join(tmp, 'mnt');
  let loop: LoopMount;
  try {
    fs.mkdirSync(mnt);
    fs.closeSync(fs.openSync(img, 'w'));
    fs.truncateSync(img, 320 * MiB); // mkfs.xfs ≥ 5.19 refuses less than 300 MB
    execFileSync('mkfs.xfs', ['-q', img], { stdio: 'pipe' });
    loop = loopMount(img, mnt, { options: 'prjquota' });
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  return {
    dir: mnt,
    cleanup: async () => {
      try {
        loop.unmount();
      } finally {
        fs.rmSync(tmp, { recursive: true, force: true });
      }
    },
  };
}

/**
 * A project-quota xfs filesystem on a loop device (prjquota), for SetQuota.
 * `missing` names what this host lacks: root or xfsprogs (installable), or —
 * found by a real test mount — a kernel without quota support (`kernel` set:
 * no package can fix that, so the test is skipped even under STRATA_REQUIRE_ALL).
 */
export function xfsProjectQuotaHome(): { missing: string | null; kernel: boolean; makeHome: () => Promise<QuotaHome> } {
  const has = hasTool;
  let missing: string | null = null;
  let kernel = false;
  if (!isRoot) missing = 'root (loop mounts)';
  else if (runningInUserNS()) {
    missing = 'the initial user namespace (loop devices and xfs mounts are refused in a user namespace)';
    kernel = true;
  } else if (!has('mkfs.xfs') || !has('xfs_quota')) missing = 'xfsprogs (mkfs.xfs, xfs_quota)';
  else if (!fs.readFileSync('/proc/filesystems', 'utf8').includes('\txfs')) {
    missing = 'xfs in the kernel';
    kernel = true;
  } else {
    // the only honest test of kernel quota support is a mount with prjquota
    try {
      const probe = makeXfsQuotaHome();
      void probe.cleanup();
    } catch (e) {
      const log = (() => {
        try {
          return execFileSync('dmesg', { encoding: 'utf8' }).trim().split('\n').filter((l) => /quota|XFS/i.test(l)).slice(-1)[0] ?? '';
        } catch {
          return '';
        }
      })();
      missing = `a kernel that mounts xfs with prjquota (test mount failed${log ? `: ${log.replace(/^\[[^\]]*\]\s*/, '')}` : ''})`;
      kernel = true;
      void e;
    }
  }
  return { missing, kernel, makeHome: async () => makeXfsQuotaHome() };
}

/**
 * Register the whole suite as ava tests named `<name>: <Case>`. Each test
 * gets its own temp home and driver, cleaned up in teardown. Everything
 * needs root (chown, mknod, trusted.* xattrs), so it goes through the
 * prerequisite helper.
 */
export function runConformance(
  name: string,
  makeDriver: (home: string) => Promise<Driver>,
  opts: ConformanceOptions,
): void {
  const reg = when(isRoot, 'root (run the tests as root)', { serial: opts.serial });
  const add = (title: string, fn: (ctx: CheckContext) => Promise<unknown>, base?: () => Promise<QuotaHome>, r = reg) => {
    r(`${name}: ${title}`, async (t) => {
      let quotaHome: QuotaHome | undefined;
      t.teardown(async () => {
        if (quotaHome) await quotaHome.cleanup();
      });
      if (base) quotaHome = await base();
      await withDriver(name, makeDriver, fn, { base: quotaHome?.dir, log: (m) => t.log(m) });
      t.pass();
    });
  };

  add('CreateEmpty', checks.createEmpty);
  add('CreateBase', checks.createBase);
  add('CreateSnap', checks.createSnap);
  add(`DeepLayerRead ${opts.deepLayers}`, (c) => checks.deepLayerRead(c, opts.deepLayers));
  for (const n of opts.diffApplyFiles ?? [10, 100]) add(`DiffApply ${n} files`, (c) => checks.diffApply(c, n));
  add('Changes', checks.changes);

  const q = opts.quota;
  if (q === undefined) {
    add('SetQuota (here, or ErrQuotaNotSupported)', (c) => checks.setQuota(c, false));
  } else if (q.kind === 'unsupported') {
    add('SetQuota unsupported', checks.quotaUnsupported);
  } else {
    add('SetQuota on the default home (enforced, or ErrQuotaNotSupported)', (c) => checks.setQuota(c, false));
    let r = reg;
    if (q.missing !== null && q.kernel) {
      process.stderr.write(`skipping ${name}: SetQuota on a quota filesystem: it needs what no package can install here: ${q.missing}\n`);
      r = (opts.serial ? test.serial.skip : test.skip) as unknown as typeof test;
    } else if (q.missing !== null) {
      r = when(false, `${name} SetQuota: ${q.missing}`, { serial: opts.serial });
    }
    add('SetQuota on a quota filesystem', (c) => checks.setQuota(c, true), q.makeHome, r);
  }

  add('LayerFileupdate', checks.layerFileUpdate);
  add('RemoveDirectoryInLowerLayer', checks.removeDirectoryInLowerLayer);
  add('Chown', checks.chown);
  add('Rename', (c) => checks.rename(c, opts.renameDirectories ?? true));
  add('DirectoryPermissionOnCommit', checks.directoryPermissionOnCommit);
  add('RemoveIntermediateSnapshot', checks.removeIntermediate);
  add('DeletedFilesInChildSnapshot', checks.deletedFilesInChildSnapshot);
  add('MoveFileFromLowerLayer', checks.moveFileFromLowerLayer);
  add('128LayersMount', (c) => checks.layers128(c, 128));
  add('Echo', checks.echo);
  add('ApplyDiffWhiteouts', checks.applyDiffWhiteouts);
  add('CopyFidelity', (c) => checks.copyFidelity(c, opts.hardlinksBreakOnCopyUp ?? false));
}
