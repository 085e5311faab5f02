// applyLayer: moby UnpackLayer semantics in the three on-disk whiteout forms.
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import * as sys from '../sys/syscalls.ts';
import { applyLayer, ApplyError } from '../archive/apply.ts';
import { treeDigest, treeManifest, manifestDiff } from '../archive/digest.ts';
import { asRoot } from './helpers/require.ts';
import { T0, chunked, fixChecksum, header, packTar, rawTar, tempDir, type Entry } from './helpers/tar.ts';

const t0 = T0.getTime() / 1000;

const base: Entry[] = [
  { name: 'a/', type: 'directory' },
  { name: 'a/old1', content: 'old one' },
  { name: 'a/sub/', type: 'directory' },
  { name: 'a/sub/old2', content: 'old two' },
  { name: 'x', content: 'doomed' },
  { name: 'keep', content: 'stays' },
];
const child: Entry[] = [
  { name: '.wh.x', uid: 7, gid: 8 },
  { name: 'a/', type: 'directory', mode: 0o750 },
  { name: 'a/.wh..wh..opq' },
  { name: 'a/new', content: 'fresh' },
];

async function apply(entries: Entry[] | Buffer, dir: string, whiteouts: 'none' | 'aufs' | 'overlay' | 'overlay-userxattr') {
  const buf = Buffer.isBuffer(entries) ? entries : await packTar(entries);
  return applyLayer(chunked(buf), dir, { whiteouts });
}

asRoot()('flat apply: .wh. removes, opaque empties the dir of entries not from this tar, no markers kept', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  await apply(base, dir, 'none');
  await apply(child, dir, 'none');
  t.false(fs.existsSync(path.join(dir, 'x')));
  t.false(fs.existsSync(path.join(dir, '.wh.x')));
  t.deepEqual(fs.readdirSync(path.join(dir, 'a')).sort(), ['new']);
  t.is(fs.readFileSync(path.join(dir, 'keep'), 'utf8'), 'stays');
  t.is(fs.statSync(path.join(dir, 'a')).mode & 0o7777, 0o750);
});

asRoot()('aufs form keeps whiteout and opaque markers as files', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  await apply(child, dir, 'aufs');
  const wh = fs.lstatSync(path.join(dir, '.wh.x'));
  t.true(wh.isFile());
  t.is(wh.size, 0);
  t.deepEqual([wh.uid, wh.gid], [7, 8]);
  t.true(fs.lstatSync(path.join(dir, 'a/.wh..wh..opq')).isFile());
  t.false(fs.existsSync(path.join(dir, 'x')));
  // applying the same layer again replaces the markers instead of failing on them
  await apply(child, dir, 'aufs');
  t.true(fs.lstatSync(path.join(dir, '.wh.x')).isFile());
  t.true(fs.lstatSync(path.join(dir, 'a/.wh..wh..opq')).isFile());
});

asRoot()('overlay form: char 0/0 whiteout owned as in the header, opaque xattr', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  await apply(child, dir, 'overlay');
  const wh = fs.lstatSync(path.join(dir, 'x'));
  t.true(wh.isCharacterDevice());
  t.is(wh.rdev, 0);
  t.deepEqual([wh.uid, wh.gid], [7, 8]);
  t.false(fs.existsSync(path.join(dir, '.wh.x')));
  t.is(sys.lgetxattr(path.join(dir, 'a'), 'trusted.overlay.opaque')?.toString(), 'y');
  t.false(fs.existsSync(path.join(dir, 'a/.wh..wh..opq')));
});

