import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import xxhash from 'xxhash-wasm';
import { escapeRaw, manifestDiff, treeDigest, treeManifest, unescapeRaw } from '../archive/digest.ts';
import { fsPath } from '../archive/types.ts';
import { lsetxattr, lutimensNs, makedev, mknod, S_IFBLK, S_IFCHR, S_IFIFO } from '../sys/syscalls.ts';
import { capabilityV2 } from './helpers/file-capability.ts';
import { asRoot } from './helpers/require.ts';

const S = 1_000_000_000n;

function tmp(t: ExecutionContext): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-digest-'));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

/** Every kind of entry and metadata the manifest covers. Root only (owners, devices, capability). */
function richTree(root: string): void {
  const p = (rel: string) => fsPath(`${root}/${rel}`);
  fs.mkdirSync(root);
  fs.mkdirSync(p('etc/sub'), { recursive: true });
  fs.writeFileSync(p('etc/passwd'), 'root:x:0:0::/root:/bin/sh\n');
  fs.writeFileSync(p('etc/sub/data'), Buffer.alloc(3000, 7));
  fs.writeFileSync(p('bin'), 'elf');
  fs.chmodSync(p('bin'), 0o4755);
  lsetxattr(p('bin'), 'security.capability', capabilityV2(1 << 13, true));
  lsetxattr(p('etc/passwd'), 'user.note', Buffer.from([0, 1, 2, 0xff]));
  fs.linkSync(p('etc/passwd'), p('etc/passwd-link'));
  fs.symlinkSync('../etc/passwd', p('etc/sub/link'));
  mknod(p('null'), S_IFCHR | 0o666, makedev(1, 3));
  mknod(p('loop0'), S_IFBLK | 0o660, makedev(7, 0));
  fs.chmodSync(p('null'), 0o666); // mknod's mode is umask-filtered
  fs.chmodSync(p('loop0'), 0o660);
  mknod(p('fifo'), S_IFIFO | 0o600, 0);
  fs.mkdirSync(p('tmp'));
  fs.chmodSync(p('tmp'), 0o1777);
  fs.writeFileSync(p('caf\xc3\xa9 bad\xff'), 'n');
  fs.lchownSync(p('etc/sub'), 1000, 1000);
  fs.lchownSync(p('etc/sub/link'), 1000, 1001);
  let i = 0;
  const stamp = (rel: string) => lutimensNs(p(rel), 1_600_000_000n * S + BigInt(++i) * 1_000_003n);
  for (const rel of ['etc/passwd', 'etc/sub/data', 'bin', 'etc/sub/link', 'null', 'loop0', 'fifo', 'caf\xc3\xa9 bad\xff', 'tmp', 'etc/sub', 'etc', '']) stamp(rel);
}

function copy(src: string, dst: string): void {
  execFileSync('cp', ['-a', src, dst]);
}

/** Run `fn` on `dir/rel`, then put the parent directory's mtime back (a replace in place touches it). */
function keepParentMtime(dir: string, rel: string, fn: (p: string) => void): void {
  const parent = path.dirname(`${dir}/${rel}`);
  const m = fs.lstatSync(parent, { bigint: true }).mtimeNs;
  fn(`${dir}/${rel}`);
  lutimensNs(parent, m);
}

