// tar-split: recording, reading, reassembly and the checks verify relies on.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { applyLayer } from '../../archive/apply.ts';
import { crc64, Crc64 } from '../../layerstore/crc64.ts';
import {
  DirFileGetter, TarSplitFormatError, TarSplitRecorder, assembleTar, digestLayer, readTarSplit, tarSplitMembers,
} from '../../layerstore/tar-split.ts';
import { header, packTar, rawTar } from '../helpers/tar.ts';

test('CRC-64/ISO: Go hash/crc64 ISO check value, incremental = one-shot', (t) => {
  t.is(crc64(Buffer.from('123456789')).toString('hex'), 'b90956c775a41001');
  t.is(crc64(Buffer.alloc(0)).toString('hex'), '0000000000000000');
  const data = Buffer.from(Array.from({ length: 10007 }, (_, i) => (i * 31 + 7) & 0xff));
  const c = new Crc64();
  for (let i = 0; i < data.length; i += 13) c.update(data.subarray(i, i + 13));
  t.deepEqual(c.digest(), crc64(data));
});

async function sampleTar(): Promise<Buffer> {
  return packTar([
    { name: 'etc/', type: 'directory' },
    { name: 'etc/passwd', content: 'root:x:0:0:root:/root:/bin/sh\n' },
    { name: 'etc/big', content: Buffer.alloc(70_000, 7) },
    { name: 'etc/empty', content: '' },
    { name: 'etc/sh', type: 'symlink', linkname: 'passwd' },
    { name: 'etc/hard', type: 'link', linkname: 'etc/passwd' },
    { name: 'usr/share/doc/naïve/résumé.txt', content: 'x' },
    { name: 'usr/.wh.gone', content: '' },
  ]);
}

function tmpdir(t: { teardown: (f: () => void) => void }): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-ts-'));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

async function recorded(tar: Buffer, dir: string): Promise<{ file: string; root: string; rec: TarSplitRecorder }> {
  const rec = new TarSplitRecorder();
  for (let i = 0; i < tar.length; i += 777) rec.push(tar.subarray(i, i + 777)); // odd chunking on purpose
  const file = path.join(dir, 'tar-split.json.gz');
  fs.writeFileSync(file, rec.finish());
  const root = path.join(dir, 'root');
  fs.mkdirSync(root);
  await applyLayer(tar, root, { whiteouts: 'aufs' });
  return { file, root, rec };
}

test('record, then reassemble from the extracted files: the same bytes, the same DiffID', async (t) => {
  const tar = await sampleTar();
  const { file, root, rec } = await recorded(tar, tmpdir(t));
  const expected = `sha256:${createHash('sha256').update(tar).digest('hex')}`;
  t.is(rec.diffId(), expected);
  const chunks: Buffer[] = [];
  const problems: string[] = [];
  for await (const c of assembleTar(readTarSplit(file), new DirFileGetter(root), (p, m) => problems.push(`${p}: ${m}`))) chunks.push(Buffer.from(c));
  t.deepEqual(problems, []);
  t.true(Buffer.concat(chunks).equals(tar));
  const d = await digestLayer(file, new DirFileGetter(root), () => undefined);
  t.is(d.diffId, expected);
  t.is(d.tarSize, tar.length);
  t.is(d.filesRead, 3); // passwd, big, résumé: empty files, links, dirs are never read
});

test('the recorded entries follow the tar-split format: segments, one file entry per header, CRC-64 payloads', async (t) => {
  const tar = await sampleTar();
  const { file } = await recorded(tar, tmpdir(t));
  const lines = zlib.gunzipSync(fs.readFileSync(file)).toString('utf8').trimEnd().split('\n').map((l) => JSON.parse(l));
  t.deepEqual(lines.map((l) => l.position), lines.map((_, i) => i));
  const files = lines.filter((l) => l.type === 1);
  t.deepEqual(files.map((f) => f.name), ['etc/', 'etc/passwd', 'etc/big', 'etc/empty', 'etc/sh', 'etc/hard', 'usr/share/doc/naïve/résumé.txt', 'usr/.wh.gone']);
  const passwd = files[1];
  t.is(passwd.size, 30);
  t.is(Buffer.from(passwd.payload, 'base64').toString('hex'), crc64(Buffer.from('root:x:0:0:root:/root:/bin/sh\n')).toString('hex'));
  t.is(files[3].size, undefined); // size 0 is omitted
  t.is(files[3].payload, null);
  // segments concatenated with the bodies give back the tar
  t.true(Buffer.concat(lines.filter((l) => l.type === 2).map((l) => Buffer.from(l.payload, 'base64'))).length + 30 + 70_000 + 1 === tar.length);
});