asRoot()('overlay-userxattr form (rootless): user.overlay.opaque, never trusted.*, and the export reads it back as .wh..wh..opq', async (t) => {
  const { exportDir } = await import('../archive/export.ts');
  const { collect, listTar } = await import('./helpers/tar.ts');
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  await apply(child, dir, 'overlay-userxattr');
  t.true(fs.lstatSync(path.join(dir, 'x')).isCharacterDevice());
  t.is(sys.lgetxattr(path.join(dir, 'a'), 'user.overlay.opaque')?.toString(), 'y');
  t.is(sys.lgetxattr(path.join(dir, 'a'), 'trusted.overlay.opaque'), null);
  const names = async (fmt: 'overlay' | 'overlay-userxattr') => (await listTar(await collect(exportDir(dir, { whiteouts: fmt })))).map((h) => h.name);
  t.deepEqual(await names('overlay-userxattr'), ['a/', 'a/.wh..wh..opq', 'a/new', '.wh.x'], 'both markers come back in tar form');
  // read in the host form, the same dir is not opaque (the xattr namespaces do not mix)
  t.deepEqual(await names('overlay'), ['a/', 'a/new', '.wh.x']);
});

asRoot({ serial: true })('overlay-form layers mounted by the kernel equal the flat apply', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const lower = path.join(dir, 'lower');
  const upper = path.join(dir, 'upper');
  const work = path.join(dir, 'work');
  const merged = path.join(dir, 'merged');
  const flat = path.join(dir, 'flat');
  for (const d of [lower, upper, work, merged, flat]) fs.mkdirSync(d);
  await apply(base, lower, 'overlay');
  await apply(child, upper, 'overlay');
  await apply(base, flat, 'none');
  await apply(child, flat, 'none');
  sys.mount('overlay', merged, 'overlay', 0, `lowerdir=${lower},upperdir=${upper},workdir=${work}`);
  try {
    const a = await treeManifest(merged, { dirMtimes: false, rootMetadata: false });
    const b = await treeManifest(flat, { dirMtimes: false, rootMetadata: false });
    t.deepEqual(a, b, manifestDiff(a, b));
  } finally {
    sys.umount2(merged, sys.MNT_DETACH);
  }
});

asRoot()('existing entries: replaced unless both are directories, which merge', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  await apply([
    { name: 'd2f/', type: 'directory' }, { name: 'd2f/inner', content: 'i' },
    { name: 'f2d', content: 'file' },
    { name: 'merge/', type: 'directory', mode: 0o700 }, { name: 'merge/kept', content: 'k' },
    { name: 'l2f', type: 'symlink', linkname: 'merge' },
  ], dir, 'none');
  await apply([
    { name: 'd2f', content: 'now a file' },
    { name: 'f2d/', type: 'directory' }, { name: 'f2d/x', content: 'x' },
    { name: 'merge/', type: 'directory', mode: 0o711, uid: 3 },
    { name: 'l2f', content: 'replaced link' },
  ], dir, 'none');
  t.is(fs.readFileSync(path.join(dir, 'd2f'), 'utf8'), 'now a file');
  t.is(fs.readFileSync(path.join(dir, 'f2d/x'), 'utf8'), 'x');
  t.is(fs.readFileSync(path.join(dir, 'merge/kept'), 'utf8'), 'k');
  const m = fs.statSync(path.join(dir, 'merge'));
  t.is(m.mode & 0o7777, 0o711);
  t.is(m.uid, 3);
  t.true(fs.lstatSync(path.join(dir, 'l2f')).isFile());
  t.true(fs.existsSync(path.join(dir, 'merge/kept')), 'replacing the symlink must not touch its target');
});

