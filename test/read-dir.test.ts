// sys/read-dir.ts: listings by getdents64 give what readdirSync gave (names as bytes, d_type) and move no atime.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { DT_BLK, DT_CHR, DT_DIR, DT_FIFO, DT_LNK, DT_REG, DT_SOCK, dirHasEntries, readDirEntries, readDirNames } from '../sys/read-dir.ts';
import { asRoot } from './helpers/require.ts';
import { tempDir } from './helpers/tar.ts';

test('names survive as bytes (non-UTF-8 included), . and .. skipped, 10k entries across buffers', (t) => {
  const { dir, cleanup } = tempDir('strata-read-dir-');
  t.teardown(cleanup);
  const odd = Buffer.from([0x66, 0xff, 0xfe, 0x80]);
  fs.writeFileSync(Buffer.concat([Buffer.from(dir + '/'), odd]), '');
  for (let i = 0; i < 10000; i++) fs.writeFileSync(path.join(dir, `entry-with-a-longish-name-${i}`), '');
  const hex = (bs: Buffer[]) => bs.map((b) => b.toString('hex')).sort();
  const ours = readDirNames(dir);
  t.is(ours.length, 10001);
  t.deepEqual(hex(ours), hex(fs.readdirSync(dir, { encoding: 'buffer' })));
  t.true(ours.some((b) => b.equals(odd)));
  t.true(dirHasEntries(dir));
  fs.mkdirSync(path.join(dir, 'empty'));
  t.false(dirHasEntries(path.join(dir, 'empty')));
  t.is(readDirNames(path.join(dir, 'empty')).length, 0);
});

asRoot()('d_type of every file kind; the directory\'s atime does not move', async (t) => {
  const { dir, cleanup } = tempDir('strata-read-dir-');
  t.teardown(cleanup);
  fs.writeFileSync(path.join(dir, 'reg'), '');
  fs.mkdirSync(path.join(dir, 'dir'));
  fs.symlinkSync('reg', path.join(dir, 'lnk'));
  execFileSync('mkfifo', [path.join(dir, 'fifo')]);
  execFileSync('mknod', [path.join(dir, 'chr'), 'c', '1', '3']);
  execFileSync('mknod', [path.join(dir, 'blk'), 'b', '7', '250']);
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(path.join(dir, 'sock'), resolve));
  t.teardown(() => srv.close()); // closing unlinks the socket: kept listening while listed
  execFileSync('touch', ['-a', '-d', '@978307200', dir]);
  const atime = fs.statSync(dir, { bigint: true }).atimeNs;
  const types = Object.fromEntries(readDirEntries(dir).map((e) => [e.name.toString(), e.type]));
  t.deepEqual(types, { reg: DT_REG, dir: DT_DIR, lnk: DT_LNK, fifo: DT_FIFO, chr: DT_CHR, blk: DT_BLK, sock: DT_SOCK });
  t.is(fs.statSync(dir, { bigint: true }).atimeNs, atime, 'O_NOATIME: the listing left the atime alone');
  fs.readdirSync(dir);
  t.not(fs.statSync(dir, { bigint: true }).atimeNs, atime, 'while readdirSync moves it (relatime), so the check can fail');
});

test('errors are fs errors naming the path; noFollow refuses a symlinked directory', (t) => {
  const { dir, cleanup } = tempDir('strata-read-dir-');
  t.teardown(cleanup);
  t.throws(() => readDirNames(path.join(dir, 'missing')), { code: 'ENOENT' });
  fs.mkdirSync(path.join(dir, 'real'));
  fs.symlinkSync('real', path.join(dir, 'link'));
  t.is(readDirNames(path.join(dir, 'link')).length, 0);
  // Linux answers O_DIRECTORY|O_NOFOLLOW on a symlink with ENOTDIR (ELOOP without O_DIRECTORY)
  const e = t.throws(() => readDirNames(path.join(dir, 'link'), { noFollow: true }));
  t.true(['ENOTDIR', 'ELOOP'].includes((e as NodeJS.ErrnoException).code!), String(e));
});
