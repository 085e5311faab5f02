import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { changesDirs, changesFromDiffDir, changesSize } from '../archive/changes.ts';
import { escapeRaw } from '../archive/digest.ts';
import { type Change, ChangeKind, changeLetter, fsPath, OVERLAY_OPAQUE_XATTR } from '../archive/types.ts';
import { lsetxattr, lutimensNs, makedev, mknod, S_IFBLK, S_IFCHR, S_IFSOCK } from '../sys/syscalls.ts';
import { withRandomStack, type StackLayer } from './helpers/layer-stack.ts';
import { overlayListed } from './helpers/overlay-mount.ts';
import { capabilityV2 } from './helpers/file-capability.ts';
import { asRoot, hasTool, isRoot, when } from './helpers/require.ts';

/** Changes as `docker diff` lines (raw paths as UTF-8 text, other bytes as \xHH). */
function lines(changes: Change[]): string[] {
  return changes.map((c) => `${changeLetter[c.kind]} ${escapeRaw(c.path)}`);
}

function tmp(t: ExecutionContext, name = 'strata-changes-'): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), name));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

const S = 1_000_000_000n;

// ---- moby changes_test.go sample tree ------------------------------------

function createSampleDir(root: string): void {
  const now = new Date();
  const files: Array<[('f' | 'd' | 'l'), string, string, number]> = [
    ['f', 'file1', 'file1\n', 0o600], ['f', 'file2', 'file2\n', 0o666], ['f', 'file3', 'file3\n', 0o404],
    ['f', 'file4', 'file4\n', 0o600], ['f', 'file5', 'file5\n', 0o600], ['f', 'file6', 'file6\n', 0o600],
    ['f', 'file7', 'file7\n', 0o600],
    ['d', 'dir1', '', 0o740], ['f', 'dir1/file1-1', 'file1-1\n', 0o1444], ['f', 'dir1/file1-2', 'file1-2\n', 0o666],
    ['d', 'dir2', '', 0o700], ['f', 'dir2/file2-1', 'file2-1\n', 0o666], ['f', 'dir2/file2-2', 'file2-2\n', 0o666],
    ['d', 'dir3', '', 0o700], ['f', 'dir3/file3-1', 'file3-1\n', 0o666], ['f', 'dir3/file3-2', 'file3-2\n', 0o666],
    ['d', 'dir4', '', 0o700], ['f', 'dir4/file3-1', 'file4-1\n', 0o666], ['f', 'dir4/file3-2', 'file4-2\n', 0o666],
    ['l', 'symlink1', 'target1', 0o666], ['l', 'symlink2', 'target2', 0o666],
    ['l', 'symlink3', `${root}/file1`, 0o666], ['l', 'symlink4', `${root}/symlink3`, 0o666],
    ['l', 'dirSymlink', `${root}/dir1`, 0o740],
  ];
  for (const [type, rel, contents, mode] of files) {
    const p = path.join(root, rel);
    if (type === 'd') fs.mkdirSync(p, { mode, recursive: true });
    else if (type === 'f') fs.writeFileSync(p, contents, { mode });
    else fs.symlinkSync(contents, p);
    if (type !== 'l') fs.utimesSync(p, now, now);
  }
}

function mutateSampleDir(root: string): void {
  const later = new Date(Date.now() + 1000);
  const p = (rel: string) => path.join(root, rel);
  fs.rmSync(p('file1'));
  fs.rmSync(p('dir1'), { recursive: true });
  fs.rmSync(p('symlink1'));
  fs.writeFileSync(p('file2'), 'fileNN\n', { mode: 0o777 });
  fs.rmSync(p('file3'));
  fs.writeFileSync(p('file3'), 'fileMM\n', { mode: 0o404 });
  fs.utimesSync(p('file4'), later, later);
  fs.rmSync(p('file5'));
  fs.mkdirSync(p('file5'), { mode: 0o666 });
  fs.writeFileSync(p('filenew'), 'filenew\n', { mode: 0o777 });
  fs.mkdirSync(p('dirnew'), { mode: 0o766 });
  fs.symlinkSync('targetnew', p('symlinknew'));
  fs.rmSync(p('symlink2'));
  fs.symlinkSync('target2change', p('symlink2'));
  fs.rmSync(p('dir2'), { recursive: true });
  fs.writeFileSync(p('dir2'), 'dir2\n', { mode: 0o777 });
  fs.utimesSync(p('dir3'), later, later);
}

