// The aufs driver (drivers/aufs/aufs.ts) through the FUSE union: moby's
// layout and lifecycle, the put-time conversion back to pure aufs form, one
// union shared by two strata processes, and ports of moby's aufs_test.go
// (126 stacked layers; a 2013-era layer with aufs's own .wh..wh.* entries and
// a hard link through .wh..wh.plnk, built here, not read from anywhere).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ExecutionContext } from 'ava';
import { changesFromDiffDir } from '../archive/changes.ts';
import { changeLetter, type Change } from '../archive/types.ts';
import { AufsDriver, init } from '../drivers/aufs/aufs.ts';
import { FUSE_WORK_DIR } from '../drivers/aufs/mount-plan.ts';
import { isAlive } from '../drivers/holder.ts';
import { fuseHelper } from '../drivers/mounter.ts';
import { isMountPoint, mountAt, mountsUnder } from '../sys/mountinfo.ts';
import * as sys from '../sys/syscalls.ts';
import { repo } from './helpers/line-child.ts';
import { hasTool, isRoot, when } from './helpers/require.ts';
import { collect } from './helpers/tar.ts';

const fuseMissing = !isRoot ? 'root' : !fs.existsSync('/dev/fuse') || !hasTool('fuse-overlayfs') || !hasTool('fusermount3')
  ? '/dev/fuse, fuse-overlayfs and fusermount3 (the FUSE union of aufs layers)' : null;
const fuseTest = when(fuseMissing === null, fuseMissing ?? '', { serial: true });

/** A fresh driver home, its mounts and dirs removed at the end (also on failure). */
/** These tests are of the FUSE union: it is chosen even on a kernel with aufs. */
const FUSE = 'aufs.union=fuse-overlayfs';

async function scratch(t: ExecutionContext): Promise<{ home: string; d: AufsDriver }> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-aufs-'));
  const home = path.join(tmp, 'aufs');
  const d = (await init(home, [FUSE])) as AufsDriver;
  t.teardown(async () => {
    await d.cleanup();
    for (const m of mountsUnder(tmp).reverse()) sys.umount2(m.mountPoint, sys.MNT_DETACH);
    fs.rmSync(tmp, { recursive: true, force: true });
  });
  return { home, d };
}

const lines = (cs: Change[]) => cs.map((c) => `${changeLetter[c.kind]} ${c.path}`);
const tarNames = (tar: Buffer) => execFileSync('tar', ['-tvf', '-'], { input: tar }).toString().trim().split('\n')
  .map((l) => l.replace(/^\S+ \S+ +\d+ \S+ \S+ /, ''));

/** Every entry of `dir` that is not aufs form: char devices, union xattrs. */
function nonAufsEntries(dir: string): string[] {
  const bad: string[] = [];
  for (const rel of fs.readdirSync(dir, { recursive: true }) as string[]) {
    const p = path.join(dir, rel);
    const st = fs.lstatSync(p);
    if (st.isCharacterDevice()) bad.push(`${rel}: char device ${st.rdev}`);
    if (!st.isSymbolicLink()) for (const x of sys.llistxattr(p)) if (/overlay|fuseoverlayfs/.test(x)) bad.push(`${rel}: xattr ${x}`);
  }
  for (const x of sys.llistxattr(dir)) if (/overlay|fuseoverlayfs/.test(x)) bad.push(`.: xattr ${x}`);
  return bad;
}

