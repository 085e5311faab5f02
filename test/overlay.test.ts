// overlay (v1) specifics beyond the conformance suite: Docker's exact layout
// for both kinds of layer, the child-of-a-container-layer upper copy, the
// hardlink-copy applyDiff (and its naive fallbacks), metadata, status,
// options, and mounts shared by two processes.
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { treeManifest } from '../archive/digest.ts';
import { InvalidParameterError, QuotaNotSupportedError, type Driver } from '../drivers/driver.ts';
import '../drivers/all.ts'; // registers the drivers (a driver module alone no longer does)
import { init } from '../drivers/overlay/overlay.ts';
import { layerMetadata, mountData } from '../drivers/overlay/layout.ts';
import { getDriver } from '../drivers/registry.ts';
import { isMountPoint, mountAt } from '../sys/mountinfo.ts';
import * as sys from '../sys/syscalls.ts';
import { asRoot } from './helpers/require.ts';
import { packTar, tempDir, type Entry } from './helpers/tar.ts';
import { LineChild, repo } from './helpers/line-child.ts';


async function scratch(t: { teardown: (fn: () => Promise<void> | void) => void }): Promise<{ home: string; d: Driver }> {
  const { dir, cleanup } = tempDir('strata-overlay-');
  const home = path.join(dir, 'overlay');
  const d = await init(home, []);
  t.teardown(async () => {
    await d.cleanup();
    cleanup();
  });
  return { home, d };
}

const mode = (p: string) => fs.lstatSync(p).mode & 0o7777;
const ls = (p: string) => fs.readdirSync(p).sort();
/** Σ tar header sizes, as moby's UnpackLayer counts them (only regular files carry a size). */
const headerSizes = (entries: Entry[]) => entries.reduce((n, e) => n + ((e.type ?? 'file') === 'file' ? Buffer.byteLength(e.content ?? '') : 0), 0);

test('mount data and metadata are moby\'s, planned without root', (t) => {
  t.is(mountData('/var/lib/docker/overlay', 'ctr', 'img', 'index=off,'),
    'index=off,lowerdir=/var/lib/docker/overlay/img/root,upperdir=/var/lib/docker/overlay/ctr/upper,workdir=/var/lib/docker/overlay/ctr/work');
  t.is(mountData('/h', 'c', 'i'), 'lowerdir=/h/i/root,upperdir=/h/c/upper,workdir=/h/c/work');
  t.throws(() => mountData('/a,b', 'c', 'i'), { message: /holds ',' or ':'/ });
  t.throws(() => mountData('/a:b', 'c', 'i'), { message: /holds ',' or ':'/ });
  t.deepEqual(layerMetadata('/h', 'img', null), { RootDir: '/h/img/root' });
  t.deepEqual(layerMetadata('/h', 'ctr', 'img'), {
    LowerDir: '/h/img/root', UpperDir: '/h/ctr/upper', WorkDir: '/h/ctr/work', MergedDir: '/h/ctr/merged',
  });
});

test('options: none accepted (`overlay: unknown option <k>`), and a refused init leaves no home behind', async (t) => {
  const { dir, cleanup } = tempDir('strata-overlay-');
  t.teardown(cleanup);
  const home = path.join(dir, 'overlay');
  await t.throwsAsync(init(home, ['overlay.size=10G']), { instanceOf: InvalidParameterError, message: 'overlay: unknown option overlay.size' });
  await t.throwsAsync(init(home, ['Foo = bar']), { message: 'overlay: unknown option foo' });
  await t.throwsAsync(init(home, ['size']), { message: 'unable to parse storage-opt: size' });
  t.false(fs.existsSync(home));
});