test('changesDirs: identical cp -a copies report nothing (moby TestChangesDirsEmpty)', (t) => {
  const d = tmp(t);
  fs.mkdirSync(`${d}/src`);
  createSampleDir(`${d}/src`);
  execFileSync('cp', ['-a', `${d}/src`, `${d}/dst`]);
  t.deepEqual(lines(changesDirs(`${d}/dst`, `${d}/src`)), []);
});

test('changesDirs: moby TestChangesDirsMutated list', (t) => {
  const d = tmp(t);
  fs.mkdirSync(`${d}/src`);
  createSampleDir(`${d}/src`);
  execFileSync('cp', ['-a', `${d}/src`, `${d}/dst`]);
  mutateSampleDir(`${d}/dst`);
  t.deepEqual(lines(changesDirs(`${d}/dst`, `${d}/src`)), [
    'D /dir1', 'C /dir2', 'A /dirnew', 'D /file1', 'C /file2', 'C /file3', 'C /file4', 'C /file5',
    'A /filenew', 'D /symlink1', 'C /symlink2', 'A /symlinknew',
  ]);
});

test('changesDirs: a null old dir reports every entry as Add, root excluded', (t) => {
  const d = tmp(t);
  fs.mkdirSync(`${d}/a/b`, { recursive: true });
  fs.writeFileSync(`${d}/a/b/f`, 'x');
  fs.symlinkSync('nowhere', `${d}/l`);
  t.deepEqual(lines(changesDirs(d, null)), ['A /a', 'A /a/b', 'A /a/b/f', 'A /l']);
});

function pair(t: ExecutionContext): { old: string; cur: string } {
  const d = tmp(t);
  fs.mkdirSync(`${d}/old`);
  fs.mkdirSync(`${d}/new`);
  return { old: `${d}/old`, cur: `${d}/new` };
}

/** The same regular file in both trees with an exact mtime. */
function sameFile(old: string, cur: string, rel: string, data: string, mtimeNs: bigint, mode = 0o644): void {
  for (const root of [old, cur]) {
    fs.writeFileSync(`${root}/${rel}`, data);
    fs.chmodSync(`${root}/${rel}`, mode);
    lutimensNs(`${root}/${rel}`, mtimeNs);
  }
}

test('changesDirs: a mode change is a Modify of the file alone (the parent dir gets one too)', (t) => {
  const { old, cur } = pair(t);
  for (const r of [old, cur]) fs.mkdirSync(`${r}/d`);
  sameFile(old, cur, 'd/f', 'x', 100n * S);
  sameFile(old, cur, 'g', 'x', 100n * S);
  fs.chmodSync(`${cur}/d/f`, 0o4755);
  t.deepEqual(lines(changesDirs(cur, old)), ['C /d', 'C /d/f']);
});

test('changesDirs: a same-size rewrite is seen only through mtime', (t) => {
  const { old, cur } = pair(t);
  sameFile(old, cur, 'f', 'abcd', 100n * S + 5n);
  fs.writeFileSync(`${cur}/f`, 'wxyz');
  lutimensNs(`${cur}/f`, 101n * S + 5n);
  t.deepEqual(lines(changesDirs(cur, old)), ['C /f']);
  lutimensNs(`${cur}/f`, 100n * S + 5n); // mtime put back: moby cannot see it, neither do we
  t.deepEqual(lines(changesDirs(cur, old)), []);
});