test('times as moby sets them: before the epoch or past 2262 the epoch for all but symlinks (Chtimes), a symlink\'s exactly; the atime never before the mtime; a dir\'s atime the tar\'s; never "now"', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  await apply([
    { name: 'old/', type: 'directory', pax: { mtime: '-1' } },
    { name: 'old/f', content: 'x', pax: { mtime: '-1' } },
    { name: 'old/frac', content: 'y', pax: { mtime: '-1.5' } },
    { name: 'old/atime', content: 'z', pax: { mtime: '5', atime: '-7' } },
    { name: 'old/p', type: 'fifo', pax: { mtime: '-86400' } },
    { name: 'old/s', type: 'symlink', linkname: 'f', pax: { mtime: '-1' } },
    { name: 'old/far', content: 'w', pax: { mtime: '9300000000' } },
    { name: 'a/', type: 'directory', pax: { mtime: '100', atime: '50' } },
    { name: 'a/later', content: 'v', pax: { mtime: '100', atime: '200.25' } },
    { name: 'a/earlier', content: 'u', pax: { mtime: '100', atime: '50' } },
    { name: 'a/none', content: 't', mtime: new Date(100_000) },
    { name: 'a/s', type: 'symlink', linkname: 'none', pax: { mtime: '100', atime: '50' } },
    { name: 'plain/', type: 'directory', mtime: new Date(100_000) },
  ], dir, 'none');
  const st = (p: string) => fs.lstatSync(path.join(dir, p), { bigint: true });
  for (const p of ['old', 'old/f', 'old/frac', 'old/p', 'old/far']) t.is(st(p).mtimeNs, 0n, p);
  t.is(st('old/atime').mtimeNs, 5_000_000_000n);
  t.is(st('old/atime').atimeNs, 5_000_000_000n, 'an atime before the mtime is the mtime');
  t.is(st('old/s').mtimeNs, -1_000_000_000n, 'a symlink keeps its time');
  t.is(st('a/later').atimeNs, 200_250_000_000n, 'a later atime is kept to the ns');
  t.is(st('a/earlier').atimeNs, 100_000_000_000n);
  t.is(st('a/none').atimeNs, 100_000_000_000n, 'no atime in the tar: the mtime');
  t.is(st('a/s').atimeNs, 100_000_000_000n, 'a symlink\'s atime is raised to its mtime too');
  t.is(st('a').atimeNs, 50_000_000_000n, 'a directory\'s atime is set last from its header, unraised');
  t.is(st('a').mtimeNs, 100_000_000_000n);
  t.is(st('plain').atimeNs, 0n, 'a directory without an atime in the tar: the epoch (moby\'s Chtimes of the zero time)');
});

asRoot()('metadata: special bits, numeric owners, ns mtimes, dir times last, devices, fifos, xattrs, links', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  // a v2 file capability blob (cap_net_raw+ep)
  const cap = Buffer.from('0000000201200000000000000000000000000000', 'hex');
  const size = await apply([
    { name: 'd/', type: 'directory', mode: 0o1777, uid: 1000, gid: 1001, mtime: new Date('2001-01-01T00:00:00Z') },
    { name: 'd/suid', content: 'x', mode: 0o4755, uid: 1000, gid: 1000, pax: { 'SCHILY.xattr.security.capability': cap.toString('latin1') } },
    { name: 'd/sgid', content: 'yy', mode: 0o2711, gid: 50 },
    { name: 'd/ns', content: 'z', pax: { mtime: '1234567890.123456789' } },
    { name: 'd/link', type: 'link', linkname: 'd/sgid', mode: 0o2711, gid: 50 }, // a real tar repeats its target's metadata
    { name: 'd/sym', type: 'symlink', linkname: '../d/ns', mtime: new Date('2003-03-03T03:03:03Z') },
    { name: 'd/null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 },
    { name: 'd/loop', type: 'block-device', devmajor: 7, devminor: 300, mode: 0o660 },
    { name: 'd/fifo', type: 'fifo', mode: 0o600 },
    { name: 'd/xattr', content: '', pax: { 'SCHILY.xattr.user.color': 'blue', 'SCHILY.xattr.trusted.k': 'v' } },
  ], dir, 'none');
  t.is(size, 1 + 2 + 1, 'moby size: the sum of the entries\' size fields');
  const st = (p: string) => fs.lstatSync(path.join(dir, p), { bigint: true });
  t.is(Number(st('d').mode) & 0o7777, 0o1777);
  t.deepEqual([st('d').uid, st('d').gid], [1000n, 1001n]);
  t.is(st('d').mtimeNs, BigInt(Date.parse('2001-01-01T00:00:00Z')) * 1_000_000n, 'dir mtime survives its children');
  t.is(Number(st('d/suid').mode) & 0o7777, 0o4755, 'setuid kept after chown');
  t.deepEqual(sys.lgetxattr(path.join(dir, 'd/suid'), 'security.capability'), cap, 'capability set after chown');
  t.is(Number(st('d/sgid').mode) & 0o7777, 0o2711);
  t.is(st('d/ns').mtimeNs, 1234567890123456789n);
  t.is(st('d/link').ino, st('d/sgid').ino);
  t.is(fs.readlinkSync(path.join(dir, 'd/sym')), '../d/ns');
  t.is(st('d/sym').mtimeNs, BigInt(Date.parse('2003-03-03T03:03:03Z')) * 1_000_000n, 'symlink mtime (lutimes)');
  t.true(fs.lstatSync(path.join(dir, 'd/null')).isCharacterDevice());
  t.deepEqual([sys.major(Number(st('d/null').rdev)), sys.minor(Number(st('d/null').rdev))], [1, 3]);
  t.deepEqual([sys.major(Number(st('d/loop').rdev)), sys.minor(Number(st('d/loop').rdev))], [7, 300]);
  t.true(fs.lstatSync(path.join(dir, 'd/fifo')).isFIFO());
  t.is(sys.lgetxattr(path.join(dir, 'd/xattr'), 'user.color')?.toString(), 'blue');
  t.is(sys.lgetxattr(path.join(dir, 'd/xattr'), 'trusted.k')?.toString(), 'v');
});