fuseTest('aufs: moby\'s layout: layers/ lists parents nearest first, diff/ and mnt/ per layer, status, exists, remove with -removing renames', async (t) => {
  const { home, d } = await scratch(t);
  t.deepEqual(fs.readdirSync(home).sort(), ['diff', 'layers', 'mnt']);
  await d.create('1', null);
  await d.create('2', '1');
  await d.createReadWrite('3', '2');
  t.is(fs.readFileSync(path.join(home, 'layers/1'), 'utf8'), '');
  t.is(fs.readFileSync(path.join(home, 'layers/3'), 'utf8'), '2\n1\n');
  for (const s of ['diff', 'mnt']) t.deepEqual(fs.readdirSync(path.join(home, s)).sort(), ['1', '2', '3']);
  t.is(await d.get('1'), path.join(home, 'diff/1'), 'a base layer is its diff dir (moby TestGetWithoutParent)');
  await d.put('1');
  const status = Object.fromEntries(d.status());
  t.is(status['Root Dir'], home);
  t.is(status.Dirs, '3');
  t.is(status['Dirperm1 Supported'], 'false');
  t.regex(status.Union, /^fuse-overlayfs/);
  t.deepEqual(d.layers(), [{ id: '1', parent: null }, { id: '2', parent: '1' }, { id: '3', parent: '2' }]);
  await t.throwsAsync(d.create('4', 'missing'), { message: /layer missing does not exist/ }); // moby TestCreateWithInvalidParent
  await t.throwsAsync(d.create('4', null, { storageOpt: { foo: 'x' } }), { message: '--storage-opt is not supported for aufs' });
  await t.throwsAsync(init(home, ['aufs.union=unionfs']), { message: 'aufs: aufs.union must be aufs or fuse-overlayfs, not "unionfs"' });
  await t.throwsAsync(init(home, ['aufs.nope=1']), { message: 'aufs: unknown option aufs.nope' });
  if (!fs.readFileSync('/proc/filesystems', 'utf8').includes('aufs')) {
    await t.throwsAsync(init(home, ['aufs.union=aufs']), { message: /AUFS was not found in \/proc\/filesystems/ });
  }
  t.false(d.exists('4'));
  // moby TestRemoveMountedDir: remove unmounts first
  const mnt = await d.get('3');
  fs.writeFileSync(path.join(mnt, 'f'), 'x');
  await d.remove('3');
  t.false(isMountPoint(mnt));
  t.false(d.exists('3'));
  t.false(fs.existsSync(path.join(home, 'diff/3')));
  t.false(fs.existsSync(path.join(home, FUSE_WORK_DIR)), 'no FUSE workdir left');
  // moby TestInitStaleCleanup: a killed Remove's -removing dirs go at the next init
  for (const s of ['diff', 'mnt']) fs.mkdirSync(path.join(home, s, '2-removing'));
  await init(home, [FUSE], { mode: 'manage' });
  for (const s of ['diff', 'mnt']) t.false(fs.existsSync(path.join(home, s, '2-removing')));
  t.true(d.exists('2'));
});

const EXPECTED_CHANGES = ['C /again', 'C /d', 'D /d/a', 'A /d/new', 'D /d/sub', 'A /fresh', 'A /fresh/x', 'C /w', 'C /w/bar', 'D /w/foo'];