test('changesDirs: mtimes are equal when seconds match and ns match or either ns is 0', (t) => {
  const { old, cur } = pair(t);
  const cases: Array<[string, bigint, bigint, boolean]> = [
    ['zero-vs-ns', 100n * S, 100n * S + 500n, false],
    ['ns-vs-zero', 100n * S + 7n, 100n * S, false],
    ['same-ns', 100n * S + 7n, 100n * S + 7n, false],
    ['ns-vs-other-ns', 100n * S + 7n, 100n * S + 8n, true],
    ['zero-vs-next-second', 100n * S, 101n * S, true],
    ['ns-vs-zero-next-second', 100n * S + 7n, 101n * S, true],
  ];
  for (const [name, o, n] of cases) {
    fs.writeFileSync(`${old}/${name}`, 'x');
    fs.writeFileSync(`${cur}/${name}`, 'x');
    lutimensNs(`${old}/${name}`, o);
    lutimensNs(`${cur}/${name}`, n);
  }
  t.deepEqual(lines(changesDirs(cur, old)), cases.filter((c) => c[3]).map((c) => `C /${c[0]}`).sort());
});

asRoot()('changesDirs: a security.capability change on an otherwise identical file is a Modify', (t) => {
  const { old, cur } = pair(t);
  sameFile(old, cur, 'ping', 'elf', 100n * S);
  sameFile(old, cur, 'same', 'elf', 100n * S);
  sameFile(old, cur, 'removed', 'elf', 100n * S);
  lsetxattr(`${cur}/ping`, 'security.capability', capabilityV2(1 << 13, true)); // cap_net_raw
  for (const r of [old, cur]) lsetxattr(`${r}/same`, 'security.capability', capabilityV2(1 << 10, true));
  lsetxattr(`${old}/removed`, 'security.capability', capabilityV2(1 << 10, false));
  t.deepEqual(lines(changesDirs(cur, old)), ['C /ping', 'C /removed']);
});

asRoot()('changesDirs: chown of a file and of a dir are Modifies', (t) => {
  const { old, cur } = pair(t);
  for (const r of [old, cur]) fs.mkdirSync(`${r}/d`);
  sameFile(old, cur, 'f', 'x', 100n * S);
  fs.lchownSync(`${cur}/f`, 0, 1000);
  fs.lchownSync(`${cur}/d`, 1000, 0);
  t.deepEqual(lines(changesDirs(cur, old)), ['C /d', 'C /f']);
});

test('changesDirs: hard-linked trees are pruned by inode; a broken link is still seen', (t) => {
  const d = tmp(t);
  fs.mkdirSync(`${d}/old/sub`, { recursive: true });
  for (let i = 0; i < 5; i++) fs.writeFileSync(`${d}/old/sub/f${i}`, `file ${i}`);
  execFileSync('cp', ['-al', `${d}/old`, `${d}/new`]);
  t.is(fs.statSync(`${d}/new/sub/f0`).ino, fs.statSync(`${d}/old/sub/f0`).ino);
  t.deepEqual(lines(changesDirs(`${d}/new`, `${d}/old`)), []);
  // break one link: a separate inode with the same bytes but a later mtime
  fs.rmSync(`${d}/new/sub/f3`);
  fs.writeFileSync(`${d}/new/sub/f3`, 'file 3');
  lutimensNs(`${d}/new/sub/f3`, fs.statSync(`${d}/old/sub/f3`, { bigint: true }).mtimeNs + 1n);
  t.deepEqual(lines(changesDirs(`${d}/new`, `${d}/old`)), ['C /sub', 'C /sub/f3']);
});

test('changesDirs: symlink retarget is a Modify when size or mtime moves, invisible otherwise', (t) => {
  const { old, cur } = pair(t);
  for (const r of [old, cur]) {
    fs.symlinkSync('target-a', `${r}/longer`);
    fs.symlinkSync('target-a', `${r}/samelen`);
    fs.symlinkSync('target-a', `${r}/touched`);
    for (const n of ['longer', 'samelen', 'touched']) lutimensNs(`${r}/${n}`, 100n * S + 1n);
  }
  for (const [n, target, mtime] of [['longer', 'target-abc', 100n * S + 1n], ['samelen', 'target-b', 100n * S + 1n], ['touched', 'target-b', 102n * S]] as const) {
    fs.rmSync(`${cur}/${n}`);
    fs.symlinkSync(target, `${cur}/${n}`);
    lutimensNs(`${cur}/${n}`, mtime);
  }
  // same length and same mtime: moby compares lstat only, the target text is never read
  t.deepEqual(lines(changesDirs(cur, old)), ['C /longer', 'C /touched']);
});