test('a non-UTF-8 name goes to name_raw and comes back byte-exact', async (t) => {
  const name = Buffer.from([0x66, 0xff, 0x2e, 0x74, 0x78, 0x74]).toString('latin1'); // "f\xff.txt"
  const tar = rawTar([{ name, type: 'file', mode: 0o644, uid: 0, gid: 0, size: 3, mtimeSec: 1, mtimeNsec: 0, linkname: '', devmajor: 0, devminor: 0, xattrs: null, body: Buffer.from('abc') }]);
  const { file, root } = await recorded(tar, tmpdir(t));
  const line = JSON.parse(zlib.gunzipSync(fs.readFileSync(file)).toString('utf8').split('\n').find((l) => l.includes('"type":1'))!);
  t.is(Buffer.from(line.name_raw, 'base64').toString('latin1'), name);
  t.is(line.name, undefined);
  const d = await digestLayer(file, new DirFileGetter(root), (p, m) => t.fail(`${p}: ${m}`));
  t.is(d.diffId, `sha256:${createHash('sha256').update(tar).digest('hex')}`);
});

test('a flipped byte, a missing file and a longer file are each reported with the file path', async (t) => {
  const tar = await sampleTar();
  const { file, root } = await recorded(tar, tmpdir(t));
  const big = path.join(root, 'etc/big');
  const b = fs.readFileSync(big);
  b[12345] ^= 0x01;
  fs.writeFileSync(big, b);
  fs.unlinkSync(path.join(root, 'etc/passwd'));
  fs.writeFileSync(path.join(root, 'usr/share/doc/naïve/résumé.txt'), 'xy');
  const problems: [string, string][] = [];
  const d = await digestLayer(file, new DirFileGetter(root), (p, m) => problems.push([p, m]));
  t.not(d.diffId, `sha256:${createHash('sha256').update(tar).digest('hex')}`);
  // no bytes made up for the missing file (30 of them); the longer one is cut to its recorded size
  t.is(d.tarSize, tar.length - 'root:x:0:0:root:/root:/bin/sh\n'.length);
  t.deepEqual(problems.map(([p]) => p), [path.join(root, 'etc/passwd'), big, path.join(root, 'usr/share/doc/naïve/résumé.txt')]);
  t.regex(problems[0][1], /is missing/);
  t.regex(problems[1][1], /CRC-64/);
  t.regex(problems[2][1], /longer than the 1 bytes/);
});

test('a file shorter than recorded is reported, and the bytes it lacks are not made up', async (t) => {
  const tar = await sampleTar();
  const { file, root } = await recorded(tar, tmpdir(t));
  fs.truncateSync(path.join(root, 'etc/big'), 1000);
  const problems: string[] = [];
  const d = await digestLayer(file, new DirFileGetter(root), (p, m) => problems.push(`${p}: ${m}`));
  t.deepEqual(problems, [`${path.join(root, 'etc/big')}: is 1000 bytes, tar-split records 70000`]);
  t.is(d.tarSize, tar.length - 69000);
});

test('a tar-split and its tar header claiming a petabyte for a missing file: reported at once, nothing hashed for it', async (t) => {
  const dir = tmpdir(t);
  const huge = 1e15;
  const whole = rawTar([header('huge', { size: huge })]);
  const head = whole.subarray(0, whole.length - 1024); // PAX record and header: 1e15 is past ustar's octal size field
  const lines = [
    { type: 2, payload: head.toString('base64'), position: 0 },
    { type: 1, name: 'huge', size: huge, payload: null, position: 1 },
    { type: 2, payload: Buffer.alloc(1024).toString('base64'), position: 2 },
  ];
  const file = path.join(dir, 'tar-split.json.gz');
  fs.writeFileSync(file, zlib.gzipSync(lines.map((l) => JSON.stringify(l)).join('\n') + '\n'));
  const root = path.join(dir, 'root');
  fs.mkdirSync(root);
  const problems: string[] = [];
  const d = await digestLayer(file, new DirFileGetter(root), (p, m) => problems.push(`${p}: ${m}`));
  t.deepEqual(problems, [`${path.join(root, 'huge')}: is missing (layer file of ${huge} bytes)`]);
  t.is(d.tarSize, head.length + 1024);
  const members = [];
  for await (const m of tarSplitMembers(file)) members.push(m.header);
  t.deepEqual(members.map((h) => [h.name, h.size]), [['huge', huge]]);
});