asRoot()('treeDigest: a cp -a copy digests equal, manifests line for line', async (t) => {
  const d = tmp(t);
  richTree(`${d}/a`);
  copy(`${d}/a`, `${d}/b`);
  const [ma, mb] = [await treeManifest(`${d}/a`), await treeManifest(`${d}/b`)];
  t.is(manifestDiff(ma, mb), '');
  t.is(await treeDigest(`${d}/a`), await treeDigest(`${d}/b`));
  t.regex(await treeDigest(`${d}/a`), /^[0-9a-f]{16}$/);
  // the manifest reads as documented
  const line = (p: string) => ma.find((l) => l.startsWith(`${p}\t`));
  t.regex(line('/bin') ?? '', /^\/bin\tfile mode=4755 uid=0 gid=0 mtime=1600000000\.\d{9} size=3 xxh64=[0-9a-f]{16} xattr:security\.capability=0100000200200000/);
  t.is(line('/etc/passwd-link'), '/etc/passwd-link\thardlink to=/etc/passwd');
  t.regex(line('/etc/passwd') ?? '', / xattr:user\.note=000102ff$/);
  t.regex(line('/etc/sub/link') ?? '', /^\/etc\/sub\/link\tsymlink mode=0777 uid=1000 gid=1001 mtime=\S+ target=..\/etc\/passwd$/);
  t.regex(line('/null') ?? '', /^\/null\tchar mode=0666 .* rdev=1:3$/);
  t.regex(line('/loop0') ?? '', /^\/loop0\tblock mode=0660 .* rdev=7:0$/);
  t.regex(line('/tmp') ?? '', /^\/tmp\tdir mode=1777 /);
  t.truthy(line('/caf\u00e9 bad\\xff'));
  t.deepEqual(ma.map((l) => l.split('\t')[0]), [
    '/', '/bin', '/caf\u00e9 bad\\xff', '/etc', '/etc/passwd', '/etc/passwd-link', '/etc/sub', '/etc/sub/data', '/etc/sub/link',
    '/fifo', '/loop0', '/null', '/tmp',
  ]);
});

const mutations: Array<[string, string, (p: string) => void]> = [
  ['rewriting one byte (same size and mtime)', 'etc/sub/data', (p) => {
    const m = fs.lstatSync(p, { bigint: true }).mtimeNs;
    const fd = fs.openSync(p, 'r+');
    fs.writeSync(fd, Buffer.from([8]), 0, 1, 2999);
    fs.closeSync(fd);
    lutimensNs(p, m);
  }],
  ['setting the setgid bit', 'etc/passwd', (p) => fs.chmodSync(p, 0o2644)],
  ['another uid on a dir', 'tmp', (p) => fs.lchownSync(p, 1, 0)],
  ['another gid on a symlink', 'etc/sub/link', (p) => fs.lchownSync(p, 1000, 1000)],
  ['mtime + 1 ns', 'bin', (p) => lutimensNs(p, fs.lstatSync(p, { bigint: true }).mtimeNs + 1n)],
  ['dir mtime + 1 ns', 'etc/sub', (p) => lutimensNs(p, fs.lstatSync(p, { bigint: true }).mtimeNs + 1n)],
  ['another xattr value', 'etc/passwd', (p) => lsetxattr(p, 'user.note', Buffer.from([0, 1, 2, 0xfe]))],
  ['a new empty xattr', 'etc', (p) => lsetxattr(p, 'user.new', Buffer.alloc(0))],
  ['another capability', 'bin', (p) => lsetxattr(p, 'security.capability', capabilityV2(1 << 12, true))],
  ['a retargeted symlink (same length and mtime)', 'etc/sub/link', (p) => {
    const st = fs.lstatSync(p, { bigint: true });
    fs.rmSync(p);
    fs.symlinkSync('../etc/passwX', p);
    fs.lchownSync(p, Number(st.uid), Number(st.gid));
    lutimensNs(p, st.mtimeNs);
  }],
  ['a hardlink replaced by an identical copy', 'etc/passwd-link', (p) => {
    fs.rmSync(p);
    execFileSync('cp', ['-a', path.join(path.dirname(p), 'passwd'), p]);
  }],
  ['another device minor', 'loop0', (p) => {
    const st = fs.lstatSync(p, { bigint: true });
    fs.rmSync(p);
    mknod(p, S_IFBLK | 0o660, makedev(7, 1));
    lutimensNs(p, st.mtimeNs);
  }],
];

for (const [what, rel, mutate] of mutations) {
  asRoot()(`treeDigest: ${what} changes the digest and exactly one manifest line`, async (t) => {
    const d = tmp(t);
    richTree(`${d}/a`);
    copy(`${d}/a`, `${d}/b`);
    keepParentMtime(`${d}/b`, rel, mutate);
    const [ma, mb] = [await treeManifest(`${d}/a`), await treeManifest(`${d}/b`)];
    const diff = manifestDiff(ma, mb);
    t.log(diff);
    const paths = diff.split('\n').map((l) => l.slice(2).split('\t')[0]);
    t.deepEqual(paths, [`/${rel}`, `/${rel}`], 'exactly that entry differs');
    t.not(await treeDigest(`${d}/a`), await treeDigest(`${d}/b`));
  });
}