test('changesDirs: dir replaced by file is one Modify; file replaced by dir adds its children', (t) => {
  const { old, cur } = pair(t);
  fs.mkdirSync(`${old}/d/deep`, { recursive: true });
  fs.writeFileSync(`${old}/d/deep/x`, 'x');
  fs.writeFileSync(`${cur}/d`, 'now a file');
  fs.writeFileSync(`${old}/f`, 'a file');
  fs.mkdirSync(`${cur}/f/sub`, { recursive: true });
  fs.writeFileSync(`${cur}/f/sub/y`, 'y');
  t.deepEqual(lines(changesDirs(cur, old)), ['C /d', 'C /f', 'A /f/sub', 'A /f/sub/y']);
});

test('changesDirs: a deleted subtree reports its top only; unchanged parents of changes get a Modify', (t) => {
  const { old, cur } = pair(t);
  for (const r of [old, cur]) {
    fs.mkdirSync(`${r}/a/b/c`, { recursive: true });
    fs.mkdirSync(`${r}/gone/x/y`, { recursive: true });
    fs.writeFileSync(`${r}/gone/x/y/z`, 'z');
  }
  fs.rmSync(`${cur}/gone`, { recursive: true });
  fs.writeFileSync(`${cur}/a/b/c/new`, 'n');
  t.deepEqual(lines(changesDirs(cur, old)), ['C /a', 'C /a/b', 'C /a/b/c', 'A /a/b/c/new', 'D /gone']);
});

test('changesDirs: non-UTF-8 and odd names come back as raw byte strings', (t) => {
  const { old, cur } = pair(t);
  const bad = 'bad\xff\xfe';
  fs.mkdirSync(fsPath(`${old}/${bad}`));
  fs.mkdirSync(fsPath(`${cur}/${bad}`));
  fs.writeFileSync(fsPath(`${cur}/${bad}/caf\xc3\xa9`), 'x');
  fs.writeFileSync(fsPath(`${old}/sp ace\n`), 'x');
  const changes = changesDirs(cur, old);
  t.deepEqual(changes, [
    { path: `/${bad}`, kind: ChangeKind.Modify },
    { path: `/${bad}/caf\xc3\xa9`, kind: ChangeKind.Add },
    { path: '/sp ace\n', kind: ChangeKind.Delete },
  ]);
  // a UTF-8 directory name given by the user is taken through rawPath()
  const utf = path.join(cur, 'ünï');
  fs.mkdirSync(utf);
  fs.writeFileSync(`${utf}/f`, 'f');
  t.deepEqual(lines(changesDirs(utf, null)), ['A /f']);
});

asRoot()('changesDirs: block devices and sockets compare like dirs (moby S_IFDIR-mask quirk)', (t) => {
  const { old, cur } = pair(t);
  for (const r of [old, cur]) {
    mknod(`${r}/blk`, S_IFBLK | 0o600, makedev(7, 0));
    mknod(`${r}/chr`, S_IFCHR | 0o600, makedev(1, 3));
    lutimensNs(`${r}/blk`, (r === old ? 100n : 200n) * S);
    lutimensNs(`${r}/chr`, (r === old ? 100n : 200n) * S);
    fs.mkdirSync(`${r}/d`);
    fs.writeFileSync(`${r}/d/inner`, 'i');
  }
  // a socket inode in each tree; its mtime differs between the two
  for (const r of [old, cur]) {
    mknod(`${r}/sock`, S_IFSOCK | 0o600, 0);
    lutimensNs(`${r}/sock`, (r === old ? 100n : 300n) * S);
  }
  // block device replacing a dir: moby's isDir() is also the mask test, so the old entries are Deleted
  fs.rmSync(`${cur}/d`, { recursive: true });
  mknod(`${cur}/d`, S_IFBLK | 0o600, makedev(7, 1));
  t.deepEqual(lines(changesDirs(cur, old)), ['C /chr', 'C /d', 'D /d/inner']);
  // rdev still counts for block devices
  fs.rmSync(`${cur}/blk`);
  mknod(`${cur}/blk`, S_IFBLK | 0o600, makedev(7, 2));
  t.deepEqual(lines(changesDirs(cur, old)), ['C /blk', 'C /chr', 'C /d', 'D /d/inner']);
});

