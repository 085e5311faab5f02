// A hostile review of strata migrate (issue 12): real stores written by the
// fixtures, then damaged the way an attacker (or a bad disk, or a hand edit)
// would — ids that are paths, symlinks where the store has files or dirs,
// FIFOs, tar-splits whose names, sizes and links lie, whiteouts aimed at ../,
// journals edited by hand, a second run at once, odd modes and xattrs on the
// link fast path. Each run must either migrate correctly or stop with one
// line naming the file or entry, with the source and everything outside the
// root as they were.
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { writeModernStore, type ModernStoreInfo, type StoreSpec, type WrittenLayer } from '../fixtures/modern-store.ts';
import { holdsData } from '../drivers/layout.ts';
import { lockMigration } from '../migrate/journal.ts';
import { runMigration } from '../migrate/migrate.ts';
import { TarSplitRecorder } from '../layerstore/tar-split.ts';
import * as sys from '../sys/syscalls.ts';
import { strataBounded } from './helpers/bounded-cli.ts';
import { capabilityV2 } from './helpers/file-capability.ts';
import { sourceSnapshot, verifyProblems } from './helpers/migrate-store.ts';
import { openStore } from '../layerstore/store.ts';
import { asRoot, when } from './helpers/require.ts';
import { tinyExt4, tinyFsMissing } from './helpers/tiny-fs.ts';
import { snapshotTree } from './helpers/store-snapshot.ts';
import { fixChecksum, packTar, type Entry } from './helpers/tar.ts';

const SECRET = 'root:$6$secrethash:19000:0:99999:7:::\n';
const T = new Date('2023-11-14T22:13:20Z');

/** One image of two layers (the base holds `leak`, a file the attacks redirect, and a setuid binary) and, with `container`, one container. */
function smallSpec(container = true): StoreSpec {
  return {
    images: [{
      name: 'img', tags: ['hostile/img:1'], created: '2023-11-14T22:13:20Z', layers: [
        {
          createdBy: 'base', entries: [
            { name: 'bin/', type: 'directory', mtime: T },
            { name: 'bin/suid', content: 'ELF-ish\n', mode: 0o4755, uid: 1234, gid: 5678, mtime: T },
            { name: 'etc/', type: 'directory', mtime: T },
            { name: 'etc/passwd', content: 'root:x:0:0:root:/root:/bin/sh\n', mtime: T },
            { name: 'leak', content: SECRET, mtime: T },
          ],
        },
        { createdBy: 'top', entries: [{ name: 'etc/', type: 'directory', mtime: T }, { name: 'etc/motd', content: 'hi\n', mtime: T }] },
      ],
    }],
    containers: container ? [{ name: 'c', image: 'img', created: '2023-11-15T00:00:00Z', change: (r) => fs.writeFileSync(path.join(r, 'etc/new'), 'new\n') }] : [],
  };
}

interface Fixture {
  /** the temp dir: the root, and beside it what an attack points at */
  dir: string;
  root: string;
  driver: string;
  info: ModernStoreInfo;
  base: WrittenLayer;
  top: WrittenLayer;
  /** outside the root: a file like /etc/shadow, and a directory an attack aims at */
  shadow: string;
  victim: string;
  outside(): Map<string, string>;
}

// the vfs store is written once (through the driver, fsync by fsync) and each test damages a copy of it; the
// drivers that mount write a store per test (no copy carries another home's mount bookkeeping), aufs one
// without a container: the attacks on it are on image layers, which need no FUSE mount to write or move
const pristineDir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-hostile-pristine-'));
test.after.always(() => fs.rmSync(pristineDir, { recursive: true, force: true }));
const pristine = new Map<string, Promise<ModernStoreInfo>>();