asRoot({ serial: true })('layout: image layer root/ 0755; its child upper/ (mode of that root), work/ 0700, lower-id 0600; merged/ only while mounted', async (t) => {
  const { home, d } = await scratch(t);
  await d.create('img', null);
  t.deepEqual(ls(path.join(home, 'img')), ['root']);
  t.is(mode(path.join(home, 'img')), 0o710);
  t.is(mode(path.join(home, 'img/root')), 0o755);
  t.is(fs.statSync(path.join(home, 'img/root')).uid, 0);
  t.is(await d.get('img'), path.join(home, 'img/root'), 'an image layer is its root/, no mount');
  await d.put('img');

  fs.chmodSync(path.join(home, 'img/root'), 0o750);
  await d.createReadWrite('ctr', 'img');
  t.deepEqual(ls(path.join(home, 'ctr')), ['lower-id', 'upper', 'work']);
  t.is(mode(path.join(home, 'ctr/upper')), 0o750, 'upper/ takes the mode of the parent\'s root/');
  t.is(mode(path.join(home, 'ctr/work')), 0o700);
  t.is(mode(path.join(home, 'ctr/lower-id')), 0o600);
  t.is(fs.readFileSync(path.join(home, 'ctr/lower-id'), 'utf8'), 'img', 'the parent id, no newline');

  const merged = await d.get('ctr');
  t.is(merged, path.join(home, 'ctr/merged'));
  t.true(isMountPoint(merged));
  const mi = mountAt(merged)!.superOptions.join(',');
  t.regex(mi, new RegExp(`lowerdir=${home}/img/root,upperdir=${home}/ctr/upper,workdir=${home}/ctr/work`));
  fs.writeFileSync(path.join(merged, 'new'), 'x');
  await d.put('ctr');
  t.false(isMountPoint(merged));
  t.false(fs.existsSync(merged), 'put rmdirs merged/');
  t.deepEqual(ls(path.join(home, 'ctr/upper')), ['new']);
  t.deepEqual(ls(path.join(home, 'img/root')), [], 'nothing reached the image root');
  t.deepEqual(d.layers?.(), [{ id: 'ctr' }, { id: 'img' }]);

  await t.throwsAsync(d.create('img', null), { message: 'overlay: layer img already exists' });
  t.deepEqual(ls(path.join(home, 'img')), ['root'], 'a refused create leaves the existing layer alone');
  await t.throwsAsync(d.create('orphan', 'missing'), { message: /layer missing does not exist/ });
  t.false(d.exists('orphan'));
});