fuseTest('aufs: a read-write layer written through the FUSE union holds only aufs-form whiteouts after put; native = naive', async (t) => {
  const { home, d } = await scratch(t);
  await d.create('base', null);
  const b = await d.get('base');
  fs.mkdirSync(path.join(b, 'w'));
  fs.mkdirSync(path.join(b, 'd/sub'), { recursive: true });
  for (const f of ['w/foo', 'w/bar', 'd/a', 'd/sub/c', 'top', 'again']) fs.writeFileSync(path.join(b, f), f);
  await d.put('base');
  await d.createReadWrite('rw', 'base');
  const m = await d.get('rw');
  t.is(mountAt(m)?.fstype, 'fuse.fuse-overlayfs');
  fs.rmSync(path.join(m, 'w/foo'));                                       // a deleted file
  fs.rmSync(path.join(m, 'd'), { recursive: true });                      // a dir replaced: opaque
  fs.mkdirSync(path.join(m, 'd'));
  fs.writeFileSync(path.join(m, 'd/new'), 'new');
  fs.mkdirSync(path.join(m, 'fresh'));                                    // a new dir: not opaque in aufs
  fs.writeFileSync(path.join(m, 'fresh/x'), 'x');
  fs.rmSync(path.join(m, 'again'));                                       // deleted, then created again
  fs.writeFileSync(path.join(m, 'again'), 'back');
  fs.appendFileSync(path.join(m, 'w/bar'), '+');                          // a copy-up
  t.true(fs.existsSync(path.join(home, FUSE_WORK_DIR, 'rw')), 'the workdir is beside mnt/ while mounted');
  await d.put('rw');
  t.false(isMountPoint(m));
  t.true(fs.existsSync(m), 'mnt/<id> stays, as moby keeps it');
  t.false(fs.existsSync(path.join(home, FUSE_WORK_DIR)), 'the workdir is gone after the last put');
  const diff = path.join(home, 'diff/rw');
  t.deepEqual(nonAufsEntries(diff), []);
  const names = (fs.readdirSync(diff, { recursive: true }) as string[]).sort();
  t.deepEqual(names, ['again', 'd', 'd/.wh..wh..opq', 'd/new', 'fresh', 'fresh/x', 'w', 'w/.wh.foo', 'w/bar']);
  const wh = fs.lstatSync(path.join(diff, 'w/.wh.foo'));
  t.true(wh.isFile());
  t.is(wh.size, 0);
  t.is(wh.mode & 0o7777, 0o444, 'aufs whiteouts are empty read-only files');
  t.is(fs.lstatSync(path.join(diff, 'd/.wh..wh..opq')).mode & 0o7777, 0o444);
  // what the aufs walk reads from it is what the union showed
  t.deepEqual(lines(await d.changes('rw', 'base')), EXPECTED_CHANGES);
  const naive = (await init(home, [FUSE, 'aufs.force_naive_diff=true'], { mode: 'manage' })) as AufsDriver;
  t.teardown(() => naive.cleanup());
  t.deepEqual(lines(await d.changes('rw', 'base')), lines(await naive.changes('rw', 'base')));
  t.is(await d.diffSize('rw', 'base'), await naive.diffSize('rw', 'base'));
  t.deepEqual(lines(changesFromDiffDir(diff, [path.join(home, 'diff/base')], 'aufs')), lines(await naive.changes('rw', 'base')));
  // the diff tar: aufs form, nothing of the union's
  const tar = tarNames(await collect(d.diff('rw', 'base')));
  t.true(tar.includes('w/.wh.foo'));
  t.true(tar.includes('d/.wh..wh..opq'));
  t.false(tar.some((n) => n.includes('.wh..opq') && !n.includes('.wh..wh..opq')));
  // mounted again, the same view
  const again = await d.get('rw');
  t.deepEqual(fs.readdirSync(again).sort(), ['again', 'd', 'fresh', 'top', 'w']);
  t.deepEqual(fs.readdirSync(path.join(again, 'd')), ['new']);
  t.deepEqual(fs.readdirSync(path.join(again, 'w')), ['bar']);
  t.is(fs.readFileSync(path.join(again, 'again'), 'utf8'), 'back');
  await d.put('rw');
  t.deepEqual(nonAufsEntries(diff), []);
});

/** A second strata process on the same home: get() `id`, print the mount and its helper, exit without put (the ref is persisted). */
function otherProcess(home: string, script: string): string {
  const code = `const { init } = await import(${JSON.stringify(path.join(repo, 'drivers/aufs/aufs.ts'))});
const m = await import(${JSON.stringify(path.join(repo, 'drivers/mounter.ts'))});
const d = await init(${JSON.stringify(home)}, [${JSON.stringify(FUSE)}], { mode: 'manage' });
${script}`;
  return execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { cwd: repo, env: process.env, stdio: ['ignore', 'pipe', 'pipe'] }).toString().trim();
}