/** `file`'s lines, `edit` applied to the file entry named `name`, written back. */
function editEntry(file: string, name: string, edit: (e: Record<string, unknown>) => void): void {
  const lines = zlib.gunzipSync(fs.readFileSync(file)).toString('utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  edit(lines.find((l) => l.type === 1 && l.name === name)!);
  fs.writeFileSync(file, zlib.gzipSync(lines.map((l) => JSON.stringify(l)).join('\n') + '\n'));
}

for (const [what, edit, message] of [
  ['a size its tar header does not give (a petabyte)', (e: Record<string, unknown>) => void (e.size = 1e15), 'entry "etc/big" records 1000000000000000 bytes, its tar header 70000'],
  ['one byte less than its tar header', (e: Record<string, unknown>) => void (e.size = 69_999), 'entry "etc/big" records 69999 bytes, its tar header 70000'],
  ['another file than its tar header names', (e: Record<string, unknown>) => void (e.name = 'etc/passwd'), 'entry "etc/passwd" is read from disk for the tar header "etc/big"'],
] as const) {
  test(`a tar-split entry naming ${what}: refused naming it, before its file is read (digestLayer, tarSplitMembers)`, async (t) => {
    const { file, root } = await recorded(await sampleTar(), tmpdir(t));
    editEntry(file, 'etc/big', edit);
    const opened: string[] = [];
    const getter = new DirFileGetter(root);
    const open = getter.open.bind(getter);
    getter.open = (name) => { opened.push(name); return open(name); };
    const err = await t.throwsAsync(digestLayer(file, getter, () => undefined), { instanceOf: TarSplitFormatError });
    t.is(err!.message, `${file}: ${message}`);
    t.deepEqual(opened, ['etc/passwd'], 'only the files before the lie were read');
    await t.throwsAsync(async () => { for await (const _ of tarSplitMembers(file)) void _; }, { message: `${file}: ${message}` });
  });
}

test('a symlink planted where a file was is not followed', async (t) => {
  const tar = await sampleTar();
  const { file, root } = await recorded(tar, tmpdir(t));
  fs.unlinkSync(path.join(root, 'etc/passwd'));
  fs.symlinkSync('/etc/passwd', path.join(root, 'etc/passwd'));
  const problems: string[] = [];
  await digestLayer(file, new DirFileGetter(root), (_p, m) => problems.push(m));
  t.regex(problems[0], /symlink/);
});

test('tarSplitMembers gives every header and CRC without reading any file', async (t) => {
  const tar = await sampleTar();
  const { file } = await recorded(tar, tmpdir(t));
  const members = [];
  for await (const m of tarSplitMembers(file)) members.push(m);
  t.deepEqual(members.map((m) => [m.header.name, m.header.type, m.header.size]), [
    ['etc/', 'dir', 0], ['etc/passwd', 'file', 30], ['etc/big', 'file', 70_000], ['etc/empty', 'file', 0],
    ['etc/sh', 'symlink', 0], ['etc/hard', 'link', 0], [Buffer.from('usr/share/doc/naïve/résumé.txt').toString('latin1'), 'file', 1], ['usr/.wh.gone', 'file', 0],
  ]);
  t.deepEqual(members[2].crc, crc64(Buffer.alloc(70_000, 7)));
  t.is(members[0].crc, null);
});

test('a truncated or garbled tar-split file is a TarSplitFormatError naming it', async (t) => {
  const tar = await sampleTar();
  const dir = tmpdir(t);
  const { file } = await recorded(tar, dir);
  const gz = fs.readFileSync(file);
  const cut = path.join(dir, 'cut.json.gz');
  fs.writeFileSync(cut, gz.subarray(0, gz.length - 20));
  const drain = async (f: string) => {
    for await (const _ of readTarSplit(f)) void _;
  };
  const e1 = await t.throwsAsync(drain(cut), { instanceOf: TarSplitFormatError });
  t.true(e1!.message.startsWith(cut));
  const bad = path.join(dir, 'bad.json.gz');
  fs.writeFileSync(bad, zlib.gzipSync('{"type":2,"payload":"AA==","position":0}\n{"type":7}\n'));
  const e2 = await t.throwsAsync(drain(bad), { instanceOf: TarSplitFormatError });
  t.regex(e2!.message, /line 2: unknown entry type 7/);
});

test('a tar-split line over the cap is a TarSplitFormatError naming the file and the line; a long line under it is read whole', async (t) => {
  const dir = tmpdir(t);
  const seg = (bytes: number, position: number) => JSON.stringify({ type: 2, payload: Buffer.alloc(bytes, 1).toString('base64'), position });
  // a 3 MiB line (2.25 MiB of payload) is read; a 6 MiB one, on line 3, is over the 4 MiB cap
  const ok = path.join(dir, 'ok.json.gz');
  fs.writeFileSync(ok, zlib.gzipSync(`${seg(10, 0)}\n${seg(9 << 18, 1)}\n`));
  let n = 0;
  for await (const e of readTarSplit(ok)) n += e.type === 'segment' ? e.payload.length : 0;
  t.is(n, 10 + (9 << 18));
  const long = path.join(dir, 'long.json.gz');
  fs.writeFileSync(long, zlib.gzipSync(`${seg(10, 0)}\n${seg(10, 1)}\n${seg(9 << 19, 2)}\n`));
  const err = await t.throwsAsync(async () => {
    for await (const _ of readTarSplit(long)) void _;
  });
  t.true(err instanceof TarSplitFormatError);
  t.is(err!.message, `${long}: line 3: longer than the 4 MiB cap for a tar-split line`);
});

test('a FIFO or a device in place of a tar-split file is refused without blocking', async (t) => {
  const dir = tmpdir(t);
  const f = path.join(dir, 'fifo.json.gz');
  execFileSync('mkfifo', [f]);
  const z = path.join(dir, 'zero.json.gz');
  fs.symlinkSync('/dev/zero', z);
  for (const [file, msg] of [[f, 'is a FIFO, expected a regular file'], [z, 'is a symlink (not followed: the store format has none here)']]) {
    const err = await t.throwsAsync(async () => {
      for await (const _ of readTarSplit(file)) void _;
    });
    t.is(err!.message, `${file}: ${msg}`);
  }
});