// ---- changesFromDiffDir: hand-built stacks ----------------------------------

test('changesFromDiffDir aufs: moby TestChangesWithChanges', (t) => {
  const d = tmp(t);
  const layer = `${d}/layer`;
  const rw = `${d}/rw`;
  fs.mkdirSync(layer);
  createSampleDir(layer);
  fs.mkdirSync(`${layer}/dir1/subfolder`, { mode: 0o740 });
  fs.mkdirSync(`${rw}/dir1/subfolder`, { recursive: true, mode: 0o740 });
  fs.chmodSync(`${rw}/dir1`, fs.statSync(`${layer}/dir1`).mode & 0o7777);
  fs.chmodSync(`${rw}/dir1/subfolder`, fs.statSync(`${layer}/dir1/subfolder`).mode & 0o7777);
  fs.writeFileSync(`${rw}/dir1/.wh.file1-2`, '', { mode: 0o600 });
  fs.writeFileSync(`${rw}/dir1/file1-1`, Buffer.from([0]), { mode: 0o1444 });
  fs.writeFileSync(`${rw}/dir1/subfolder/newFile`, '', { mode: 0o740 });
  t.deepEqual(lines(changesFromDiffDir(rw, [layer], 'aufs')), [
    'C /dir1', 'C /dir1/file1-1', 'D /dir1/file1-2', 'C /dir1/subfolder', 'A /dir1/subfolder/newFile',
  ]);
});

test('changesFromDiffDir aufs: opaque dirs, whiteouts through lowers, aufs internals never reported', (t) => {
  const d = tmp(t);
  const [l2, l1, up] = [`${d}/l2`, `${d}/l1`, `${d}/up`];
  // l2 (bottom): /o/{x,y}, /w, /gone
  fs.mkdirSync(`${l2}/o`, { recursive: true });
  for (const f of ['o/x', 'o/y', 'w', 'gone']) fs.writeFileSync(`${l2}/${f}`, f);
  // l1: whites out /gone, adds /o/z; carries aufs internals at its root
  fs.mkdirSync(`${l1}/o`, { recursive: true });
  fs.chmodSync(`${l1}/o`, fs.statSync(`${l2}/o`).mode & 0o7777);
  fs.writeFileSync(`${l1}/o/z`, 'z');
  fs.writeFileSync(`${l1}/.wh.gone`, '');
  fs.mkdirSync(`${l1}/.wh..wh.plnk`);
  fs.mkdirSync(`${l1}/.wh..wh.orph`);
  // upper: /o opaque with only /o/y (new), whiteout of /w, whiteout of /gone (already gone), internals
  fs.mkdirSync(`${up}/o`, { recursive: true });
  fs.chmodSync(`${up}/o`, fs.statSync(`${l2}/o`).mode & 0o7777);
  fs.writeFileSync(`${up}/o/.wh..wh..opq`, '');
  fs.writeFileSync(`${up}/o/y`, 'new y');
  fs.writeFileSync(`${up}/.wh.w`, '');
  fs.writeFileSync(`${up}/.wh.gone`, '');
  fs.mkdirSync(`${up}/.wh..wh.plnk`);
  fs.writeFileSync(`${up}/.wh..wh.aufs`, '');
  t.deepEqual(lines(changesFromDiffDir(up, [l1, l2], 'aufs')), ['C /o', 'D /o/x', 'C /o/y', 'D /o/z', 'D /w']);
  t.deepEqual(lines(changesFromDiffDir(l1, [l2], 'aufs')), ['D /gone', 'C /o', 'A /o/z']);
});

