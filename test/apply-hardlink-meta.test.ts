// A hardlink entry's own header is applied to the inode it links, as moby's
// createTarFile does after os.Link: owner, xattrs, then mode and times unless
// that inode is a symlink. Real tars repeat the target's metadata on its
// hardlinks; these tars do not, so the result shows whose metadata won. An
// inode the directory held before the tar (overlay v1 builds a layer's root
// from hardlinks of its parent's files) is never changed.
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { applyLayer, applyLayerFile } from '../archive/apply.ts';
import * as sys from '../sys/syscalls.ts';
import { forceApplyWorker } from './helpers/apply-worker.ts';
import { asRoot } from './helpers/require.ts';
import { chunked, packTar, tempDir, type Entry } from './helpers/tar.ts';

const T1 = new Date('2011-01-01T00:00:00Z');
const T2 = new Date('2012-02-02T00:00:00Z');
const T3 = new Date('2013-03-03T00:00:00Z');
const ns = (d: Date) => BigInt(d.getTime()) * 1_000_000n;

const entries: Entry[] = [
  { name: 'f', content: 'data', mode: 0o644, uid: 1, gid: 2, mtime: T1 },
  { name: 'l', type: 'link', linkname: 'f', mode: 0o4750, uid: 3, gid: 4, mtime: T2, pax: { 'SCHILY.xattr.user.k': 'v' } },
  { name: 's', type: 'symlink', linkname: 'f', uid: 1, gid: 1, mtime: T1 },
  { name: 'ls', type: 'link', linkname: 's', mode: 0o600, uid: 5, gid: 6, mtime: T3 },
];

function check(t: import('ava').ExecutionContext, dir: string): void {
  const st = (p: string) => fs.lstatSync(path.join(dir, p), { bigint: true });
  t.is(st('l').ino, st('f').ino);
  t.deepEqual([Number(st('f').mode) & 0o7777, st('f').uid, st('f').gid], [0o4750, 3n, 4n], 'the link header\'s mode (setuid kept after chown) and owner');
  t.is(st('f').mtimeNs, ns(T2), 'and its time');
  t.is(sys.lgetxattr(path.join(dir, 'f'), 'user.k')?.toString(), 'v', 'and its xattr');
  t.is(st('ls').ino, st('s').ino);
  t.true(fs.lstatSync(path.join(dir, 's')).isSymbolicLink());
  t.deepEqual([st('s').uid, st('s').gid], [5n, 6n], 'a linked symlink takes the owner');
  t.is(st('s').mtimeNs, ns(T1), 'but keeps its own times (moby\'s Chtimes would follow it)');
}

asRoot()('a hardlink header\'s owner, xattrs, mode and times go to the inode it links (moby createTarFile)', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  await applyLayer(chunked(await packTar(entries)), dir, { whiteouts: 'none' });
  check(t, dir);
});

asRoot({ serial: true })('the same when the worker created the linked file, also when its end was still queued', async (t) => {
  forceApplyWorker(t);
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  // the filler puts f's body across a 1 MiB ring slot: the worker has passed f's create (and
  // would have let the link go on) but not yet its owner, mode and times, which came after
  const filler: Entry = { name: 'filler', content: Buffer.alloc((5 << 20) - 5120, 1) };
  const big = entries.map((e) => (e.name === 'f' ? { ...e, content: Buffer.alloc(3 << 20, 2) } : e));
  // symlinks between the file and its link need no settling: they widen the window the race had
  const syms: Entry[] = Array.from({ length: 200 }, (_, i) => ({ name: `sym${i}`, type: 'symlink', linkname: 'f' }));
  const spaced = [filler, entries[0], ...syms, ...entries.slice(1)];
  for (const [i, list] of [entries, big, [filler, ...big], spaced].entries()) {
    for (let run = 0; run < 5; run++) {
      const tar = path.join(dir, 'layer.tar');
      fs.writeFileSync(tar, await packTar(list));
      const root = path.join(dir, `root-${i}-${run}`);
      fs.mkdirSync(root);
      await applyLayerFile(tar, root, { whiteouts: 'none' });
      check(t, root);
    }
  }
});

