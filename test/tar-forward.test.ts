// Class 2 of issue 8: the tar parser only moves forward. Every numeric field
// (octal, GNU base-256, PAX) is validated before it moves the parser; errors
// give the exact (non-negative) byte offset of the header at fault and name
// its entry, never the entry before it; garbage after the end-of-archive
// block is described as such. Parsing runs in a worker so a parser that loops
// fails the test (timeout) instead of hanging it.
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { applyLayer, ApplyError } from '../archive/apply.ts';
import { BLOCK, encodeHeader, headerSpace, type TarHeader } from '../archive/tar-header.ts';
import { parseInWorker } from './helpers/parse-worker.ts';
import { strata } from './helpers/strata-cli.ts';
import { fixChecksum, header, tempDir } from './helpers/tar.ts';

/** One entry's header block(s) and padded body, by our encoder. */
function entry(h: TarHeader, body = Buffer.alloc(0)): Buffer {
  const hb = Buffer.alloc(headerSpace(h));
  const n = encodeHeader(h, hb, 0);
  return Buffer.concat([hb.subarray(0, n), body, Buffer.alloc((BLOCK - (body.length % BLOCK)) % BLOCK)]);
}

/** Rewrite a header block's field in place and fix its checksum (so only the field is wrong). */
function patch(block: Buffer, off: number, bytes: Buffer): Buffer {
  const b = Buffer.from(block);
  bytes.copy(b, off);
  fixChecksum(b);
  return b;
}

/** GNU base-256 of a (possibly negative) number in a `len`-byte field. */
function base256(v: bigint, len: number): Buffer {
  const b = Buffer.alloc(len);
  let x = v < 0n ? (1n << BigInt(8 * len)) + v : v;
  for (let i = len - 1; i >= 0; i--) {
    b[i] = Number(x & 0xffn);
    x >>= 8n;
  }
  b[0] |= 0x80;
  return b;
}

/** A PAX 'x' header carrying `records`, then the entry header `h`. */
function withPax(records: Record<string, string>, h: TarHeader): Buffer {
  const body = Buffer.from(Object.entries(records).map(([k, v]) => {
    const rest = ` ${k}=${v}\n`;
    let len = rest.length + 1;
    while (String(len).length + rest.length !== len) len = String(len).length + rest.length;
    return `${len}${rest}`;
  }).join(''), 'latin1');
  const x = entry({ ...header('PaxHeaders/' + h.name), size: body.length }, body);
  x[156] = 0x78; // typeflag 'x'
  return Buffer.concat([patch(x.subarray(0, BLOCK), 0, Buffer.alloc(0)), x.subarray(BLOCK), entry(h)]);
}

const good = entry(header('good', { size: 3 }), Buffer.from('abc')); // 1024 bytes: the bad header starts at 1024
const end = Buffer.alloc(1024);
const bad = (off: number, bytes: Buffer, name = 'bad') => patch(entry(header(name)), off, bytes);