asRoot()('changesFromDiffDir overlay: char 0/0 whiteouts, opaque xattr, real char devices', (t) => {
  const d = tmp(t);
  const [low, up] = [`${d}/low`, `${d}/up`];
  fs.mkdirSync(`${low}/o`, { recursive: true });
  fs.mkdirSync(`${low}/keep`, { recursive: true });
  for (const f of ['o/x', 'keep/k', 'w']) fs.writeFileSync(`${low}/${f}`, f);
  fs.mkdirSync(`${up}/o`, { recursive: true });
  fs.mkdirSync(`${up}/keep`, { recursive: true });
  for (const x of ['o', 'keep']) fs.chmodSync(`${up}/${x}`, fs.statSync(`${low}/${x}`).mode & 0o7777);
  lsetxattr(`${up}/o`, OVERLAY_OPAQUE_XATTR, Buffer.from('y'));
  fs.writeFileSync(`${up}/o/new`, 'n');
  mknod(`${up}/w`, S_IFCHR | 0o600, 0); // whiteout of /w
  mknod(`${up}/nothing`, S_IFCHR | 0o600, 0); // whiteout of a name no lower has: no change
  mknod(`${up}/keep/null`, S_IFCHR | 0o666, makedev(1, 3)); // a real device is content
  t.deepEqual(lines(changesFromDiffDir(up, [low], 'overlay')), ['C /keep', 'A /keep/null', 'C /o', 'A /o/new', 'D /o/x', 'D /w']);
  // the same dir read as aufs form: the char devices are plain entries and the xattr means nothing
  t.deepEqual(lines(changesFromDiffDir(up, [low], 'aufs')), ['C /keep', 'A /keep/null', 'A /nothing', 'C /o', 'A /o/new', 'C /w']);
});

asRoot()('changesFromDiffDir fuse-overlayfs: .wh. entries of any type, char 0/0, its own .wh..opq device, the marker file and three opaque xattrs', (t) => {
  const d = tmp(t);
  const [low, up] = [`${d}/low`, `${d}/up`];
  for (const x of ['m', 'u', 'f', 'x', 'plain']) fs.mkdirSync(`${low}/${x}`, { recursive: true });
  for (const f of ['m/a', 'u/a', 'f/a', 'x/a', 'plain/a', 'plain/.opq', 'w1', 'w2', '.opq']) fs.writeFileSync(`${low}/${f}`, f);
  for (const x of ['m', 'u', 'f', 'x', 'plain']) {
    fs.mkdirSync(`${up}/${x}`, { recursive: true });
    fs.chmodSync(`${up}/${x}`, fs.statSync(`${low}/${x}`).mode & 0o7777);
  }
  fs.writeFileSync(`${up}/m/.wh..wh..opq`, ''); // marker file
  lsetxattr(`${up}/u`, 'user.overlay.opaque', Buffer.from('y'));
  lsetxattr(`${up}/f`, 'user.fuseoverlayfs.opaque', Buffer.from('y'));
  lsetxattr(`${up}/x`, OVERLAY_OPAQUE_XATTR, Buffer.from('y'));
  // what fuse-overlayfs leaves in a dir it recreates: not a marker, it hides `.opq` only
  mknod(`${up}/plain/.wh..opq`, S_IFCHR | 0o600, 0);
  mknod(`${up}/w1`, S_IFCHR | 0o600, 0); // overlay whiteout
  mknod(`${up}/.wh.w2`, S_IFCHR | 0o600, makedev(1, 3)); // a .wh. name hides whatever its type
  t.deepEqual(lines(changesFromDiffDir(up, [low], 'fuse-overlayfs')), [
    'C /f', 'D /f/a', 'C /m', 'D /m/a', 'C /plain', 'D /plain/.opq', 'C /u', 'D /u/a', 'D /w1', 'D /w2', 'C /x', 'D /x/a',
  ]);
  // the overlay reading sees only the trusted xattr and the 0/0 devices
  t.deepEqual(lines(changesFromDiffDir(up, [low], 'overlay')), [
    'A /.wh.w2', 'C /m', 'A /m/.wh..wh..opq', 'D /w1', 'C /x', 'D /x/a',
  ]);
});