asRoot()('treeDigest: dirMtimes:false ignores directory mtimes and nothing else', async (t) => {
  const d = tmp(t);
  richTree(`${d}/a`);
  copy(`${d}/a`, `${d}/b`);
  lutimensNs(`${d}/b/etc`, 5n * S);
  lutimensNs(`${d}/b`, 6n * S);
  t.not(await treeDigest(`${d}/a`), await treeDigest(`${d}/b`));
  t.is(await treeDigest(`${d}/a`, { dirMtimes: false }), await treeDigest(`${d}/b`, { dirMtimes: false }));
  fs.chmodSync(`${d}/b/etc`, 0o700);
  t.not(await treeDigest(`${d}/a`, { dirMtimes: false }), await treeDigest(`${d}/b`, { dirMtimes: false }), 'dir mode still counts');
  fs.chmodSync(`${d}/b/etc`, 0o755);
  lutimensNs(`${d}/b/bin`, 5n * S);
  t.not(await treeDigest(`${d}/a`, { dirMtimes: false }), await treeDigest(`${d}/b`, { dirMtimes: false }), 'file mtime still counts');
});

asRoot()('treeDigest: rootMetadata:false ignores the root dir mode, owner and times only', async (t) => {
  const d = tmp(t);
  richTree(`${d}/a`);
  copy(`${d}/a`, `${d}/b`);
  fs.chmodSync(`${d}/b`, 0o700);
  fs.lchownSync(`${d}/b`, 7, 7);
  lutimensNs(`${d}/b`, 9n * S);
  t.not(await treeDigest(`${d}/a`), await treeDigest(`${d}/b`));
  const opts = { rootMetadata: false };
  t.is(await treeDigest(`${d}/a`, opts), await treeDigest(`${d}/b`, opts));
  fs.chmodSync(`${d}/b/tmp`, 0o700);
  t.not(await treeDigest(`${d}/a`, opts), await treeDigest(`${d}/b`, opts));
});

asRoot()('treeDigest: overlay bookkeeping xattrs are ignored by default, not when asked', async (t) => {
  const d = tmp(t);
  richTree(`${d}/a`);
  copy(`${d}/a`, `${d}/b`);
  lsetxattr(`${d}/b/etc`, 'trusted.overlay.opaque', Buffer.from('y'));
  lsetxattr(`${d}/b/bin`, 'trusted.overlay.origin', Buffer.from([1, 2, 3]));
  t.is(await treeDigest(`${d}/a`), await treeDigest(`${d}/b`));
  const all = { ignoreXattrs: () => false };
  t.not(await treeDigest(`${d}/a`, all), await treeDigest(`${d}/b`, all));
  lsetxattr(`${d}/b/etc`, 'trusted.other', Buffer.from('y'));
  t.not(await treeDigest(`${d}/a`), await treeDigest(`${d}/b`));
});

test('treeDigest: ignore leaves out an entry and its subtree', async (t) => {
  const d = tmp(t);
  fs.mkdirSync(`${d}/a/skip/deep`, { recursive: true });
  fs.writeFileSync(`${d}/a/keep`, 'k');
  fs.writeFileSync(`${d}/a/skip/deep/x`, 'x');
  const m = await treeManifest(`${d}/a`, { ignore: (p) => p === '/skip' });
  t.deepEqual(m.map((l) => l.split('\t')[0]), ['/', '/keep']);
});