asRoot()('long names: PAX (tar-stream) and GNU (GNU tar --format=gnu), and non-UTF-8 names', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const long = 'p'.repeat(60) + '/' + 'q'.repeat(80) + '/' + 'r'.repeat(120);
  await apply([{ name: long, content: 'deep' }, { name: 's', type: 'symlink', linkname: 'l'.repeat(150) }], path.join(dir), 'none');
  t.is(fs.readFileSync(path.join(dir, long), 'utf8'), 'deep');
  t.is(fs.readlinkSync(path.join(dir, 's')), 'l'.repeat(150));

  const src = path.join(dir, 'gnu-src');
  const deep = path.join(src, 'g'.repeat(90), 'h'.repeat(90));
  fs.mkdirSync(deep, { recursive: true });
  fs.writeFileSync(path.join(deep, 'f'.repeat(100)), 'gnu');
  const gnuTar = execFileSync('tar', ['--format=gnu', '-C', src, '-cf', '-', '.']);
  const out = path.join(dir, 'gnu-out');
  fs.mkdirSync(out);
  await apply(gnuTar, out, 'none');
  t.is(fs.readFileSync(path.join(out, 'g'.repeat(90), 'h'.repeat(90), 'f'.repeat(100)), 'utf8'), 'gnu');

  const bad = Buffer.from([0x6e, 0xff, 0xfe, 0x2e, 0x74, 0x78, 0x74]).toString('latin1'); // "n\xff\xfe.txt"
  const raw = rawTar([{ ...header(bad, { size: 3 }), body: Buffer.from('raw') }]);
  const out2 = path.join(dir, 'raw-out');
  fs.mkdirSync(out2);
  await apply(raw, out2, 'none');
  const names = fs.readdirSync(out2, { encoding: 'buffer' });
  t.deepEqual(names.map((n) => n.toString('latin1')), [bad]);
});

asRoot()('user.* xattrs on a symlink, FIFO or device entry (Linux refuses them there: EPERM) are skipped as moby skips them; the rest of its xattrs are set', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const both = { 'SCHILY.xattr.user.k': 'v', 'SCHILY.xattr.trusted.t': 'w' };
  await apply([
    { name: 's', type: 'symlink', linkname: 'nowhere', uid: 3, pax: both },
    { name: 'q', type: 'fifo', mode: 0o600, uid: 4, pax: both },
    { name: 'c', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o640, uid: 5, pax: both },
  ], dir, 'none');
  for (const [name, uid] of [['s', 3], ['q', 4], ['c', 5]] as const) {
    const p = path.join(dir, name);
    t.is(fs.lstatSync(p).uid, uid, name);
    t.is(sys.lgetxattr(p, 'user.k'), null, name);
    t.is(sys.lgetxattr(p, 'trusted.t')?.toString(), 'w', name);
  }
  // a regular file still takes its user.* xattrs
  await apply([{ name: 'f', content: 'x', pax: both }], dir, 'none');
  t.is(sys.lgetxattr(path.join(dir, 'f'), 'user.k')?.toString(), 'v');
});

