// The header codec against independent implementations: GNU tar and tar-stream
// read what we write; numeric edge cases decode like Go's archive/tar.
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { exportDir } from '../archive/export.ts';
import { applyLayer } from '../archive/apply.ts';
import { treeManifest, manifestDiff } from '../archive/digest.ts';
import { readNumber, formatPaxTime, encodeHeader, headerSpace } from '../archive/tar-header.ts';
import { parsePaxTime } from '../archive/tar-header.ts';
import { asRoot } from './helpers/require.ts';
import { collect, header, listTar, packTar, tempDir } from './helpers/tar.ts';

test('numbers: octal with NUL/space padding, GNU base-256 positive and negative', (t) => {
  t.is(readNumber(Buffer.from('0000644\0'), 0, 8, 'mode'), 0o644);
  t.is(readNumber(Buffer.from(' 644 \0\0\0'), 0, 8, 'mode'), 0o644);
  const big = Buffer.alloc(12);
  big[0] = 0x80;
  big.writeUIntBE(2 ** 40 + 5, 6, 6);
  t.is(readNumber(big, 0, 12, 'size'), 2 ** 40 + 5);
  const neg = Buffer.alloc(8, 0xff);
  t.is(readNumber(neg, 0, 8, 'uid'), -1);
  t.throws(() => readNumber(Buffer.from('12x4\0\0\0\0'), 0, 8, 'mode'), { message: /not octal/ });
});

test('PAX times: fractions and negative times round trip', (t) => {
  for (const [s, sec, nsec] of [['1.5', 1, 500000000], ['-1.25', -2, 750000000], ['1234567890.123456789', 1234567890, 123456789], ['7', 7, 0]] as const) {
    t.deepEqual(parsePaxTime(s), { sec, nsec });
    t.deepEqual(parsePaxTime(formatPaxTime(sec, nsec)), { sec, nsec });
  }
});

test('headers tar-stream reads back: long names via PAX, ns mtime, big uid, xattrs', async (t) => {
  const long = 'a'.repeat(120) + '/' + 'b'.repeat(120);
  const h = header(long, { uid: 3_000_000, mtimeNsec: 42, size: 0, xattrs: new Map([['user.k', Buffer.from('v')]]) });
  const buf = Buffer.alloc(headerSpace(h) + 1024);
  const n = encodeHeader(h, buf, 0);
  const [e] = await listTar(buf.subarray(0, n + 1024));
  const pax = (e.pax ?? {}) as Record<string, string>;
  t.is(e.name, long);
  // tar-stream does not apply PAX uid records itself; the record must be there (Go and GNU tar use it)
  t.is(pax.uid, '3000000');
  t.is(pax['SCHILY.xattr.user.k'], 'v');
  t.regex(pax.mtime ?? '', /\.000000042$/);
});

asRoot()('GNU tar extracts our export to the same tree (xattrs, links, devices, ns times)', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const src = path.join(dir, 'src');
  fs.mkdirSync(src);
  await applyLayer((await import('./helpers/tar.ts')).chunked(await packTar([
    { name: 'd/', type: 'directory', mode: 0o2775, gid: 44 },
    { name: 'd/f', content: 'x'.repeat(5000), mode: 0o4755, pax: { 'SCHILY.xattr.user.a': '1', mtime: '1600000000.5' } },
    { name: 'd/h', type: 'link', linkname: 'd/f' },
    { name: 'd/s', type: 'symlink', linkname: '/nowhere' },
    { name: 'd/c', type: 'character-device', devmajor: 5, devminor: 1 },
    { name: 'd/p', type: 'fifo' },
    { name: 'n'.repeat(200), content: 'long' },
  ])), src, { whiteouts: 'none' });
  const tar = await collect(exportDir(src));
  const out = path.join(dir, 'gnu');
  fs.mkdirSync(out);
  execFileSync('tar', ['--xattrs', '--xattrs-include=*', '-C', out, '-xf', '-'], { input: tar });
  const a = await treeManifest(src, { rootMetadata: false });
  const b = await treeManifest(out, { rootMetadata: false });
  t.deepEqual(b, a, manifestDiff(a, b));
});