asRoot()('a link header\'s user.* xattrs for a symlink or a FIFO (which Linux refuses there) are skipped, as moby does', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  await applyLayer(chunked(await packTar([
    { name: 'f', content: 'x' },
    { name: 's', type: 'symlink', linkname: 'f' },
    { name: 'q', type: 'fifo', mode: 0o600 },
    { name: 'ls', type: 'link', linkname: 's', uid: 3, pax: { 'SCHILY.xattr.user.k': 'v' } },
    { name: 'lq', type: 'link', linkname: 'q', uid: 4, mode: 0o640, pax: { 'SCHILY.xattr.user.k': 'v' } },
  ])), dir, { whiteouts: 'none' });
  t.is(fs.lstatSync(path.join(dir, 's')).uid, 3);
  t.deepEqual([fs.lstatSync(path.join(dir, 'q')).uid, fs.lstatSync(path.join(dir, 'q')).mode & 0o7777], [4, 0o640]);
});

asRoot()('an inode the directory held before is linked untouched, also through a link of a link', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  // the parent layer's file, and its hardlink in this layer's root (overlay v1's hardlink copy)
  const parent = path.join(dir, 'parent');
  const root = path.join(dir, 'root');
  fs.mkdirSync(parent);
  fs.mkdirSync(root);
  fs.writeFileSync(path.join(parent, 'p'), 'parent data', { mode: 0o640 });
  fs.chownSync(path.join(parent, 'p'), 7, 8);
  fs.utimesSync(path.join(parent, 'p'), T1, T1);
  fs.linkSync(path.join(parent, 'p'), path.join(root, 'p'));
  const before = fs.lstatSync(path.join(parent, 'p'), { bigint: true });
  await applyLayer(chunked(await packTar([
    { name: 'a', type: 'link', linkname: 'p', mode: 0o777, uid: 9, gid: 9, mtime: T3, pax: { 'SCHILY.xattr.user.k': 'x' } },
    { name: 'b', type: 'link', linkname: 'a', mode: 0o777, uid: 9, gid: 9, mtime: T3 },
    // a new file under a name that was such a link is this tar's own again
    { name: 'a', content: 'new', mode: 0o600, mtime: T1 },
    { name: 'c', type: 'link', linkname: 'a', mode: 0o640, uid: 2, gid: 3, mtime: T2 },
    // and so is an overlay whiteout device made where such a link was
    { name: 'w', type: 'link', linkname: 'p' },
    { name: '.wh.w' },
    { name: 'v', type: 'link', linkname: 'w', mode: 0o640, uid: 5, gid: 6, mtime: T2 },
  ])), root, { whiteouts: 'overlay' });
  const v = fs.lstatSync(path.join(root, 'v'), { bigint: true });
  t.true(fs.lstatSync(path.join(root, 'w')).isCharacterDevice());
  t.deepEqual([Number(v.mode) & 0o7777, v.uid, v.gid, v.mtimeNs], [0o640, 5n, 6n, ns(T2)]);
  const after = fs.lstatSync(path.join(parent, 'p'), { bigint: true });
  t.is(fs.lstatSync(path.join(root, 'b')).ino, fs.lstatSync(path.join(parent, 'p')).ino);
  t.deepEqual([after.mode, after.uid, after.gid, after.mtimeNs, after.atimeNs], [before.mode, before.uid, before.gid, before.mtimeNs, before.atimeNs]);
  t.is(sys.lgetxattr(path.join(parent, 'p'), 'user.k'), null);
  const c = fs.lstatSync(path.join(root, 'c'), { bigint: true });
  t.is(c.ino, fs.lstatSync(path.join(root, 'a'), { bigint: true }).ino);
  t.deepEqual([Number(c.mode) & 0o7777, c.uid, c.gid, c.mtimeNs], [0o640, 2n, 3n, ns(T2)]);
});