asRoot({ serial: true })('a child of a container layer copies its lower-id and its upper/: whiteouts, opaque dirs, xattrs', async (t) => {
  const { home, d } = await scratch(t);
  const tar: Entry[] = [
    { name: 'etc/', type: 'directory' }, { name: 'etc/hosts', content: 'lower hosts' },
    { name: 'opt/', type: 'directory' }, { name: 'opt/old', content: 'old' }, { name: 'gone', content: 'gone' },
  ];
  await d.create('img', null);
  await d.applyDiff('img', null, await packTar(tar));
  await d.createReadWrite('init', 'img');
  const m = await d.get('init');
  try {
    fs.rmSync(path.join(m, 'gone')); // a whiteout device in upper/
    fs.rmSync(path.join(m, 'opt'), { recursive: true });
    fs.mkdirSync(path.join(m, 'opt')); // an opaque directory
    fs.writeFileSync(path.join(m, 'opt/new'), 'new');
    fs.writeFileSync(path.join(m, 'etc/hosts'), 'init hosts'); // a copy-up
    sys.lsetxattr(path.join(m, 'etc/hosts'), 'user.origin', Buffer.from('init'));
    fs.chownSync(path.join(m, 'etc/hosts'), 7, 8);
  } finally {
    await d.put('init');
  }
  const up = path.join(home, 'init/upper');
  t.is(sys.lgetxattr(path.join(up, 'opt'), 'trusted.overlay.opaque')?.toString(), 'y', 'the kernel marked opt/ opaque');

  await d.createReadWrite('ctr', 'init');
  t.is(fs.readFileSync(path.join(home, 'ctr/lower-id'), 'utf8'), 'img', 'lower-id is the image root below, not the parent');
  const cu = path.join(home, 'ctr/upper');
  const wh = fs.lstatSync(path.join(cu, 'gone'));
  t.true(wh.isCharacterDevice());
  t.is(wh.rdev, 0, 'a 0/0 whiteout device');
  t.is(sys.lgetxattr(path.join(cu, 'opt'), 'trusted.overlay.opaque')?.toString(), 'y', 'opaque marker copied');
  t.is(sys.lgetxattr(path.join(cu, 'etc/hosts'), 'user.origin')?.toString(), 'init');
  t.is(fs.statSync(path.join(cu, 'etc/hosts')).uid, 7);
  t.is(sys.lgetxattr(cu, 'trusted.overlay.uuid'), null, 'the parent overlay instance\'s uuid is not carried over');
  t.not(fs.statSync(path.join(cu, 'etc/hosts')).ino, fs.statSync(path.join(up, 'etc/hosts')).ino, 'a content copy, not links');
  t.is(mode(cu), mode(up));

  // the container sees exactly what its init layer sees, and writes only to itself
  const [a, b] = [await d.get('init'), await d.get('ctr')];
  try {
    t.deepEqual(await treeManifest(b, { dirMtimes: false, rootMetadata: false }), await treeManifest(a, { dirMtimes: false, rootMetadata: false }));
    t.deepEqual(ls(path.join(b, 'opt')), ['new']);
    t.false(fs.existsSync(path.join(b, 'gone')));
    fs.writeFileSync(path.join(b, 'etc/hosts'), 'ctr hosts');
    t.is(fs.readFileSync(path.join(a, 'etc/hosts'), 'utf8'), 'init hosts');
  } finally {
    await d.put('ctr');
    await d.put('init');
  }
  t.deepEqual(d.metadata('ctr'), {
    LowerDir: path.join(home, 'img/root'), UpperDir: cu, WorkDir: path.join(home, 'ctr/work'), MergedDir: path.join(home, 'ctr/merged'),
  });
  t.deepEqual(d.metadata('img'), { RootDir: path.join(home, 'img/root') });
});