asRoot()('an EPERM for any other xattr of a symlink, FIFO or device entry still fails the layer, naming the entry (here: trusted.* without CAP_SYS_ADMIN)', (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const apply = new URL('../archive/apply.ts', import.meta.url).href;
  const tarHelpers = new URL('./helpers/tar.ts', import.meta.url).href;
  for (const type of ['symlink', 'fifo'] as const) {
    const root = path.join(dir, type);
    fs.mkdirSync(root);
    const script = `import { applyLayer } from ${JSON.stringify(apply)}; import { packTar, chunked } from ${JSON.stringify(tarHelpers)};
      await applyLayer(chunked(await packTar([{ name: 'n', type: ${JSON.stringify(type)}, linkname: 'x', pax: { 'SCHILY.xattr.trusted.t': 'w' } }])), ${JSON.stringify(root)}, { whiteouts: 'none' });`;
    const r = spawnSync('setpriv', ['--inh-caps=-sys_admin', '--bounding-set=-sys_admin', process.execPath, '--import=tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
    t.not(r.status, 0, `${type}: ${r.stderr}`);
    t.regex(r.stderr, /tar entry "n": EPERM lsetxattr/, type);
  }
});

test('names are cleaned as moby cleans them (filepath.Clean): repeated and trailing slashes, "./" and "." parts', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  await apply(rawTar([
    header('b//', { type: 'dir', mode: 0o750 }),
    { ...header('b//f', { size: 2 }), body: Buffer.from('hi') },
    header('./c/./d///', { type: 'dir' }),
    header('c//d//l', { type: 'link', linkname: 'b//f' }),
    header('p', { type: 'dir' }),
    header('q', { type: 'link', linkname: 'b/f//' }),
  ]), dir, 'none');
  t.is(fs.statSync(path.join(dir, 'b')).mode & 0o7777, 0o750);
  t.is(fs.readFileSync(path.join(dir, 'c/d/l'), 'utf8'), 'hi');
  t.is(fs.statSync(path.join(dir, 'q')).ino, fs.statSync(path.join(dir, 'b/f')).ino);
  t.deepEqual(fs.readdirSync(dir).sort(), ['b', 'c', 'p', 'q']);
});

test('a trailing slash makes a directory only of a pre-POSIX entry (typeflag NUL), as in Go: a \'0\' entry named x/ is the file x, its body never read as headers', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  // the body of x/ is a whole tar entry of its own: a reader taking x/ for a dir would extract `hidden`
  const inner = rawTar([{ ...header('hidden', { size: 4 }), body: Buffer.from('evil') }]).subarray(0, 1024);
  const tar = rawTar([
    { ...header('x/', { size: inner.length }), body: inner },
    header('old/'), // typeflag NUL below
    header('after'),
  ]);
  const at = 512 + 1024; // the second header
  tar[at + 156] = 0;
  fixChecksum(tar, at);
  await apply(tar, dir, 'none');
  t.true(fs.lstatSync(path.join(dir, 'x')).isFile());
  t.deepEqual(fs.readFileSync(path.join(dir, 'x')), inner);
  t.true(fs.lstatSync(path.join(dir, 'old')).isDirectory());
  t.deepEqual(fs.readdirSync(dir).sort(), ['after', 'old', 'x']);
});

asRoot()('.wh..wh.plnk hardlinks become copies, other aufs metadata is skipped', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  await apply([
    { name: '.wh..wh.plnk/', type: 'directory' },
    { name: '.wh..wh.plnk/1234.5678', content: 'shared', mode: 0o640, uid: 9 },
    { name: '.wh..wh.aufs', content: '' },
    { name: '.wh..wh.orph/', type: 'directory' },
    { name: 'one', type: 'link', linkname: '.wh..wh.plnk/1234.5678' },
  ], dir, 'aufs');
  t.deepEqual(fs.readdirSync(dir), ['one']);
  t.is(fs.readFileSync(path.join(dir, 'one'), 'utf8'), 'shared');
  t.is(fs.statSync(path.join(dir, 'one')).uid, 9);
});

