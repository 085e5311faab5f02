// The store writer (layerstore/writer.ts): what it writes is read back by the
// readers as the same model; its files have the names and modes of the stores
// dockerd 20.10 wrote (fixtures/golden) and repositories.json their bytes; the
// ids computed in layerstore/digests.ts are the ones in those stores; a full
// disk is one error line and leaves the store as it was.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import '../../drivers/all.ts';
import { getDriver } from '../../drivers/registry.ts';
import { GOLDEN_DRIVERS, archiveOf } from '../../fixtures/golden/golden.ts';
import { chainIdOf, chainIds, digestHex, imageIdOf } from '../../layerstore/digests.ts';
import { StoreWriteError } from '../../layerstore/durable.ts';
import { openStore } from '../../layerstore/store.ts';
import { tagStoreBytes } from '../../layerstore/tag-store.ts';
import { TarSplitRecorder } from '../../layerstore/tar-split.ts';
import { StoreWriter, type LayerMeta } from '../../layerstore/writer.ts';
import { asRoot, hasTool, when } from '../helpers/require.ts';
import { packTar, tempDir } from '../helpers/tar.ts';
import { tinyExt4, tinyFsMissing } from '../helpers/tiny-fs.ts';

const hex = (s: string) => createHash('sha256').update(s).digest('hex');

/** A layer's record for a one-file tar (its data is not needed by the readers). */
async function layerOf(name: string, parent: string | null): Promise<LayerMeta> {
  const rec = new TarSplitRecorder();
  rec.push(await packTar([{ name, content: `${name}\n` }]));
  return { diffId: rec.diffId(), parent, cacheId: hex(`cache ${name}`), size: name.length + 1, tarSplit: rec.finish() };
}

function configOf(diffIds: string[], created: string): Buffer {
  return Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', created, config: { Cmd: ['/bin/sh'] }, rootfs: { type: 'layers', diff_ids: diffIds }, history: diffIds.map(() => ({ created, created_by: 'x && y' })) }));
}

interface Written {
  root: string;
  layers: LayerMeta[];
  chains: string[];
  base: string;
  top: string;
  container: string;
}

/** Two layers, an image on each (the top one a local build of the base), three references, a container. */
async function writeSmallStore(root: string): Promise<Written> {
  const w = StoreWriter.open(root, 'vfs');
  const l1 = await layerOf('one', null);
  const c1 = w.commitLayer(l1);
  const l2 = await layerOf('two', c1);
  const c2 = w.commitLayer(l2);
  const base = w.writeImage(configOf([l1.diffId], '2024-01-01T00:00:00Z'), { layers: [c1] });
  const top = w.writeImage(configOf([l1.diffId, l2.diffId], '2024-01-02T00:00:00Z'), { layers: [c1, c2], parent: base, lastUpdated: '2024-01-02T00:00:00.123456789Z' });
  w.writeTags(new Map([['w/top:latest', top], ['w/base:1', base], [`w/base@sha256:${'a'.repeat(64)}`, base]]));
  const container = hex('container');
  w.writeMount(container, { mountId: hex('mount'), initId: `${hex('mount')}-init`, parent: c2 });
  w.writeContainer(container, {
    State: { Running: false, ExitCode: 3, StartedAt: '2024-01-03T00:00:00Z', FinishedAt: '2024-01-03T00:00:01Z' },
    ID: container, Created: '2024-01-03T00:00:00Z', Path: '/bin/sh', Args: ['-c', 'a && b > c'], Config: { Image: 'w/top:latest' },
    Image: top, Name: '/box', Driver: 'vfs',
  }, { NetworkMode: 'none' });
  return { root, layers: [l1, l2], chains: [c1, c2], base, top, container };
}

/** Every path below `root` (relative), for leftovers. */
function allPaths(root: string): string[] {
  return (fs.readdirSync(root, { recursive: true }) as string[]).sort();
}