// ---- changesFromDiffDir vs changesDirs on kernel overlay stacks -------------

const SEEDS = Array.from({ length: 30 }, (_, i) => 1000 + i * 7919);

function listDiff(expected: Change[], actual: Change[]): string {
  const e = new Set(lines(expected));
  const a = new Set(lines(actual));
  return [...[...e].filter((l) => !a.has(l)).map((l) => `  missing  ${l}`), ...[...a].filter((l) => !e.has(l)).map((l) => `  extra    ${l}`)].join('\n');
}

function describe(seed: number, layer: StackLayer, format: string, actual: Change[]): string {
  return `seed ${seed}, layer ${layer.index}, ${format} form (re-run: withRandomStack(${seed}, ...))\n` +
    `ops:\n  ${layer.ops.join('\n  ')}\nexpected (changesDirs of the kernel views) vs changesFromDiffDir:\n${listDiff(layer.expected, actual)}`;
}

const overlayReady = isRoot && overlayListed();
const withOverlay = () => when(overlayReady, 'root and overlayfs in /proc/filesystems', { serial: true });

withOverlay()('changesFromDiffDir equals changesDirs of kernel overlay views: 30 seeded stacks, overlay and aufs forms', (t) => {
  let layers = 0;
  let changes = 0;
  let deletes = 0;
  for (const seed of SEEDS) {
    withRandomStack(seed, (layer) => {
      layers++;
      changes += layer.expected.length;
      deletes += layer.expected.filter((c) => c.kind === ChangeKind.Delete).length;
      const ov = changesFromDiffDir(layer.diff, layer.lowers, 'overlay');
      if (!t.deepEqual(ov, layer.expected, describe(seed, layer, 'overlay', ov))) throw new Error(`seed ${seed} failed`);
      const au = changesFromDiffDir(layer.aufsDiff, layer.aufsLowers, 'aufs');
      if (!t.deepEqual(au, layer.expected, describe(seed, layer, 'aufs', au))) throw new Error(`seed ${seed} failed`);
    });
  }
  t.log(`${layers} layers, ${changes} changes (${deletes} deletes) compared`);
  // the stacks must actually exercise the walkers
  t.true(deletes > 20 && changes > 300, `too few changes generated: ${changes} / ${deletes} deletes`);
});

const fuseReady = isRoot && hasTool('fuse-overlayfs') && fs.existsSync('/dev/fuse');

when(fuseReady, 'root, fuse-overlayfs (apt-get install fuse-overlayfs) and /dev/fuse', { serial: true })(
  'changesFromDiffDir fuse-overlayfs equals changesDirs of fuse-overlayfs views: 10 seeded stacks written through fuse-overlayfs itself', (t) => {
    let layers = 0;
    let changes = 0;
    let deletes = 0;
    let markers = 0;
    let overlayWrong = 0;
    for (const seed of SEEDS.slice(0, 10)) {
      withRandomStack(seed, (layer) => {
        layers++;
        changes += layer.expected.length;
        deletes += layer.expected.filter((c) => c.kind === ChangeKind.Delete).length;
        markers += countOpaqueMarkers(layer.diff);
        const fo = changesFromDiffDir(layer.diff, layer.lowers, 'fuse-overlayfs');
        if (!t.deepEqual(fo, layer.expected, describe(seed, layer, 'fuse-overlayfs', fo))) throw new Error(`seed ${seed} failed`);
        if (!isDeepStrictEqual(changesFromDiffDir(layer.diff, layer.lowers, 'overlay'), layer.expected)) overlayWrong++;
      }, 'fuse-overlayfs');
    }
    t.log(`${layers} layers, ${changes} changes (${deletes} deletes), ${markers} fuse-overlayfs opaque markers compared; the kernel-overlay reading is wrong on ${overlayWrong}`);
    // the format matters: read as kernel overlay form, its markers show up as changes
    t.true(overlayWrong > 0);
    t.true(deletes > 5 && changes > 100, `too few changes generated: ${changes} / ${deletes} deletes`);
    // its own markers must be there, or the case is not exercised
    t.true(markers > 0, 'fuse-overlayfs wrote no .wh..wh..opq / .wh..opq markers');
  });