asRoot({ serial: true })('applyDiff over an image layer: a hardlink copy of the parent\'s root/ plus the tar; the parent never changes', async (t) => {
  const { home, d } = await scratch(t);
  const base: Entry[] = [
    { name: 'bin/', type: 'directory' }, { name: 'bin/sh', content: 'shell', mode: 0o755 },
    { name: 'etc/', type: 'directory' }, { name: 'etc/passwd', content: 'root:x:0:0', mode: 0o644 },
    { name: 'etc/motd', content: 'hello', mode: 0o644 }, { name: 'etc/old', content: 'old' },
    { name: 'lib', type: 'symlink', linkname: 'bin' }, { name: 'fifo', type: 'fifo' },
  ];
  await d.create('base', null);
  const baseSize = await d.applyDiff('base', null, await packTar(base));
  t.is(baseSize, headerSizes(base), 'base layer: the naive apply, Σ tar header sizes');
  t.deepEqual(ls(path.join(home, 'base')), ['root'], 'a base layer stays root/ only');
  const parentBefore = await treeManifest(path.join(home, 'base/root'));

  await d.create('child', 'base');
  t.deepEqual(ls(path.join(home, 'child')), ['lower-id', 'upper', 'work']);
  await d.get('child'); // a mount and its merged/ are gone after the apply too
  await d.put('child');
  const layer: Entry[] = [
    { name: 'etc/', type: 'directory', mode: 0o750 },
    { name: 'etc/passwd', content: 'root:x:0:0\nnew:x:1:1', mode: 0o600, uid: 5 },
    { name: 'etc/.wh.old' }, { name: 'etc/added', content: 'added' },
    { name: 'bin/sh2', type: 'link', linkname: 'bin/sh' },
  ];
  const size = await d.applyDiff('child', 'base', await packTar(layer));
  t.is(size, headerSizes(layer), 'moby returns ApplyUncompressedLayer\'s size: Σ tar header sizes');
  t.deepEqual(ls(path.join(home, 'child')), ['root'], 'upper/, work/, merged/, lower-id and tmproot* are gone');

  const p = (l: string, f: string) => path.join(home, l, 'root', f);
  for (const f of ['bin/sh', 'etc/motd']) {
    const [a, b] = [fs.statSync(p('base', f)), fs.statSync(p('child', f))];
    t.is(b.ino, a.ino, `${f}: the parent's inode`);
    t.true(b.nlink > 1, `${f}: nlink ${b.nlink}`);
  }
  t.is(fs.statSync(p('child', 'bin/sh2')).ino, fs.statSync(p('base', 'bin/sh')).ino, 'a tar hardlink to an untouched file joins its inode');
  for (const f of ['.', 'bin', 'etc']) t.not(fs.statSync(p('child', f)).ino, fs.statSync(p('base', f)).ino, `${f}: a new directory inode`);
  for (const f of ['lib', 'fifo']) t.not(fs.lstatSync(p('child', f)).ino, fs.lstatSync(p('base', f)).ino, `${f}: recreated, as moby's copy does`);
  t.is(fs.readlinkSync(p('child', 'lib')), 'bin');
  t.is(fs.readFileSync(p('child', 'etc/passwd'), 'utf8'), 'root:x:0:0\nnew:x:1:1');
  t.is(mode(p('child', 'etc/passwd')), 0o600);
  t.is(fs.statSync(p('child', 'etc/passwd')).uid, 5);
  t.not(fs.statSync(p('child', 'etc/passwd')).ino, fs.statSync(p('base', 'etc/passwd')).ino, 'a replaced file is a new inode');
  t.is(mode(p('child', 'etc')), 0o750);
  t.false(fs.existsSync(p('child', 'etc/old')));
  t.deepEqual(await treeManifest(path.join(home, 'base/root')), parentBefore, 'the parent is byte-for-byte, mode, owner and time the same');

  t.deepEqual(d.metadata('child'), { RootDir: path.join(home, 'child/root') });
  t.is(await d.get('child'), path.join(home, 'child/root'));
  await d.put('child');
  // removing the parent only drops names: the child's files stay
  await d.remove('base');
  t.is(fs.readFileSync(p('child', 'etc/motd'), 'utf8'), 'hello');
  t.is(fs.statSync(p('child', 'etc/motd')).nlink, 1);
});

asRoot({ serial: true })('applyDiff falls back to the naive apply over an overlay-layer parent, and refuses a mounted layer for the hardlink path', async (t) => {
  const { home, d } = await scratch(t);
  await d.create('img', null);
  await d.applyDiff('img', null, await packTar([{ name: 'a', content: 'a' }, { name: 'b', content: 'b' }]));
  await d.createReadWrite('init', 'img');
  await d.create('child', 'init'); // the parent has no root/: moby's ErrApplyDiffFallback
  const layer: Entry[] = [{ name: '.wh.a' }, { name: 'c', content: 'ccc' }];
  t.is(await d.applyDiff('child', 'init', await packTar(layer)), 3);
  t.deepEqual(ls(path.join(home, 'child')), ['lower-id', 'upper', 'work'], 'still an overlay layer');
  t.deepEqual(ls(path.join(home, 'child/upper')), ['a', 'c']);
  t.true(fs.lstatSync(path.join(home, 'child/upper/a')).isCharacterDevice(), 'the delete went through the mount: a whiteout');
  t.false(fs.existsSync(path.join(home, 'child/merged')), 'the naive apply put() its mount');

  await d.create('held', 'img');
  const m = await d.get('held');
  try {
    await t.throwsAsync(d.applyDiff('held', 'img', await packTar(layer)), { message: /is mounted on .*put\(\) it first/ });
    t.true(isMountPoint(m));
    t.deepEqual(ls(path.join(home, 'held')), ['lower-id', 'merged', 'upper', 'work'], 'nothing changed, no tmproot left');
  } finally {
    await d.put('held');
  }
});