test('a store written by the writer reads back as the model it was written from, with no problem and no leftover', async (t) => {
  const tmp = tempDir('strata-writer-');
  t.teardown(tmp.cleanup);
  const s = await writeSmallStore(path.join(tmp.dir, 'root'));
  const model = await openStore(s.root);
  t.deepEqual(model.problems.list, []);
  t.is(model.kind, 'modern');
  t.is(model.driver, 'vfs');
  t.deepEqual([...model.layers.keys()].sort(), [...s.chains].sort());
  s.chains.forEach((c, i) => {
    const l = model.layers.get(c)!;
    const want = s.layers[i];
    t.deepEqual([l.diffId, l.parent, l.cacheId, l.size], [want.diffId, want.parent, want.cacheId, want.size]);
    t.deepEqual(fs.readFileSync(l.tarSplit!), want.tarSplit);
  });
  const top = model.images.get(s.top)!;
  t.deepEqual([top.layers, top.parent, top.tags, top.digests], [s.chains, s.base, ['w/top:latest'], []]);
  const base = model.images.get(s.base)!;
  t.deepEqual([base.layers, base.parent, base.tags, base.digests], [[s.chains[0]], null, ['w/base:1'], [`w/base@sha256:${'a'.repeat(64)}`]]);
  t.is(base.size, s.layers[0].size);
  t.is(top.size, s.layers[0].size + s.layers[1].size);
  t.is(model.containers.length, 1);
  const c = model.containers[0];
  t.deepEqual([c.id, c.name, c.imageId, c.mountId, c.initId, c.parentLayer, c.command, c.state.exitCode, c.imageName],
    [s.container, 'box', s.top, hex('mount'), `${hex('mount')}-init`, s.chains[1], "/bin/sh -c 'a && b > c'", 3, 'w/top:latest']);
  // nothing staged or half-named is left
  t.deepEqual(fs.readdirSync(path.join(s.root, 'image', 'vfs', 'layerdb', 'tmp')), []);
  t.deepEqual(allPaths(s.root).filter((p) => path.basename(p).startsWith('.tmp-')), []);
  // Go's json.Marshal escapes: what dockerd itself writes for the same container
  t.true(fs.readFileSync(path.join(s.root, 'containers', s.container, 'config.v2.json'), 'utf8').includes('"a \\u0026\\u0026 b \\u003e c"'));
});

test('the writer refuses a write that would name what is not there, and writes nothing for it', async (t) => {
  const tmp = tempDir('strata-writer-');
  t.teardown(tmp.cleanup);
  const root = path.join(tmp.dir, 'root');
  const w = StoreWriter.open(root, 'vfs');
  const l1 = await layerOf('one', null);
  const missing = chainIdOf(null, l1.diffId);
  const cfg = configOf([l1.diffId], '2024-01-01T00:00:00Z');
  const e1 = t.throws(() => w.writeImage(cfg, { layers: [missing] }), { instanceOf: StoreWriteError });
  t.is(e1!.message, `${w.layerDir(missing)}: layer ${missing} of the image is not in layerdb`);
  const e2 = t.throws(() => w.commitLayer({ ...l1, parent: `sha256:${'b'.repeat(64)}` }), { instanceOf: StoreWriteError });
  t.regex(e2!.message, /parent layer sha256:b{64} is not in layerdb$/);
  const e3 = t.throws(() => w.writeTags(new Map([['x:1', imageIdOf(cfg)]])), { instanceOf: StoreWriteError });
  t.regex(e3!.message, /repositories\.json: x:1 names image sha256:[0-9a-f]{64}, which is not in imagedb$/);
  t.deepEqual(fs.readdirSync(path.join(w.meta, 'imagedb', 'content', 'sha256')), []);
  t.deepEqual(fs.readdirSync(path.join(w.meta, 'layerdb', 'sha256')), []);
  t.false(fs.existsSync(path.join(w.meta, 'repositories.json')));
  // committing a layer twice keeps the first record
  const c = w.commitLayer(l1);
  t.is(w.commitLayer({ ...l1, size: 999 }), c);
  t.is(fs.readFileSync(path.join(w.layerDir(c), 'size'), 'utf8'), String(l1.size));
});

// ---- against the stores dockerd 20.10 wrote ------------------------------------------

const tarOk = hasTool('tar') && hasTool('gzip');

/** image/ and containers/ of a golden store, unpacked with their modes (no root needed: no driver dirs). */
function unpackGolden(driver: string, into: string): string {
  fs.mkdirSync(into);
  execFileSync('tar', ['-C', into, '-xzpf', archiveOf(driver as (typeof GOLDEN_DRIVERS)[number]), 'image', 'containers'], { stdio: ['ignore', 'ignore', 'pipe'] });
  return into;
}

/** Each store path below image/ and containers/ with 64-hex names generalised, and its mode. */
function shape(root: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const top of ['image', 'containers']) {
    for (const rel of fs.readdirSync(path.join(root, top), { recursive: true }) as string[]) {
      const p = path.join(top, rel);
      const mode = (fs.lstatSync(path.join(root, p)).mode & 0o7777).toString(8);
      out.set(p.replace(/image\/[^/]+/, 'image/<driver>').replace(/[0-9a-f]{64}/g, '<id>'), mode);
    }
  }
  return out;
}