const cases: { title: string; tar: Buffer; message: RegExp }[] = [
  { title: 'base-256 negative size', tar: Buffer.concat([good, bad(124, base256(-5n, 12)), end]), message: /tar entry "bad" \(header at byte 1024\): size field is negative \(-5\)/ },
  { title: 'base-256 size of -2^60', tar: Buffer.concat([good, bad(124, base256(-(2n ** 60n), 12)), end]), message: /"bad" \(header at byte 1024\): size field is negative/ },
  { title: 'base-256 size beyond 2^53', tar: Buffer.concat([good, bad(124, base256(2n ** 62n, 12)), end]), message: /"bad" \(header at byte 1024\): size field .*out of range/ },
  { title: 'PAX size=-5', tar: Buffer.concat([good, withPax({ size: '-5' }, header('bad')), end]), message: /tar entry "bad" \(header at byte 1024\): PAX size "-5" is not a non-negative integer/ },
  { title: 'PAX size too large', tar: Buffer.concat([good, withPax({ size: '99999999999999999999' }, header('bad')), end]), message: /"bad" \(header at byte 1024\): PAX size .* out of range/ },
  { title: 'PAX uid=-1', tar: Buffer.concat([good, withPax({ uid: '-1' }, header('bad')), end]), message: /"bad" \(header at byte 1024\): PAX uid "-1"/ },
  { title: 'base-256 negative uid', tar: Buffer.concat([good, bad(108, base256(-1n, 8)), end]), message: /"bad" \(header at byte 1024\): uid field is negative/ },
  { title: 'base-256 negative gid', tar: Buffer.concat([good, bad(116, base256(-7n, 8)), end]), message: /"bad" \(header at byte 1024\): gid field is negative/ },
  { title: 'base-256 negative mode', tar: Buffer.concat([good, bad(100, base256(-1n, 8)), end]), message: /"bad" \(header at byte 1024\): mode field is negative/ },
  { title: 'base-256 negative devmajor', tar: Buffer.concat([good, bad(329, base256(-1n, 8)), end]), message: /"bad" \(header at byte 1024\): devmajor field is negative/ },
  { title: 'PAX mtime garbage', tar: Buffer.concat([good, withPax({ mtime: '1e9' }, header('bad')), end]), message: /"bad" \(header at byte 1024\): malformed PAX mtime "1e9"/ },
  { title: 'PAX record length that is not decimal', tar: Buffer.concat([good, withPax({}, header('bad')).fill(0, 0, 0), end]), message: /./ },
  { title: 'bad checksum at the first header', tar: Buffer.concat([Buffer.from(good).fill(0x41, 0, 4), end]), message: /^invalid tar header checksum at byte 0\b/ },
  { title: 'bad checksum at the second header', tar: Buffer.concat([good, Buffer.from(entry(header('bad'))).fill(0x41, 0, 4), end]), message: /^invalid tar header checksum at byte 1024\b/ },
  { title: 'garbage after the end-of-archive block', tar: Buffer.concat([good, Buffer.alloc(BLOCK), Buffer.alloc(BLOCK, 0x5a)]), message: /^trailing garbage after the end-of-archive block at byte 1536\b/ },
  // as Go's archive/tar (validPAXRecord): a NUL in a key or in a path/linkpath/uname/gname value
  { title: 'PAX path with a NUL byte', tar: Buffer.concat([good, withPax({ path: 'a\0b' }, header('bad')), end]), message: /"PaxHeaders\/bad" \(header at byte 1024\): malformed PAX record at byte 1536 \(a NUL byte in the "path" value\)/ },
  { title: 'PAX linkpath with a NUL byte', tar: Buffer.concat([good, withPax({ linkpath: '/x\0' }, header('bad')), end]), message: /malformed PAX record at byte 1536 \(a NUL byte in the "linkpath" value\)/ },
  { title: 'PAX xattr key with a NUL byte', tar: Buffer.concat([good, withPax({ 'SCHILY.xattr.user.a\0trusted.b': '1' }, header('bad')), end]), message: /malformed PAX record at byte 1536 \(a NUL byte in the key\)/ },
];
// the "not decimal" case: a PAX body whose record length is written 0x0a
cases[11].tar = (() => {
  const body = Buffer.from('0x0a a=b\n', 'latin1');
  const x = entry({ ...header('PaxHeaders/bad'), size: body.length }, body);
  x[156] = 0x78;
  return Buffer.concat([good, patch(x.subarray(0, BLOCK), 0, Buffer.alloc(0)), x.subarray(BLOCK), entry(header('bad')), end]);
})();
cases[11].message = /tar entry "PaxHeaders\/bad" \(header at byte 1024\): malformed PAX record at byte 1536 \(length "0x0a" is not decimal\)/;

for (const c of cases) {
  // serial: one worker at a time, so a loaded 2-core host starts each well within its bound
  test.serial(`the parser only moves forward: ${c.title}`, async (t) => {
    const r = await parseInWorker(c.tar, 15_000);
    if (r.kind !== 'error') return t.fail(r.kind === 'timeout' ? 'the parser did not end within 15 s' : `accepted: ${JSON.stringify(r)}`);
    t.is(r.errorName, 'TarFormatError');
    t.regex(r.message, c.message);
    t.notRegex(r.message, /byte -/);
  });
}

test('apply blames the entry at fault, not the one before it', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  for (const i of [0, 13, 14]) {
    const e = await t.throwsAsync(applyLayer(cases[i].tar, dir, { whiteouts: 'none' }));
    t.true(e instanceof ApplyError, String(e));
    t.notRegex(e!.message, /tar entry "good"/, cases[i].title);
    t.regex(e!.message, cases[i].message, cases[i].title);
    t.regex(e!.message, /\(layer partially applied: 1 entries written before it\)$/);
  }
});

test('strata layer apply of a tar with a negative size exits 1 with one line, promptly', (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const home = path.join(dir, 'vfs');
  t.is(strata(['layer', 'create', 'L', '--driver', 'vfs', '--home', home]).code, 0);
  const tarFile = path.join(dir, 'neg.tar');
  fs.writeFileSync(tarFile, cases[3].tar);
  const started = Date.now();
  const r = strata(['layer', 'apply', 'L', '--driver', 'vfs', '--home', home, '--file', tarFile], { timeoutMs: 20_000 });
  t.true(Date.now() - started < 20_000, 'strata layer apply did not end within 20 s');
  t.is(r.code, 1, r.stderr);
  const lines = r.stderr.trim().split('\n');
  t.is(lines.length, 1, r.stderr);
  t.regex(lines[0], /tar entry "bad" \(header at byte 1024\): PAX size "-5"/);
  t.notRegex(r.stderr, /\n\s+at /, 'no stack trace');
});

test('a failure on a 1 MiB name is still a line of bounded length that names the entry', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const name = 'p'.repeat(1 << 20); // a PAX path: the fs refuses it (ENAMETOOLONG)
  const e = await t.throwsAsync(applyLayer(withPax({ path: name }, header('x')), dir, { whiteouts: 'none' }));
  t.true(e instanceof ApplyError, String(e));
  t.true(e!.message.length < 16 << 10, `message of ${e!.message.length} characters`);
  t.regex(e!.message, /^tar entry "ppp/);
  t.regex(e!.message, /characters left out/);
});