asRoot({ serial: true })('storage options are refused as moby does; status names the backing fs', async (t) => {
  const { dir, cleanup } = tempDir('strata-overlay-');
  t.teardown(cleanup);
  const d = await getDriver('overlay', dir);
  t.teardown(() => d.cleanup());
  t.is(d.name, 'overlay');
  t.is(d.home, path.join(dir, 'overlay'));
  await d.create('img', null);
  const q = await t.throwsAsync(d.createReadWrite('q', 'img', { storageOpt: { size: '10M' } }), { instanceOf: QuotaNotSupportedError });
  t.is((q as QuotaNotSupportedError).detail, '--storage-opt is not supported for overlay');
  await t.throwsAsync(d.create('o', 'img', { storageOpt: { foo: 'bar' } }), { instanceOf: InvalidParameterError, message: '--storage-opt is not supported for overlay' });
  t.false(d.exists('q'));
  t.false(d.exists('o'));
  t.deepEqual(d.status(), [['Backing Filesystem', 'extfs'], ['Supports d_type', 'true']]);
});

// A second process driving the same home: reads `get ID` / `put ID` lines, answers `ok PATH` or `error MESSAGE`.
const CHILD = `
import { createInterface } from 'node:readline';
const { init } = await import(${JSON.stringify(path.join(repo, 'drivers/overlay/overlay.ts'))});
const d = await init(process.env.OVERLAY_HOME, []);
console.log('ready');
for await (const line of createInterface({ input: process.stdin })) {
  const [cmd, id] = line.split(' ');
  try {
    if (cmd === 'get') console.log('ok ' + await d.get(id));
    else if (cmd === 'put') { await d.put(id); console.log('ok'); }
    else console.log('error unknown command ' + cmd);
  } catch (e) {
    console.log('error ' + String(e && e.message).replace(/\\n/g, ' '));
  }
}
`;

class Child extends LineChild {
  constructor(home: string) {
    super(CHILD, { OVERLAY_HOME: home });
  }
}

asRoot({ serial: true })('two processes get/put one container layer: neither unmounts it under the other', async (t) => {
  const { home, d } = await scratch(t);
  await d.create('img', null);
  await d.createReadWrite('ctr', 'img');
  const other = new Child(home);
  t.teardown(() => other.close());
  t.is(await other.line(), 'ready');

  const merged = await d.get('ctr');
  t.is(await other.send('get ctr'), merged);
  await d.put('ctr');
  t.true(isMountPoint(merged), 'still mounted: the other process holds it');
  fs.writeFileSync(path.join(merged, 'f'), 'written while the other holds it');
  await other.send('put ctr');
  t.false(isMountPoint(merged), 'the last put unmounts');
  t.false(fs.existsSync(merged));

  // the other way round: the other process mounts first and puts first
  await other.send('get ctr');
  t.is(await d.get('ctr'), merged);
  await other.send('put ctr');
  t.true(isMountPoint(merged));
  t.is(fs.readFileSync(path.join(merged, 'f'), 'utf8'), 'written while the other holds it');
  await d.put('ctr');
  t.false(isMountPoint(merged));
  t.deepEqual(ls(path.join(home, 'ctr/upper')), ['f']);
});

asRoot({ serial: true })('remove unmounts a mounted container layer; removing an unknown id is no error', async (t) => {
  const { home, d } = await scratch(t);
  await d.create('img', null);
  await d.createReadWrite('ctr', 'img');
  const merged = await d.get('ctr');
  await d.remove('ctr');
  t.false(isMountPoint(merged));
  t.false(fs.existsSync(path.join(home, 'ctr')));
  t.true(d.exists('img'));
  await d.remove('ctr');
  await d.put('ctr'); // a put after remove is a no-op, as moby's
});