fuseTest('aufs: two strata processes share one FUSE union of a layer; the last put, from either, ends it', async (t) => {
  const { home, d } = await scratch(t);
  await d.create('base', null);
  fs.writeFileSync(path.join(home, 'diff/base/f'), 'f');
  await d.createReadWrite('c', 'base');
  const target = await d.get('c');
  const helper = fuseHelper(target)!;
  t.true(isAlive(helper));
  // the other process takes a reference on the same union (no second helper) and keeps it past its exit
  const seen = otherProcess(home, `const p = await d.get('c'); await d.persist('c'); console.log(p, m.fuseHelper(p));`);
  t.is(seen, `${target} ${helper}`);
  await d.put('c');
  t.true(isMountPoint(target), 'still held by the other process\'s reference');
  t.true(isAlive(helper));
  fs.rmSync(path.join(target, 'f'));
  // a third process releases it: the union ends, and its writes are in aufs form
  otherProcess(home, `await d.put('c');`);
  t.false(isMountPoint(target));
  t.false(isAlive(helper), 'the helper exited');
  t.deepEqual(fs.readdirSync(path.join(home, 'diff/c')), ['.wh.f']);
});

fuseTest('aufs: moby TestMountMoreThan42Layers: 126 stacked layers, every 10th deleting its parent\'s file: 114 visible at the top', async (t) => {
  const { home, d } = await scratch(t);
  const hash = (s: string) => createHash('sha256').update(s).digest('hex');
  let last = '';
  let expected = 0;
  for (let i = 1; i < 127; i++) {
    expected++;
    const parent = i === 1 ? null : hash(String(i - 1));
    const current = hash(String(i));
    await d.createReadWrite(current, parent);
    const point = await d.get(current);
    fs.writeFileSync(path.join(point, current), '');
    if (i % 10 === 0) {
      fs.rmSync(path.join(point, parent!));
      expected--;
    }
    await d.put(current);
    last = current;
  }
  t.is(expected, 114);
  t.is(fs.readFileSync(path.join(home, 'layers', last), 'utf8').split('\n').filter(Boolean).length, 125);
  const point = await d.get(last);
  t.is(fs.readdirSync(point).length, 114);
  await d.put(last);
  // each deletion is an aufs whiteout in the deleting layer's own diff dir
  t.deepEqual(fs.readdirSync(path.join(home, 'diff', hash('10'))).sort(), [`.wh.${hash('9')}`, hash('10')].sort());
  t.deepEqual(nonAufsEntries(path.join(home, 'diff', hash('120'))), []);
});

/**
 * A layer as the aufs module of 2013 left it: `.wh..wh.aufs` (0444),
 * `.wh..wh.orph/` and `.wh..wh.plnk/` (0700) at its root, and a hard link
 * set whose pseudo-link (named `<ino>.<branch>` by aufs) sits in plnk.
 */
function aufs2013Layer(dir: string): void {
  fs.mkdirSync(path.join(dir, 'bin'), { recursive: true });
  fs.writeFileSync(path.join(dir, '.wh..wh.aufs'), '', { mode: 0o444 });
  fs.chmodSync(path.join(dir, '.wh..wh.aufs'), 0o444);
  for (const n of ['.wh..wh.orph', '.wh..wh.plnk']) fs.mkdirSync(path.join(dir, n), { mode: 0o700 });
  fs.writeFileSync(path.join(dir, 'bin/busybox'), 'busybox 1.21', { mode: 0o755 });
  fs.linkSync(path.join(dir, 'bin/busybox'), path.join(dir, 'bin/sh'));
  const ino = fs.statSync(path.join(dir, 'bin/busybox')).ino;
  fs.linkSync(path.join(dir, 'bin/busybox'), path.join(dir, '.wh..wh.plnk', `${ino}.1`));
  fs.writeFileSync(path.join(dir, 'etc'), '');
  fs.rmSync(path.join(dir, 'etc'));
  fs.mkdirSync(path.join(dir, 'etc'));
  fs.writeFileSync(path.join(dir, 'etc/hostname'), 'box\n');
}