test('treeDigest: non-UTF-8 names are exact, and distinct bytes never print alike', async (t) => {
  const d = tmp(t);
  for (const n of ['a', 'b']) fs.mkdirSync(`${d}/${n}`);
  fs.writeFileSync(fsPath(`${d}/a/x\xff`), '1');
  fs.writeFileSync(fsPath(`${d}/b/x\xfe`), '1');
  for (const n of ['a', 'b']) {
    lutimensNs(fsPath(`${d}/${n}/x${n === 'a' ? '\xff' : '\xfe'}`), 7n * S);
    lutimensNs(`${d}/${n}`, 7n * S);
  }
  const [ma, mb] = [await treeManifest(`${d}/a`), await treeManifest(`${d}/b`)];
  t.is(ma[1].split('\t')[0], '/x\\xff');
  t.is(manifestDiff(ma, mb).split('\n').length, 2);
  t.not(await treeDigest(`${d}/a`), await treeDigest(`${d}/b`));
  // escapeRaw is injective: it round-trips every byte and the tricky sequences
  const samples = [
    ...Array.from({ length: 256 }, (_, i) => String.fromCharCode(i)),
    'caf\xc3\xa9', '\xc3(', '\xe2\x82\xac', '\xe2\x82', '\xed\xa0\x80', '\xf0\x9f\x98\x80', '\xc0\xaf', '\\x41', 'a b\tc\n',
    '\xc2\x85', '\xf4\x90\x80\x80',
  ];
  const printed = new Set<string>();
  for (const s of samples) {
    const e = escapeRaw(s);
    t.is(unescapeRaw(e), s, `round trip of ${JSON.stringify(s)}`);
    t.false(/[\x00-\x1f\x7f\t]/.test(e), `no raw control characters in ${JSON.stringify(e)}`);
    printed.add(e);
  }
  t.is(printed.size, samples.length);
  t.is(escapeRaw('caf\xc3\xa9'), 'café');
});

// serial: ava runs serial tests before the concurrent ones, so no other test allocates meanwhile
test.serial('treeDigest: content is hashed in 1 MiB chunks with flat memory', async (t) => {
  const d = tmp(t);
  fs.mkdirSync(`${d}/a`);
  const size = 256 * 1024 * 1024;
  fs.writeFileSync(`${d}/a/sparse`, '');
  fs.truncateSync(`${d}/a/sparse`, size); // sparse: no disk use, reads back zeros
  fs.writeFileSync(`${d}/a/small`, 'hello');
  await treeDigest(`${d}/a`, { ignore: () => true }); // instantiate the wasm hasher first
  const base = process.memoryUsage().arrayBuffers;
  let peak = base;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().arrayBuffers);
  }, 5);
  const m = await treeManifest(`${d}/a`);
  clearInterval(timer);
  peak = Math.max(peak, process.memoryUsage().arrayBuffers);
  t.true(peak - base < 16 * 1024 * 1024, `array buffers grew by ${peak - base}`);
  const { h64Raw, create64 } = await xxhash();
  t.regex(m.find((l) => l.startsWith('/small\t')) ?? '', new RegExp(` size=5 xxh64=${h64Raw(Buffer.from('hello')).toString(16).padStart(16, '0')}$`));
  const h = create64();
  const zeros = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < 256; i++) h.update(zeros);
  t.regex(m.find((l) => l.startsWith('/sparse\t')) ?? '', new RegExp(` size=${size} xxh64=${h.digest().toString(16).padStart(16, '0')}$`));
});

test('manifestDiff: path-aligned, compact, capped', (t) => {
  const a = ['/\tdir', '/a\tfile size=1', '/b\tfile size=1', '/c\tfile size=1', '/d x\tfile'];
  const b = ['/\tdir', '/a\tfile size=2', '/b.new\tfile size=1', '/c\tfile size=1', '/d x\tfile', '/e\tfile'];
  t.is(manifestDiff(a, a.slice()), '');
  t.is(manifestDiff(a, b), ['- /a\tfile size=1', '+ /a\tfile size=2', '- /b\tfile size=1', '+ /b.new\tfile size=1', '+ /e\tfile'].join('\n'));
  // paths compare as raw bytes: '/a/b' sorts after '/a.b' and '/a\xff' after both
  const x = ['/a.b\tfile', '/a/b\tfile', '/a\\xff\tfile'];
  t.is(manifestDiff(x, [x[0], x[2]]), '- /a/b\tfile');
  const many = Array.from({ length: 30 }, (_, i) => `/f${String(i).padStart(2, '0')}\tfile`);
  const out = manifestDiff(many, []).split('\n');
  t.is(out.length, 21);
  t.is(out[20], '… and 10 more differing paths');
});