/** A copy of `driver`'s store in a temp dir of its own (below `base`), removed at the end. */
async function fixture(t: ExecutionContext, driver = 'vfs', base = os.tmpdir()): Promise<Fixture> {
  const dir = fs.mkdtempSync(path.join(base, 'strata-hostile-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const root = path.join(dir, 'root');
  let info: ModernStoreInfo;
  if (driver === 'vfs') {
    if (!pristine.has(driver)) pristine.set(driver, writeModernStore(path.join(pristineDir, driver), driver, smallSpec()));
    info = await pristine.get(driver)!;
    execFileSync('cp', ['-a', info.root, root]); // owners, modes, ns times, xattrs, hardlinks
  } else info = await writeModernStore(root, driver, smallSpec(driver !== 'aufs'));
  const layers = [...info.layers.values()];
  const shadow = path.join(dir, 'shadow');
  fs.writeFileSync(shadow, SECRET, { mode: 0o600 });
  const victim = path.join(dir, 'victim');
  fs.mkdirSync(victim);
  fs.writeFileSync(path.join(victim, 'keep'), 'keep me\n');
  return {
    dir, root, driver, info, shadow, victim,
    base: layers.find((l) => l.parent === null)!, top: layers.find((l) => l.parent !== null)!,
    outside: () => new Map([...snapshotTree(victim)].concat([['shadow', fs.readFileSync(shadow, 'utf8')]])),
  };
}

const layerDir = (f: Fixture, chainId: string) => path.join(f.root, 'image', f.driver, 'layerdb', 'sha256', chainId.slice('sha256:'.length));
const mountDir = (f: Fixture) => {
  const c = [...f.info.containers.values()][0];
  return path.join(f.root, 'image', f.driver, 'layerdb', 'mounts', c.id);
};
/** Where `layer`'s own files are in the source. */
const filesOf = (f: Fixture, l: WrittenLayer) => (f.driver === 'vfs' ? path.join(f.root, 'vfs', 'dir', l.cacheId) : path.join(f.root, 'aufs', 'diff', l.cacheId));

/** Migrate in-process, as the CLI does; the error's message is the one line the CLI prints after "strata: ". */
async function migrate(root: string, opts: { to?: string; resume?: boolean; rollback?: boolean; deleteSource?: boolean } = {}): Promise<string | null> {
  try {
    await runMigration({ root, to: opts.to ?? 'overlay2', resume: opts.resume, rollback: opts.rollback, deleteSource: opts.deleteSource });
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

/** The run refused: one line naming every one of `names`, not leaking the secret; source, outside and target as they were. */
function refused(t: ExecutionContext, f: Fixture, err: string | null, source: Map<string, string>, outside: Map<string, string>, ...names: string[]): void {
  t.not(err, null, 'the run must refuse');
  if (err === null) return;
  t.false(err.includes('\n'), err);
  for (const n of names) t.true(err.includes(n), `${JSON.stringify(err)} names ${n}`);
  t.false(err.includes('secrethash'), 'no byte of a file outside the store in the message');
  t.deepEqual(sourceSnapshot(f.root, f.driver, { linked: f.driver === 'aufs' }), source, 'the source is untouched');
  t.deepEqual(f.outside(), outside, 'nothing outside the root changed');
  for (const to of ['overlay2', 'vfs'].filter((d) => d !== f.driver)) {
    t.false(fs.existsSync(path.join(f.root, 'image', to)), 'no target metadata');
    t.false(holdsData(path.join(f.root, to)), 'no target layers');
  }
}

/** Attack, run, and expect a refusal naming `names`; then --rollback gives the root back. */
async function expectRefusal(t: ExecutionContext, f: Fixture, ...names: string[]): Promise<void> {
  const source = sourceSnapshot(f.root, f.driver, { linked: f.driver === 'aufs' });
  const outside = f.outside();
  refused(t, f, await migrate(f.root), source, outside, ...names);
  if (fs.existsSync(path.join(f.root, '.strata-migrate'))) t.is(await migrate(f.root, { rollback: true }), null);
  t.deepEqual(f.outside(), outside);
}

// ---- tar-split surgery ------------------------------------------------------------

type Line = Record<string, unknown>;
const readLines = (file: string): Line[] => zlib.gunzipSync(fs.readFileSync(file)).toString('utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Line);
const writeLines = (file: string, lines: Line[]) => fs.writeFileSync(file, zlib.gzipSync(lines.map((l) => JSON.stringify(l) + '\n').join('')));

/** Rewrite the file entry named `name` of `layer`'s tar-split (the tar's header still says `name`). */
function editEntry(f: Fixture, l: WrittenLayer, name: string, edit: (e: Line) => void): void {
  const file = path.join(layerDir(f, l.chainId), 'tar-split.json.gz');
  const lines = readLines(file);
  const e = lines.find((x) => x.type === 1 && x.name === name);
  if (!e) throw new Error(`no entry ${name}`);
  edit(e);
  writeLines(file, lines);
}

/** `layer` recorded as the tar of `entries` (bodies empty, so no file is read): its tar-split and DiffID replaced. */
async function replaceLayerTar(f: Fixture, l: WrittenLayer, entries: Entry[]): Promise<void> {
  const tar = await packTar(entries);
  const rec = new TarSplitRecorder();
  rec.push(tar);
  const dir = layerDir(f, l.chainId);
  fs.writeFileSync(path.join(dir, 'tar-split.json.gz'), rec.finish());
  fs.writeFileSync(path.join(dir, 'diff'), rec.diffId());
}

// ---- hostile ids --------------------------------------------------------------------

const HOSTILE_IDS: [string, (f: Fixture) => string][] = [
  ['..', () => '..'],
  ['a/b', () => 'a/b'],
  ['an absolute path', (f) => f.victim],
  ['a relative path out of the home', (f) => path.relative(path.join(f.root, 'vfs', 'dir'), f.victim)],
  ['a NUL', () => 'abc\0def'],
  ['5000 characters', () => 'a'.repeat(5000)],
];

for (const [what, id] of HOSTILE_IDS) {
  asRoot({ serial: true })(`hostile cache-id (${what}) is refused naming the layer`, async (t) => {
    const f = await fixture(t);
    const v = id(f);
    fs.writeFileSync(path.join(layerDir(f, f.top.chainId), 'cache-id'), v);
    // the model refuses what holds a '/' or is '..' (naming the layerdb entry); the layout guard the rest (naming the id)
    await expectRefusal(t, f, v.includes('/') || v === '..' ? layerDir(f, f.top.chainId) : v.includes('\0') ? JSON.stringify(v) : v);
  });
}

for (const [file, what, id] of [['mount-id', 'a relative path out of the home', (f: Fixture) => `../../../${path.basename(f.victim)}`], ['init-id', 'a NUL', () => `${'a'.repeat(64)}\0-init`], ['mount-id', '..', () => '..']] as const) {
  asRoot({ serial: true })(`hostile ${file} (${what}) is refused`, async (t) => {
    const f = await fixture(t);
    fs.writeFileSync(path.join(mountDir(f), file), id(f));
    await expectRefusal(t, f, JSON.stringify(id(f)));
  });
}

// ---- symlinks where the store has files or directories -------------------------------

/** `p` (a file or a tree) moved to a copy under the victim dir, a symlink to it left in its place. */
function linkOut(f: Fixture, p: string, name: string): void {
  fs.cpSync(p, path.join(f.victim, name), { recursive: true, verbatimSymlinks: true });
  fs.rmSync(p, { recursive: true });
  fs.symlinkSync(path.join(f.victim, name), p);
}

const ctrDir = (f: Fixture) => path.join(f.root, 'containers', [...f.info.containers.values()][0].id);
const tarSplitOf = (f: Fixture) => path.join(layerDir(f, f.top.chainId), 'tar-split.json.gz');

/** What is swapped for a symlink to a copy outside, and what the refusal must name. */
const LINKED_OUT: [string, string, (f: Fixture) => string, (f: Fixture) => string][] = [
  ['a layer\'s files dir (never read through)', 'vfs', (f) => filesOf(f, f.base), (f) => f.base.cacheId],
  ['overlay2 source: a layer\'s diff dir (never read through)', 'overlay2', (f) => path.join(f.root, 'overlay2', f.base.cacheId, 'diff'), (f) => f.base.cacheId],
  ['a layerdb entry', 'vfs', (f) => layerDir(f, f.top.chainId), (f) => path.basename(layerDir(f, f.top.chainId))],
  ['image/<driver>', 'vfs', (f) => path.join(f.root, 'image', f.driver), (f) => path.join(f.root, 'image', f.driver)],
  ['a container dir (not silently left behind)', 'vfs', ctrDir, ctrDir],
  ['a container\'s layerdb/mounts record', 'vfs', mountDir, mountDir],
  ['a tar-split (refused unread)', 'vfs', tarSplitOf, tarSplitOf],
];

for (const [what, driver, victim, named] of LINKED_OUT) {
  asRoot({ serial: true })(`${what} symlinked to a copy outside is refused before the switch`, async (t) => {
    const f = await fixture(t, driver);
    linkOut(f, victim(f), 'moved-out');
    const source = sourceSnapshot(f.root, f.driver);
    const outside = f.outside();
    const to = driver === 'overlay2' ? 'vfs' : 'overlay2';
    refused(t, f, await migrate(f.root, { to }), source, outside, named(f));
    if (fs.existsSync(path.join(f.root, '.strata-migrate'))) t.is(await migrate(f.root, { rollback: true }), null);
    t.deepEqual(f.outside(), outside);
  });
}

asRoot({ serial: true })('config.v2.json → a shadow file outside: refused before the switch, nothing of it read or printed', async (t) => {
  const f = await fixture(t);
  const c = [...f.info.containers.values()][0];
  const cfg = path.join(f.root, 'containers', c.id, 'config.v2.json');
  fs.rmSync(cfg);
  fs.symlinkSync(f.shadow, cfg);
  await expectRefusal(t, f, cfg);
});

for (const dangling of [false, true]) {
  asRoot({ serial: true })(`a symlinked journal dir .strata-migrate (${dangling ? 'dangling' : 'to a dir outside'}): nothing is staged through it`, async (t) => {
    const f = await fixture(t);
    const target = path.join(f.victim, 'staging');
    if (!dangling) fs.mkdirSync(target);
    fs.symlinkSync(target, path.join(f.root, '.strata-migrate'));
    const outside = f.outside();
    const source = sourceSnapshot(f.root, f.driver);
    for (const resume of [false, true]) {
      refused(t, f, await migrate(f.root, { resume }), source, outside, '.strata-migrate');
    }
    refused(t, f, await migrate(f.root, { rollback: true }), source, outside, '.strata-migrate');
    t.true(fs.lstatSync(path.join(f.root, '.strata-migrate')).isSymbolicLink(), 'the link is left for the user to look at');
  });
}

// ---- FIFOs and huge files ------------------------------------------------------------
// The first of each kind through the CLI with a bound (a blocked open would
// hang the run: the bound turns that into a failure, and the CLI's one line is
// checked as printed); the rest in-process, where a block would stop this
// worker until ava's timeout fails it.

type RunOpts = { resume?: boolean; rollback?: boolean };

async function refusesEach(t: ExecutionContext, f: Fixture, opts: RunOpts, cli: boolean, ...names: string[]): Promise<void> {
  const source = sourceSnapshot(f.root, f.driver);
  const outside = f.outside();
  let err: string | null;
  if (cli) {
    const args = opts.rollback ? ['--rollback'] : ['--to', 'overlay2', ...(opts.resume ? ['--resume'] : [])];
    const r = await strataBounded(['migrate', '--root', f.root, ...args], 120_000);
    t.false(r.timedOut, 'the run must not block');
    t.is(r.code, 1, r.stderr);
    t.regex(r.stderr, /^strata: [^\n]+\n$/);
    err = r.stderr.slice('strata: '.length, -1);
  } else err = await migrate(f.root, opts);
  refused(t, f, err, source, outside, ...names);
}

const fifo = (p: string) => {
  fs.rmSync(p, { force: true });
  sys.mknod(p, sys.S_IFIFO | 0o600, 0);
};

asRoot({ serial: true })('FIFOs as config.v2.json, tar-split, cache-id and a layer file: refused unread, nothing blocks', async (t) => {
  const f = await fixture(t);
  const c = [...f.info.containers.values()][0];
  const cfg = path.join(f.root, 'containers', c.id, 'config.v2.json');
  fifo(cfg);
  await refusesEach(t, f, {}, true, cfg);
  const g = await fixture(t);
  const ts = path.join(layerDir(g, g.top.chainId), 'tar-split.json.gz');
  fifo(ts);
  await refusesEach(t, g, {}, false, ts);
  const h = await fixture(t);
  const cid = path.join(layerDir(h, h.top.chainId), 'cache-id');
  fifo(cid);
  await refusesEach(t, h, {}, false, layerDir(h, h.top.chainId));
  const k = await fixture(t);
  fifo(path.join(filesOf(k, k.base), 'leak'));
  await refusesEach(t, k, {}, false, path.join(filesOf(k, k.base), 'leak'));
});

// what the reader cannot read does not reach the target: migrating around it would lose it (for good, with --delete-source)
for (const [what, damage] of [
  ['an image config cut short', (f: Fixture) => {
    const img = [...f.info.images.values()][0];
    const p = path.join(f.root, 'image', f.driver, 'imagedb', 'content', 'sha256', img.id.slice('sha256:'.length));
    fs.writeFileSync(p, fs.readFileSync(p).subarray(0, 20));
    return p;
  }],
  ['a layer whose diff file is garbage', (f: Fixture) => {
    const p = path.join(layerDir(f, f.top.chainId), 'diff');
    fs.writeFileSync(p, 'not a digest');
    return p;
  }],
] as const) {
  asRoot({ serial: true })(`a store with ${what}: refused naming the file, nothing written, the source untouched`, async (t) => {
    const f = await fixture(t);
    const file = damage(f);
    const err = await migrate(f.root, { deleteSource: true });
    t.truthy(err);
    t.true(err!.startsWith(`${file}: `), err!);
    t.regex(err!, /a damaged store is not migrated, nothing was written$/);
    t.false(fs.existsSync(path.join(f.root, '.strata-migrate')), 'no staging area');
    t.false(fs.existsSync(path.join(f.root, 'image', 'overlay2')), 'no target metadata');
  });
}

asRoot({ serial: true })('a journal that is a FIFO, or huge: --resume and --rollback refuse it in one line without blocking or slurping', async (t) => {
  const f = await fixture(t);
  const dir = path.join(f.root, '.strata-migrate');
  const journal = path.join(dir, 'journal.json');
  fs.mkdirSync(dir);
  fifo(journal);
  await refusesEach(t, f, { resume: true }, true, journal);
  await refusesEach(t, f, { rollback: true }, false, journal);
  fs.rmSync(journal);
  const fd = fs.openSync(journal, 'w');
  fs.ftruncateSync(fd, 4 * 2 ** 30); // sparse: 4 GiB that would be read whole
  fs.closeSync(fd);
  await refusesEach(t, f, { resume: true }, false, journal);
  await refusesEach(t, f, { rollback: true }, false, journal);
});

asRoot({ serial: true })('a huge cache-id and a huge tar-split are refused by size, not read', async (t) => {
  const f = await fixture(t);
  const d = layerDir(f, f.top.chainId);
  for (const name of ['cache-id', 'tar-split.json.gz']) {
    const fd = fs.openSync(path.join(d, name), 'w');
    fs.ftruncateSync(fd, 8 * 2 ** 30);
    fs.closeSync(fd);
  }
  await refusesEach(t, f, {}, false, d);
});

asRoot({ serial: true })('a huge layer size file is refused by the plan (the reader reports it), before anything is copied or read', async (t) => {
  const f = await fixture(t);
  const size = path.join(layerDir(f, f.top.chainId), 'size');
  const fd = fs.openSync(size, 'w');
  fs.ftruncateSync(fd, 8 * 2 ** 30);
  fs.closeSync(fd);
  await refusesEach(t, f, {}, false, size);
  t.false(fs.existsSync(path.join(f.root, '.strata-migrate')), 'nothing staged');
});

// ---- tar-splits that lie --------------------------------------------------------------

// `leak` keeps its recorded size and CRC: were the reassembly to read the secret
// outside, the tar — and so the DiffID — would come out right and the run pass.
const REDIRECTS: [string, (f: Fixture) => string | null, (f: Fixture) => void][] = [
  ['a ../ path', (f) => `${path.relative(filesOf(f, f.base), f.dir)}/shadow`, () => undefined],
  ['an absolute path', (f) => f.shadow, () => undefined],
  ['a symlinked dir in the source layer', () => 'esc/shadow', (f) => fs.symlinkSync(f.dir, path.join(filesOf(f, f.base), 'esc'))],
  ['a ../ symlinked dir in the source layer', () => 'esc/shadow', (f) => fs.symlinkSync(path.relative(filesOf(f, f.base), f.dir), path.join(filesOf(f, f.base), 'esc'))],
  ['the file itself a symlink out', () => null, (f) => {
    fs.rmSync(path.join(filesOf(f, f.base), 'leak'));
    fs.symlinkSync(f.shadow, path.join(filesOf(f, f.base), 'leak'));
  }],
];

for (const [what, name, prepare] of REDIRECTS) {
  asRoot({ serial: true })(`tar-split naming a file through ${what}: never read from outside the layer`, async (t) => {
    const f = await fixture(t);
    fs.rmSync(path.join(filesOf(f, f.base), 'leak'));
    if (what.startsWith('the file itself')) fs.writeFileSync(path.join(filesOf(f, f.base), 'leak'), '');
    prepare(f);
    const n = name(f);
    if (n !== null) editEntry(f, f.base, 'leak', (e) => void (e.name = n));
    await expectRefusal(t, f, f.base.cacheId);
  });
}

for (const [what, size] of [['a petabyte', 1e15], ['one byte more', SECRET.length + 1], ['one byte less', SECRET.length - 1]] as const) {
  asRoot({ serial: true })(`tar-split whose size for a file lies (${what}): one line, promptly`, async (t) => {
    const f = await fixture(t);
    editEntry(f, f.base, 'leak', (e) => void (e.size = size));
    await expectRefusal(t, f, f.base.cacheId, 'leak');
  });
}

asRoot({ serial: true })('a petabyte size for a file missing from the layer: refused without streaming the zeros', async (t) => {
  const f = await fixture(t);
  fs.rmSync(path.join(filesOf(f, f.base), 'leak'));
  editEntry(f, f.base, 'leak', (e) => void (e.size = 1e15));
  await expectRefusal(t, f, f.base.cacheId, 'leak');
});

/** The tar header of `name` in `layer`'s tar-split (the last block of the segment before its entry) given body size `size`, checksum fixed. */
function editHeaderSize(f: Fixture, l: WrittenLayer, name: string, size: number): void {
  const file = path.join(layerDir(f, l.chainId), 'tar-split.json.gz');
  const lines = readLines(file);
  const at = lines.findIndex((x) => x.type === 1 && x.name === name);
  const seg = Buffer.from(lines[at - 1].payload as string, 'base64');
  const h = seg.subarray(seg.length - 512);
  h.write(size.toString(8).padStart(11, '0') + '\0', 124, 'latin1');
  fixChecksum(h);
  lines[at - 1].payload = seg.toString('base64');
  lines[at].size = size;
  writeLines(file, lines);
}

when(tinyFsMissing() === null, tinyFsMissing() ?? '', { serial: true })('a tar header and its tar-split entry agreeing on 8 GiB for a file the layer lacks: refused at once, no zeros streamed into the target', async (t) => {
  // on a 64 MiB file system: zeros streamed into the target would end in ENOSPC instead of the missing file's name
  const tiny = tinyExt4(64);
  t.teardown(() => tiny.cleanup());
  const f = await fixture(t, 'vfs', tiny.dir);
  fs.rmSync(path.join(filesOf(f, f.base), 'leak'));
  editHeaderSize(f, f.base, 'leak', 8 * 2 ** 30 - 1);
  const source = sourceSnapshot(f.root, f.driver);
  const err = await migrate(f.root);
  refused(t, f, err, source, f.outside(), f.base.cacheId, 'leak', 'is missing');
  t.notRegex(err ?? '', /ENOSPC|no space/i);
  t.is(await migrate(f.root, { rollback: true }), null);
});

// A layer tar (DiffID recorded to match) whose entries aim out of the layer:
// applied into the target, nothing outside it may change, in any order.
const ESCAPES: [string, (f: Fixture) => Entry[]][] = [
  ['a hardlink to ../ outside', (f) => [{ name: 'x', type: 'link', linkname: `${path.relative(filesOf(f, f.top), f.dir)}/shadow` }]],
  ['a hardlink to an absolute path', (f) => [{ name: 'x', type: 'link', linkname: f.shadow }]],
  ['a symlink to a dir outside, then a file below it', (f) => [{ name: 'd', type: 'symlink', linkname: f.victim }, { name: 'd/keep', content: '' }]],
  ['a symlink, then a hardlink through it', (f) => [{ name: 'd', type: 'symlink', linkname: f.dir }, { name: 'x', type: 'link', linkname: 'd/shadow' }]],
  ['a whiteout aimed at ../', () => [{ name: 'etc/', type: 'directory' }, { name: 'etc/../../.wh.victim', content: '' }]],
  ['a symlink, then a whiteout through it', (f) => [{ name: 'd', type: 'symlink', linkname: f.victim }, { name: 'd/.wh.keep', content: '' }]],
  ['a symlink, then an opaque marker through it', (f) => [{ name: 'd', type: 'symlink', linkname: f.victim }, { name: 'd/.wh..wh..opq', content: '' }]],
  ['a dir, then the dir swapped for a symlink out, then a file in it', (f) => [{ name: 'd/', type: 'directory', mode: 0o700 }, { name: 'd', type: 'symlink', linkname: f.victim }, { name: 'd/keep', content: '', mode: 0o777 }]],
];

for (const [what, entries] of ESCAPES) {
  asRoot({ serial: true })(`layer tar with ${what}: nothing outside the layer changes`, async (t) => {
    const f = await fixture(t);
    await replaceLayerTar(f, f.top, entries(f));
    const outside = f.outside();
    const source = sourceSnapshot(f.root, f.driver);
    const err = await migrate(f.root);
    t.deepEqual(f.outside(), outside, 'nothing outside the root changed');
    t.deepEqual(sourceSnapshot(f.root, f.driver), source, 'the source is untouched');
    if (err !== null) {
      t.false(err.includes('\n'), err);
      t.true(err.includes(f.top.cacheId), err);
      t.is(await migrate(f.root, { rollback: true }), null);
    } else {
      // the one problem the surgery itself makes: a new DiffID under the old chain id
      const artifact = `chain id ${f.top.chainId} does not follow`;
      t.deepEqual((await verifyProblems(f.root, 'overlay2')).filter((p) => !p.includes(artifact)), []);
    }
    t.deepEqual(f.outside(), outside);
  });
}

// ---- journals edited by hand ------------------------------------------------------------

/** A migration stopped after its first layer (journal, moved.log, staged root), the store repaired, ready to be tampered with. */
async function startedMigration(t: ExecutionContext): Promise<Fixture & { journal: string; log: string }> {
  const f = await fixture(t);
  // a real stop: the top layer's file damaged, the run fails there, then the file is put back
  const motd = path.join(filesOf(f, f.top), 'etc', 'motd');
  const good = fs.readFileSync(motd);
  fs.writeFileSync(motd, 'HI\n');
  t.regex((await migrate(f.root)) ?? '', new RegExp(f.top.cacheId));
  fs.writeFileSync(motd, good);
  const staging = path.join(f.root, '.strata-migrate');
  t.true(fs.readFileSync(path.join(staging, 'moved.log'), 'utf8').startsWith(`${f.base.cacheId} `), 'the base layer was moved');
  return { ...f, journal: path.join(staging, 'journal.json'), log: path.join(staging, 'moved.log') };
}

const JOURNAL_EDITS: [string, (f: Fixture) => Record<string, unknown>, 'resume' | 'rollback' | 'delete'][] = [
  ['to: a path out of the root (rollback)', (f) => ({ version: 1, from: 'vfs', to: `../${path.basename(f.victim)}`, phase: 'switching', targetHomeWasEmptyDir: false }), 'rollback'],
  ['to: a path out of the root (resume)', (f) => ({ version: 1, from: 'vfs', to: `../../${path.basename(f.dir)}/victim`, phase: 'switching', targetHomeWasEmptyDir: false }), 'resume'],
  ['from: a path out of the root, finished (--delete-source)', (f) => ({ version: 1, from: `../${path.basename(f.victim)}`, to: 'overlay2', phase: 'done', targetHomeWasEmptyDir: false }), 'delete'],
  ['phase: done for a run that stopped while staging (--delete-source)', () => ({ version: 1, from: 'vfs', to: 'overlay2', phase: 'done', targetHomeWasEmptyDir: false }), 'delete'],
  ['an unknown driver', () => ({ version: 1, from: 'vfs', to: 'zfs2', phase: 'staging', targetHomeWasEmptyDir: false }), 'rollback'],
  ['a field of another type', () => ({ version: 1, from: 'vfs', to: 'overlay2', phase: 'staging', targetHomeWasEmptyDir: 'yes' }), 'rollback'],
  ['not an object', () => ({ version: 1, from: ['vfs'], to: 'overlay2', phase: 'staging', targetHomeWasEmptyDir: false }), 'resume'],
];

for (const [what, journal, how] of JOURNAL_EDITS) {
  asRoot({ serial: true })(`a journal edited by hand (${what}): refused in one line, nothing acted on`, async (t) => {
    const f = await startedMigration(t);
    fs.writeFileSync(f.journal, JSON.stringify(journal(f)));
    const outside = f.outside();
    const source = sourceSnapshot(f.root, f.driver);
    const err = await migrate(f.root, how === 'rollback' ? { rollback: true } : { resume: true, deleteSource: how === 'delete' });
    refused(t, f, err, source, outside, f.journal);
    t.true(fs.existsSync(f.root), 'the root is there');
  });
}

for (const [what, log] of [['a garbage line', 'not a line of moved.log\n'], ['an id that is a path', '../../victim 12\n'], ['a layer that was never moved', '@TOP@ 4096\n']] as const) {
  asRoot({ serial: true })(`moved.log edited by hand (${what}): --resume refuses in one line`, async (t) => {
    const f = await startedMigration(t);
    fs.writeFileSync(f.log, log.replace('@TOP@', f.top.cacheId));
    const outside = f.outside();
    const source = sourceSnapshot(f.root, f.driver);
    refused(t, f, await migrate(f.root, { resume: true }), source, outside, 'moved.log');
    t.is(await migrate(f.root, { rollback: true }), null, 'rollback still works');
    t.false(fs.existsSync(path.join(f.root, '.strata-migrate')));
  });
}

asRoot({ serial: true })('configs/ edited by hand (a kept config for a container dir symlinked out of the root): --rollback refuses, nothing renamed out', async (t) => {
  const f = await startedMigration(t);
  const id = 'f'.repeat(64);
  fs.mkdirSync(path.join(f.victim, 'ctr'));
  fs.symlinkSync(path.join(f.victim, 'ctr'), path.join(f.root, 'containers', id));
  fs.writeFileSync(path.join(f.root, '.strata-migrate', 'configs', id), '{}');
  const outside = f.outside();
  const err = await migrate(f.root, { rollback: true });
  t.not(err, null);
  t.true(err?.includes(path.join(f.root, 'containers', id)), err ?? '');
  t.false(err?.includes('\n'));
  t.deepEqual(f.outside(), outside, 'nothing was renamed into the directory outside');
});

// ---- two runs at once -------------------------------------------------------------------

asRoot({ serial: true })('a second migrate on the same root while one holds it: refused in one line, then runs once the first is gone', async (t) => {
  const f = await fixture(t);
  const held = lockMigration(f.root);
  const source = sourceSnapshot(f.root, f.driver);
  const outside = f.outside();
  try {
    const r = await strataBounded(['migrate', '--root', f.root, '--to', 'overlay2'], 120_000);
    t.is(r.code, 1, r.stderr);
    t.regex(r.stderr, /^strata: [^\n]*another strata migrate[^\n]*\n$/);
    for (const args of [{ resume: true }, { rollback: true }]) refused(t, f, await migrate(f.root, args), source, outside, f.root);
  } finally {
    held.release();
  }
  t.is(await migrate(f.root), null);
  t.deepEqual(await verifyProblems(f.root, 'overlay2'), []);
});

asRoot({ serial: true })('a source file hard-linked to a file outside the layer: the copy path gives the target its own inode', async (t) => {
  const f = await fixture(t);
  const leak = path.join(filesOf(f, f.base), 'leak');
  fs.rmSync(leak);
  fs.linkSync(f.shadow, leak); // the same bytes: the DiffID holds, so only the inodes tell
  t.is(await migrate(f.root), null);
  const migrated = path.join(f.root, 'overlay2', f.base.cacheId, 'diff', 'leak');
  t.is(fs.readFileSync(migrated, 'utf8'), SECRET);
  t.not(fs.statSync(migrated).ino, fs.statSync(f.shadow).ino, 'the target shares no inode with the file outside');
});

// ---- the link fast path: the source's inodes are the target's ---------------------------

interface InodeFacts { ino: bigint; mode: bigint; uid: bigint; gid: bigint; size: bigint; mtimeNs: bigint; atimeNs: bigint; xattrs: string }

function inodeFacts(p: string): InodeFacts {
  const st = fs.lstatSync(p, { bigint: true });
  const xattrs = sys.llistxattr(p).sort().map((n) => `${n}=${sys.lgetxattr(p, n)?.toString('hex')}`).join(',');
  return { ino: st.ino, mode: st.mode, uid: st.uid, gid: st.gid, size: st.size, mtimeNs: st.mtimeNs, atimeNs: st.atimeNs, xattrs };
}

asRoot({ serial: true })('aufs → overlay2 by links: setuid, odd modes, capabilities, xattrs and ns times of the shared inodes kept, never chowned, chmodded or touched', async (t) => {
  const f = await fixture(t, 'aufs');
  const diffIds = async (driver: string) => new Map([...(await openStore(f.root, { driver })).layers.values()].map((l) => [l.key, l.diffId]));
  const before0 = await diffIds('aufs');
  const suid = path.join(filesOf(f, f.base), 'bin', 'suid');
  const passwd = path.join(filesOf(f, f.base), 'etc', 'passwd');
  // on-disk metadata the tar does not carry: only the inode's, which the links share
  sys.lsetxattr(suid, 'security.capability', capabilityV2(1 << 13, true));
  sys.lsetxattr(suid, 'trusted.strata', Buffer.from('t'));
  sys.lsetxattr(passwd, 'user.strata', Buffer.from('u'));
  fs.chmodSync(suid, 0o6751);
  fs.chmodSync(passwd, 0o400);
  sys.lutimensNs(passwd, 1_700_000_000_123_456_789n, 1_600_000_000_987_654_321n);
  const before = { suid: inodeFacts(suid), passwd: inodeFacts(passwd) };
  t.regex(before.suid.xattrs, /security\.capability/);
  t.is(await migrate(f.root), null);
  t.deepEqual({ suid: inodeFacts(suid), passwd: inodeFacts(passwd) }, before, 'the source inodes are as they were (a chown would drop setuid and the capability)');
  const target = (p: string) => path.join(f.root, 'overlay2', f.base.cacheId, 'diff', path.relative(filesOf(f, f.base), p));
  t.deepEqual(inodeFacts(target(suid)), before.suid, 'the target name is the same inode');
  t.deepEqual(inodeFacts(target(passwd)), before.passwd);
  const source = sourceSnapshot(f.root, 'aufs', { linked: true }); // reads contents: after the atimes are compared
  t.deepEqual(await verifyProblems(f.root, 'overlay2'), []);
  t.deepEqual(sourceSnapshot(f.root, 'aufs', { linked: true }), source, 'verifying the target wrote nothing in the source');
  t.deepEqual(await diffIds('overlay2'), before0);
});

asRoot({ serial: true })('aufs diff dir with a symlink to a dir outside that holds aufs markers: the conversion never follows it', async (t) => {
  const f = await fixture(t, 'aufs');
  fs.writeFileSync(path.join(f.victim, '.wh.keep'), '');
  fs.writeFileSync(path.join(f.victim, '.wh..wh..opq'), '');
  fs.symlinkSync(f.victim, path.join(filesOf(f, f.top), 'esc'));
  const outside = f.outside();
  t.is(await migrate(f.root), null);
  t.deepEqual(f.outside(), outside, 'the markers outside were neither converted nor removed');
  t.deepEqual(sys.llistxattr(f.victim).filter((n) => n.includes('overlay')), [], 'no opaque xattr set outside');
  t.is(fs.readlinkSync(path.join(f.root, 'overlay2', f.top.cacheId, 'diff', 'esc')), f.victim, 'the symlink moved as a symlink');
});

const AUFS_WHITEOUTS: [string, string][] = [['.wh...', 'a whiteout of ..'], ['.wh..', 'a whiteout of .'], ['.wh.', 'a whiteout of nothing'], ['.wh.motd', 'a whiteout beside the file it hides']];

for (const [name, what] of AUFS_WHITEOUTS) {
  asRoot({ serial: true })(`aufs diff dir with ${what} (${name}): the link path refuses it naming the entry`, async (t) => {
    const f = await fixture(t, 'aufs');
    fs.writeFileSync(path.join(filesOf(f, f.top), 'etc', name), '');
    await expectRefusal(t, f, path.join(f.top.cacheId, 'etc', name));
  });
}