fuseTest('aufs: a 2013-era layer: its .wh..wh.* entries hidden through the union, left out of diff and changes, its hard links kept', async (t) => {
  const { home, d } = await scratch(t);
  await d.create('old', null);
  aufs2013Layer(path.join(home, 'diff/old'));
  await d.createReadWrite('c', 'old');
  const m = await d.get('c');
  t.deepEqual(fs.readdirSync(m).sort(), ['bin', 'etc'], 'aufs internals are not shown');
  const a = fs.statSync(path.join(m, 'bin/busybox'));
  const b = fs.statSync(path.join(m, 'bin/sh'));
  t.is(a.ino, b.ino, 'busybox and sh are one file through the union');
  fs.writeFileSync(path.join(m, 'etc/hostname'), 'other\n');
  await d.put('c');
  // the base's own diff: internals left out (moby's exclude .wh..wh.* but .wh..wh..opq), hard link kept
  const tar = tarNames(await collect(d.diff('old', null)));
  t.deepEqual(tar.filter((n) => n.includes('.wh.')), []);
  t.true(tar.includes('bin/sh link to bin/busybox'), tar.join('\n'));
  t.deepEqual(lines(await d.changes('old', null)), ['A /bin', 'A /bin/busybox', 'A /bin/sh', 'A /etc', 'A /etc/hostname']);
  t.is(await d.diffSize('old', null), 'busybox 1.21'.length + 'box\n'.length, 'one inode counted once');
  const naive = (await init(home, [FUSE, 'aufs.force_naive_diff=true'], { mode: 'manage' })) as AufsDriver;
  t.teardown(() => naive.cleanup());
  // The naive path differs here, as moby's does: Get of a base layer is its diff dir, internals and all,
  // while the union hides them, so the naive compare sees them deleted. Native is the one to trust.
  const internals = ['D /.wh..wh.aufs', 'D /.wh..wh.orph', 'D /.wh..wh.plnk'];
  t.deepEqual(lines(await naive.changes('c', 'old')), [...internals, ...lines(await d.changes('c', 'old'))]);
  t.is(await d.diffSize('c', 'old'), await naive.diffSize('c', 'old'));
  t.deepEqual(lines(await d.changes('c', 'old')), ['C /etc', 'C /etc/hostname']);
  // applied from its own tar into a fresh layer, it is the same tree less the internals
  await d.create('copy', null);
  await d.applyDiff('copy', null, await collect(d.diff('old', null)));
  t.deepEqual(fs.readdirSync(path.join(home, 'diff/copy')).sort(), ['bin', 'etc']);
  t.is(fs.statSync(path.join(home, 'diff/copy/bin/sh')).ino, fs.statSync(path.join(home, 'diff/copy/bin/busybox')).ino);
});

fuseTest('aufs: a read-only open compares a layer with its direct parent from the diff dirs, and writes and mounts nothing', async (t) => {
  const { home, d } = await scratch(t);
  await d.create('base', null);
  for (const f of ['a', 'z']) fs.writeFileSync(path.join(home, 'diff/base', f), f);
  await d.createReadWrite('c', 'base');
  const m = await d.get('c');
  fs.rmSync(path.join(m, 'a'));
  await d.put('c');
  const ro = await init(home, [], { mode: 'read-only' });
  t.deepEqual(lines(await ro.changes('c', 'base')), ['D /a']);
  t.is(await ro.diffSize('c', 'base'), 0);
  await t.throwsAsync(ro.changes('c', null), { message: /comparing them would need a mount/ });
  await t.throwsAsync(ro.get('c'), { message: /is open read-only: get c/ });
  await t.throwsAsync(ro.create('x', null), { message: /is open read-only: create x/ });
  t.false(fs.existsSync(path.join(home, 'layers/x')));
  // a branch still in FUSE form (a union mounted on it, or its conversion cut short) is refused, not misread
  const again = await d.get('c');
  fs.rmSync(path.join(again, 'z'));
  const refused = { message: `aufs: ${path.join(home, 'diff/c')} is not in aufs form (a FUSE union is mounted on it, or its conversion was cut short); a read-write open finishes it` };
  await t.throwsAsync(ro.changes('c', 'base'), refused);
  execFileSync('fusermount3', ['-u', again]);
  await t.throwsAsync(ro.changes('c', 'base'), refused);
  t.true(fs.lstatSync(path.join(home, 'diff/c/z')).isCharacterDevice(), 'the read-only open converted nothing');
  await init(home, [FUSE], { mode: 'manage' });
  t.deepEqual(lines(await ro.changes('c', 'base')), ['D /a', 'D /z']);
});