test('corrupt and truncated archives are errors naming the problem', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const good = await packTar([{ name: 'f', content: 'x'.repeat(2000) }]);
  const corrupt = Buffer.from(good);
  corrupt[10] ^= 0xff;
  await t.throwsAsync(apply(corrupt, dir, 'none'), { message: /checksum/ });
  const truncated = good.subarray(0, 1024);
  const e = await t.throwsAsync(apply(truncated, dir, 'none'), { message: /truncated/ });
  t.true(e instanceof ApplyError);
  t.regex(e!.message, /"f"/, 'the message names the entry being written');
});

asRoot()('apply → export → apply is identity in every format (tree digests)', async (t) => {
  const { exportDir } = await import('../archive/export.ts');
  const { collect } = await import('./helpers/tar.ts');
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const layer: Entry[] = [
    ...base,
    { name: 'a/sub/cap', content: 'c', mode: 0o4711, uid: 5, pax: { 'SCHILY.xattr.security.capability': Buffer.from('0000000201200000000000000000000000000000', 'hex').toString('latin1') } },
    { name: 'a/hard', type: 'link', linkname: 'a/old1' },
    { name: 'ns', content: 'n', pax: { mtime: '1700000000.000000001' } },
    { name: 'dev', type: 'character-device', devmajor: 4, devminor: 64 },
    ...child,
  ];
  const tar = await packTar(layer);
  for (const fmt of ['none', 'aufs', 'overlay', 'overlay-userxattr'] as const) {
    const one = path.join(dir, fmt + '-1');
    const two = path.join(dir, fmt + '-2');
    fs.mkdirSync(one);
    fs.mkdirSync(two);
    await apply(tar, one, fmt);
    const exported = await collect(exportDir(one, { whiteouts: fmt }));
    await apply(exported, two, fmt);
    const a = await treeManifest(one, { rootMetadata: false });
    const b = await treeManifest(two, { rootMetadata: false });
    t.deepEqual(a, b, `${fmt}: ${manifestDiff(a, b)}`);
    t.is(await treeDigest(one, { rootMetadata: false }), await treeDigest(two, { rootMetadata: false }));
    // and the export itself is reproducible
    t.deepEqual(exported, await collect(exportDir(two, { whiteouts: fmt })), `${fmt}: export is not deterministic`);
  }
  void t0;
});

// A layer may hold paths longer than PATH_MAX (apply makes them one component
// at a time, as moby does); removing such a tree — a whiteout, an opaque dir,
// an entry replacing it — must not fail where moby's RemoveAll does not.
const DEEP = Array.from({ length: 20 }, (_, i) => String(i).padStart(250, 'd')).join('/'); // 5019 bytes > PATH_MAX
for (const [title, last] of [
  ['a whiteout', header('.wh.top')],
  ['an opaque parent', header('.wh..wh..opq')],
  ['a file replacing it', { ...header('top', { size: 1 }), body: Buffer.from('f') }],
] as const) {
  for (const format of ['none', 'aufs', 'overlay'] as const) {
    asRoot()(`a tree deeper than PATH_MAX is removed by ${title} (${format})`, async (t) => {
      const { dir, cleanup } = tempDir();
      t.teardown(cleanup);
      await applyLayer(rawTar([header(`top/${DEEP}/`, { type: 'dir', mode: 0o755 }), header(`top/${DEEP}/f`), header('keep')]), dir, { whiteouts: format });
      await applyLayer(rawTar([last]), dir, { whiteouts: format });
      t.false(fs.readdirSync(dir).includes('top') && fs.lstatSync(path.join(dir, 'top')).isDirectory());
    });
  }
}