for (const driver of GOLDEN_DRIVERS) {
  when(tarOk, 'GNU tar and gzip')(`${driver} golden store: image ids, chain ids and repositories.json bytes are what layerstore computes`, (t) => {
    const tmp = tempDir('strata-writer-golden-');
    t.teardown(tmp.cleanup);
    const root = unpackGolden(driver, path.join(tmp.dir, 'root'));
    const meta = path.join(root, 'image', driver);
    const content = path.join(meta, 'imagedb', 'content', 'sha256');
    const layerdb = path.join(meta, 'layerdb', 'sha256');
    const names = fs.readdirSync(content);
    t.true(names.length >= 4);
    for (const name of names) {
      const bytes = fs.readFileSync(path.join(content, name));
      t.is(digestHex(imageIdOf(bytes)), name, 'image id = sha256 of the config bytes');
      const diffIds = (JSON.parse(bytes.toString('utf8')) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids;
      for (const c of chainIds(diffIds)) t.true(fs.existsSync(path.join(layerdb, digestHex(c))), `chain ${c} of image ${name}`);
    }
    for (const name of fs.readdirSync(layerdb)) {
      const read = (f: string) => fs.readFileSync(path.join(layerdb, name, f), 'utf8');
      const parent = fs.existsSync(path.join(layerdb, name, 'parent')) ? read('parent') : null;
      t.is(chainIdOf(parent, read('diff')), `sha256:${name}`);
    }
    const reposFile = path.join(meta, 'repositories.json');
    const repos = (JSON.parse(fs.readFileSync(reposFile, 'utf8')) as { Repositories: Record<string, Record<string, string>> }).Repositories;
    const refs = new Map(Object.values(repos).flatMap((r) => Object.entries(r)).reverse());
    t.deepEqual(tagStoreBytes(refs), fs.readFileSync(reposFile), 'repositories.json byte for byte');
  });

  when(tarOk, 'GNU tar and gzip')(`${driver} golden store: every path the writer makes is one dockerd made, with the same mode`, async (t) => {
    const tmp = tempDir('strata-writer-golden-');
    t.teardown(tmp.cleanup);
    const golden = shape(unpackGolden(driver, path.join(tmp.dir, 'golden')));
    const ours = shape((await writeSmallStore(path.join(tmp.dir, 'ours'))).root);
    t.true(ours.size >= 25);
    for (const [p, mode] of ours) t.is(golden.get(p), mode, p);
  });
}

// ---- a full disk --------------------------------------------------------------------

const noTinyFs = tinyFsMissing();
when(noTinyFs === null, noTinyFs ?? '', { serial: true })('a full disk: one error line naming the file, nothing half-written, the store still reads as before', async (t) => {
  const fsys = tinyExt4(4);
  t.teardown(fsys.cleanup);
  const s = await writeSmallStore(path.join(fsys.dir, 'root'));
  const before = await openStore(s.root);
  // fill the file system
  const filler = path.join(fsys.dir, 'filler');
  const fd = fs.openSync(filler, 'w');
  const block = Buffer.alloc(64 << 10, 1);
  try {
    for (;;) fs.writeSync(fd, block);
  } catch (e) {
    t.is((e as NodeJS.ErrnoException).code, 'ENOSPC');
  }
  for (let n = block.length >> 1; n >= 1; n >>= 1) {
    try {
      fs.writeSync(fd, block, 0, n);
    } catch {
      // as full as it gets
    }
  }
  fs.closeSync(fd);
  const w = StoreWriter.open(s.root, 'vfs');
  const big = Buffer.from(JSON.stringify({ rootfs: { type: 'layers', diff_ids: [s.layers[0].diffId] }, pad: 'p'.repeat(200_000) }));
  const e = t.throws(() => w.writeImage(big, { layers: [s.chains[0]] }), { instanceOf: StoreWriteError });
  t.is(e!.message, `${path.join(w.meta, 'imagedb', 'content', 'sha256', digestHex(imageIdOf(big)))}: cannot be written (no space left on device)`);
  t.false(e!.message.includes('\n'));
  const l3 = { ...(await layerOf('three', s.chains[1])), tarSplit: Buffer.alloc(300_000, 7) };
  const e2 = t.throws(() => w.commitLayer(l3), { instanceOf: StoreWriteError });
  t.regex(e2!.message, /: cannot be written \(no space left on device\)$/);
  // no temp file, no staging dir, the same model
  t.deepEqual(allPaths(s.root).filter((p) => path.basename(p).startsWith('.tmp-')), []);
  t.deepEqual(fs.readdirSync(path.join(w.meta, 'layerdb', 'tmp')), []);
  const after = await openStore(s.root);
  t.deepEqual(after.problems.list, []);
  t.deepEqual([...after.images.keys()].sort(), [...before.images.keys()].sort());
  t.deepEqual([...after.layers.keys()].sort(), [...before.layers.keys()].sort());
});

// ---- through a driver ---------------------------------------------------------------

asRoot()('applyLayer: a tar that fails to apply leaves no driver dir and no record; a layer applied twice from a stream is recorded once', async (t) => {
  const tmp = tempDir('strata-writer-driver-');
  t.teardown(tmp.cleanup);
  const root = path.join(tmp.dir, 'root');
  const w = StoreWriter.open(root, 'vfs');
  const driver = await getDriver('vfs', root);
  t.teardown(() => driver.cleanup());
  const tar = await packTar([{ name: 'a.txt', content: 'a'.repeat(5000) }]);
  await t.throwsAsync(w.applyLayer(driver, tar.subarray(0, 1024), null, hex('cut')));
  t.false(await driver.exists(hex('cut')));
  t.deepEqual(fs.readdirSync(path.join(w.meta, 'layerdb', 'sha256')), []);
  const first = await w.applyLayer(driver, tar, null, hex('first'));
  t.is(first.tarBytes, tar.length);
  t.is(first.size, 5000);
  const again = await w.applyLayer(driver, Readable.from([tar]), null, hex('again'));
  t.is(again.chainId, first.chainId);
  t.is(again.cacheId, hex('first'));
  t.false(await driver.exists(hex('again')));
  const model = await openStore(root);
  t.deepEqual(model.problems.list, []);
  t.is(model.layers.get(first.chainId)!.cacheId, hex('first'));
});

test('writers in several processes committing the same layers at once each succeed, and each layer is recorded once, whole', async (t) => {
  const { dir, cleanup } = tempDir('strata-writer-');
  t.teardown(cleanup);
  const root = path.join(dir, 'root');
  StoreWriter.open(root, 'vfs');
  const barrier = path.join(dir, 'barrier');
  execFileSync('mkfifo', [barrier]);
  const COUNT = 40;
  const { spawn } = await import('node:child_process');
  const helper = path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'helpers', 'commit-layers.ts');
  const kids = [0, 1, 2, 3].map(() => {
    const c = spawn(process.execPath, ['--import', 'tsx', helper, root, barrier, String(COUNT)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    c.stderr.setEncoding('utf8').on('data', (d: string) => { err += d; });
    const ready = new Promise<void>((resolve) => c.stdout.setEncoding('utf8').on('data', (d: string) => { if (d.includes('ready')) resolve(); }));
    const done = new Promise<{ code: number | null; err: string }>((resolve) => c.on('close', (code) => resolve({ code, err })));
    return { ready, done };
  });
  // the one writer of the FIFO: each child blocks reading it until this end closes, so one close releases them all
  const fd = fs.openSync(barrier, fs.constants.O_RDWR);
  await Promise.all(kids.map((k) => k.ready));
  fs.closeSync(fd);
  const results = await Promise.all(kids.map((k) => k.done));
  for (const r of results) t.is(r.code, 0, r.err.split('\n').find((l) => l.includes('StoreWriteError:')) ?? r.err);
  const store = await openStore(root);
  t.is(store.layers.size, COUNT);
  t.deepEqual(store.problems.list, []);
  t.deepEqual(fs.readdirSync(path.join(root, 'image', 'vfs', 'layerdb', 'tmp')), [], 'no staging dir left');
});

test('the writer follows no symlink among the store\'s own directories: a target root whose image/ (or layerdb/…) points elsewhere is refused, nothing written there', (t) => {
  for (const sub of ['image', 'image/vfs', 'image/vfs/layerdb', 'image/vfs/layerdb/sha256', 'image/vfs/layerdb/tmp', 'image/vfs/imagedb/content/sha256']) {
    const { dir, cleanup } = tempDir('strata-writer-');
    t.teardown(cleanup);
    const root = path.join(dir, 'root');
    const outside = path.join(dir, 'outside');
    fs.mkdirSync(outside);
    fs.mkdirSync(path.dirname(path.join(root, sub)), { recursive: true });
    fs.symlinkSync(outside, path.join(root, sub));
    const e = t.throws(() => StoreWriter.open(root, 'vfs'), { instanceOf: StoreWriteError }, sub);
    t.is(e?.message, `${path.join(root, sub)}: is a symlink (the store writer follows none below the data root)`, sub);
    t.deepEqual(fs.readdirSync(outside), [], `${sub}: nothing written outside`);
  }
});