fuseTest('aufs: a conversion cut short (the union unmounted, its branch left in FUSE form) is not read natively, and the next open finishes it', async (t) => {
  const { home, d } = await scratch(t);
  await d.create('base', null);
  fs.mkdirSync(path.join(home, 'diff/base/dir'));
  for (const f of ['f', 'g', 'dir/old']) fs.writeFileSync(path.join(home, 'diff/base', f), f);
  for (const id of ['a', 'b']) {
    await d.createReadWrite(id, 'base');
    const m = await d.get(id);
    fs.rmSync(path.join(m, 'f'));
    fs.rmSync(path.join(m, 'dir'), { recursive: true });
    fs.mkdirSync(path.join(m, 'dir'));
    // the helper is unmounted, and the process that would convert is gone (a crash right after the unmount)
    execFileSync('fusermount3', ['-u', m]);
    t.false(isMountPoint(m));
  }
  const expected = ['C /dir', 'D /dir/old', 'D /f'];
  t.deepEqual(lines(await d.changes('a', 'base')), expected, 'a branch with a conversion pending is compared through the union');
  await init(home, [FUSE], { mode: 'manage' });
  for (const id of ['a', 'b']) {
    const diff = path.join(home, 'diff', id);
    t.deepEqual(nonAufsEntries(diff), [], id);
    t.deepEqual((fs.readdirSync(diff, { recursive: true }) as string[]).sort(), ['.wh.f', 'dir', 'dir/.wh..wh..opq'], id);
    t.deepEqual(lines(await d.changes(id, 'base')), expected, id);
  }
  t.false(fs.existsSync(path.join(home, FUSE_WORK_DIR)), 'no workdir left');
  await init(home, [FUSE], { mode: 'manage' });
  t.deepEqual((fs.readdirSync(path.join(home, 'diff/b'), { recursive: true }) as string[]).sort(), ['.wh.f', 'dir', 'dir/.wh..wh..opq'], 'a second open changes nothing');
});

fuseTest('aufs: a hostile store: diff/<id> a symlink is refused (nothing mounted or converted through it), a layers/<id> naming itself or a parent twice too', async (t) => {
  const { home, d } = await scratch(t);
  const outside = path.join(path.dirname(home), 'outside');
  fs.mkdirSync(outside);
  execFileSync('mknod', [path.join(outside, 'dev'), 'c', '0', '0']);
  fs.writeFileSync(path.join(outside, 'keep'), 'k');
  const before = () => (fs.readdirSync(outside) as string[]).sort().map((n) => `${n} ${fs.lstatSync(path.join(outside, n)).mode}`);
  const was = before();
  await d.create('base', null);
  fs.writeFileSync(path.join(home, 'diff/base/f'), 'f');
  await d.create('child', 'base');
  await d.create('lone', null);
  for (const id of ['child', 'lone']) {
    fs.rmdirSync(path.join(home, 'diff', id));
    fs.symlinkSync(outside, path.join(home, 'diff', id));
    await t.throwsAsync(d.get(id), { message: `aufs: ${path.join(home, 'diff', id)} is not a directory (a symlink): refusing to use it as layer ${id}'s branch` });
  }
  t.false(isMountPoint(path.join(home, 'mnt/child')));
  t.deepEqual(before(), was, 'nothing outside the store changed');
  await d.create('cyc', 'base');
  fs.writeFileSync(path.join(home, 'layers/cyc'), 'cyc\nbase\n');
  await t.throwsAsync(d.get('cyc'), { message: `aufs: ${path.join(home, 'layers/cyc')} names cyc itself: its ancestry is a cycle` });
  fs.writeFileSync(path.join(home, 'layers/cyc'), 'base\nbase\n');
  await t.throwsAsync(d.get('cyc'), { message: /names base twice/ });
  t.false(isMountPoint(path.join(home, 'mnt/cyc')));
});