function countOpaqueMarkers(dirRaw: string): number {
  let n = 0;
  for (const e of fs.readdirSync(fsPath(dirRaw), { withFileTypes: true, encoding: 'buffer' })) {
    const name = e.name.toString('latin1');
    if (name === '.wh..wh..opq' || name === '.wh..opq') n++;
    if (e.isDirectory()) n += countOpaqueMarkers(`${dirRaw}/${name}`);
  }
  return n;
}

withOverlay()('the randomized comparison catches a walker that misreads whiteouts', (t) => {
  let withDeletes = 0;
  let caught = 0;
  for (const seed of SEEDS.slice(0, 10)) {
    withRandomStack(seed, (layer) => {
      // wrong variants: overlay whiteouts read as plain char devices, aufs .wh. files read as plain files
      const wrong = [
        changesFromDiffDir(layer.diff, layer.lowers, 'aufs'),
        changesFromDiffDir(layer.aufsDiff, layer.aufsLowers, 'overlay'),
      ];
      if (!layer.expected.some((c) => c.kind === ChangeKind.Delete)) return;
      withDeletes++;
      for (const w of wrong) {
        if (JSON.stringify(w) !== JSON.stringify(layer.expected)) caught++;
        else t.fail(`seed ${seed} layer ${layer.index}: a wrong walker agreed with changesDirs`);
      }
    });
  }
  t.true(withDeletes >= 5, `only ${withDeletes} layers with deletes`);
  t.is(caught, 2 * withDeletes);
});

// ---- changesSize ------------------------------------------------------------

test('changesSize: hardlinks once, dirs and deletes excluded, symlinks by target length', (t) => {
  const d = tmp(t);
  fs.mkdirSync(`${d}/dir`);
  fs.writeFileSync(`${d}/a`, Buffer.alloc(1000));
  fs.linkSync(`${d}/a`, `${d}/dir/a-link`);
  fs.writeFileSync(`${d}/b`, Buffer.alloc(24));
  fs.symlinkSync('twelve-bytes', `${d}/l`);
  fs.symlinkSync('/does/not/matter', `${d}/dir-link`); // a symlink is never followed, even to a dir
  const changes = changesDirs(d, null);
  t.deepEqual(lines(changes), ['A /a', 'A /b', 'A /dir', 'A /dir-link', 'A /dir/a-link', 'A /l']);
  t.is(changesSize(d, changes), 1000 + 24 + 12 + 16);
  t.is(changesSize(d, []), 0);
  t.is(changesSize(d, [{ path: '/a', kind: ChangeKind.Delete }, { path: '/gone', kind: ChangeKind.Add }]), 0);
  // moby's TestChangesSize passes paths without a leading slash
  t.is(changesSize(d, [{ path: 'b', kind: ChangeKind.Add }, { path: 'a', kind: ChangeKind.Modify }]), 1024);
});

test('directorySize counts a tree deeper than PATH_MAX (overlay2 applyDiff sizes its diff with it)', async (t) => {
  const { directorySize } = await import('../archive/tree-size.ts');
  const { applyLayer } = await import('../archive/apply.ts');
  const { removeTree } = await import('../archive/remove-tree.ts');
  const { header, rawTar } = await import('./helpers/tar.ts');
  const top = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-deep-size-'));
  t.teardown(() => removeTree(top));
  const deep = Array.from({ length: 20 }, (_, i) => String(i).padStart(250, 'd')).join('/');
  await applyLayer(rawTar([{ ...header(`${deep}/f`, { size: 5000 }), body: Buffer.alloc(5000, 0x78) }, { ...header('g', { size: 7 }), body: Buffer.alloc(7) }]), top, { whiteouts: 'none' });
  t.is(directorySize(top), 5007);
});