fuseTest('aufs: a lower file renamed away, its dir replaced (opaque) and the file renamed back is kept; a new file renamed away leaves no whiteout', async (t) => {
  const { home, d } = await scratch(t);
  await d.create('base', null);
  fs.mkdirSync(path.join(home, 'diff/base/d'));
  for (const f of ['d/x', 'd/y']) fs.writeFileSync(path.join(home, 'diff/base', f), f);
  await d.createReadWrite('c', 'base');
  const m = await d.get('c');
  fs.renameSync(path.join(m, 'd/x'), path.join(m, 'x2')); // a copy-up whose origin is d/x
  fs.rmSync(path.join(m, 'd'), { recursive: true });
  fs.mkdirSync(path.join(m, 'd'));
  fs.renameSync(path.join(m, 'x2'), path.join(m, 'd/x')); // back at its origin, unchanged, in an opaque dir
  fs.writeFileSync(path.join(m, 'n'), 'n');
  fs.renameSync(path.join(m, 'n'), path.join(m, 'n2'));
  await d.put('c');
  const diff = path.join(home, 'diff/c');
  t.deepEqual(nonAufsEntries(diff), []);
  t.deepEqual((fs.readdirSync(diff, { recursive: true }) as string[]).sort(), ['d', 'd/.wh..wh..opq', 'd/x', 'n2']);
  const again = await d.get('c');
  t.is(fs.readFileSync(path.join(again, 'd/x'), 'utf8'), 'd/x', 'the file is still there');
  await d.put('c');
  const naive = (await init(home, [FUSE, 'aufs.force_naive_diff=true'], { mode: 'manage' })) as AufsDriver;
  t.teardown(() => naive.cleanup());
  t.deepEqual(lines(await d.changes('c', 'base')), lines(await naive.changes('c', 'base')));
  t.deepEqual(lines(await d.changes('c', 'base')), ['C /d', 'D /d/y', 'A /n2']);
});

fuseTest('aufs: a hostile layers/<id> (huge, a FIFO, a line no layer id) is refused with one line, not read whole or blocked on', async (t) => {
  const { home, d } = await scratch(t);
  await d.create('base', null);
  await d.create('c', 'base');
  const file = path.join(home, 'layers/c');
  fs.truncateSync(file, 64 * 1024 * 1024); // sparse: 64 MiB of NULs
  t.throws(() => d.parentIds('c'), { message: `aufs: ${file} is 67108864 bytes, too large for a list of parent ids` });
  t.throws(() => d.layers(), { message: /too large for a list of parent ids/ });
  fs.writeFileSync(file, 'base\n\0\0\0\n');
  t.throws(() => d.parentIds('c'), { message: `aufs: ${file} names "\\u0000\\u0000\\u0000", which is not a layer id` });
  fs.rmSync(file);
  execFileSync('mkfifo', [file]);
  t.throws(() => d.parentIds('c'), { message: `aufs: ${file} is not a regular file` });
  await t.throwsAsync(d.create('x', 'c'), { message: `aufs: ${file} is not a regular file` });
});
