// exportDir with its walk on a worker thread must give the bytes the in-thread
// walk gives: every entry kind, hardlinks whose first name was scanned by the
// other thread, overlay whiteouts, and errors raised on the worker.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { exportDir, type ExportOptions, type WalkStats } from '../archive/export.ts';
import { scanWorkerTesting } from '../archive/walk.ts';
import { fsPath } from '../archive/types.ts';
import * as sys from '../sys/syscalls.ts';
import { capabilityV2 } from './helpers/file-capability.ts';
import { asRoot } from './helpers/require.ts';
import { collect, listTar, tempDir } from './helpers/tar.ts';

/** ~3,500 entries of every kind; `hard-first` and `zz/hard-last` share an inode far apart in the walk. */
function buildTree(root: string): void {
  const t = new Date('2021-05-06T07:08:09.123Z');
  fs.writeFileSync(path.join(root, 'hard-first'), 'one inode, two names');
  for (let d = 0; d < 30; d++) {
    const dir = path.join(root, `d${String(d).padStart(2, '0')}`);
    fs.mkdirSync(dir);
    for (let f = 0; f < 100; f++) {
      const p = path.join(dir, `f${f}`);
      fs.writeFileSync(p, f % 17 === 0 ? '' : `file ${d}/${f} `.repeat(f));
      if (f % 10 === 1) fs.symlinkSync(`f${f - 1}`, path.join(dir, `l${f}`));
      if (f % 25 === 3) sys.lsetxattr(p, 'user.note', Buffer.from(`x${f}`));
      fs.utimesSync(p, t, t);
    }
  }
  fs.mkdirSync(path.join(root, 'zz/opaque'), { recursive: true });
  fs.writeFileSync(path.join(root, 'zz/big'), Buffer.alloc(3 << 20, 7)); // spans several 1 MiB chunks
  fs.linkSync(path.join(root, 'hard-first'), path.join(root, 'zz/hard-last'));
  fs.writeFileSync(path.join(root, 'zz/cap'), 'ping');
  sys.lsetxattr(path.join(root, 'zz/cap'), 'security.capability', capabilityV2(1 << 13, true));
  sys.mknod(path.join(root, 'zz/whiteout'), sys.S_IFCHR | 0o600, 0);
  sys.mknod(path.join(root, 'zz/null'), sys.S_IFCHR | 0o666, sys.makedev(1, 3));
  sys.mknod(path.join(root, 'zz/fifo'), sys.S_IFIFO | 0o644, 0);
  sys.lsetxattr(path.join(root, 'zz/opaque'), 'trusted.overlay.opaque', Buffer.from('y'));
  fs.writeFileSync(fsPath(path.join(root, 'zz/bad\xff name')), 'not UTF-8');
}

async function exported(dir: string, opts: ExportOptions): Promise<{ tar: Buffer; stats: WalkStats | null }> {
  let stats: WalkStats | null = null;
  const tar = await collect(exportDir(dir, { ...opts, onWalkEnd: (s) => (stats = s) }));
  return { tar, stats };
}

asRoot({ serial: true })('exportDir: the worker walk gives byte for byte the in-thread walk (overlay and plain forms, every entry kind)', async (t) => {
  const { dir, cleanup } = tempDir('strata-export-');
  t.teardown(cleanup);
  buildTree(dir);
  for (const whiteouts of ['none', 'overlay'] as const) {
    const mine = await exported(dir, { whiteouts, parallel: 'never' });
    const worker = await exported(dir, { whiteouts, parallel: 'always' });
    // 'auto', handing off after 500 entries (the real threshold is above this tree's size)
    Object.assign(scanWorkerTesting, { handOffAfter: 500, waitAtHandOff: true });
    const auto = await exported(dir, { whiteouts });
    delete scanWorkerTesting.handOffAfter;
    delete scanWorkerTesting.waitAtHandOff;
    t.is(auto.stats?.inThread, 500);
    t.is(mine.stats?.byWorker, 0);
    t.is(worker.stats?.inThread, 0, 'always: the worker walked from the first entry');
    t.true(worker.stats!.byWorker > 3000, `${worker.stats!.byWorker} entries`);
    t.true(mine.tar.equals(worker.tar), `${whiteouts}: worker and in-thread walks differ`);
    t.true(mine.tar.equals(auto.tar), `${whiteouts}: the auto split differs`);
    const names = (await listTar(worker.tar)).map((h) => `${h.type} ${h.name}${h.linkname ? ` -> ${h.linkname}` : ''}`);
    t.true(names.includes('link zz/hard-last -> hard-first'), 'a hardlink to an entry scanned long before (by the other thread, in the auto run)');
    if (whiteouts === 'overlay') {
      t.true(names.includes('file zz/.wh.whiteout'));
      t.true(names.includes('file zz/opaque/.wh..wh..opq'));
    } else {
      t.true(names.includes('character-device zz/whiteout'));
    }
  }
});

asRoot({ serial: true })('exportDir: an error on the worker reaches the reader with its code, as in-thread', async (t) => {
  const { dir } = tempDir('strata-export-err-');
  for (let i = 0; i < 50; i++) fs.writeFileSync(path.join(dir, `a${i}`), 'x');
  // a chain of directories deeper than PATH_MAX, made one level at a time from inside (a child
  // process, so this test process keeps its cwd): no full path reaches the bottom
  const deep = `const fs = require('fs'); for (let i = 0; i < 120; i++) { fs.mkdirSync('z'.repeat(40)); process.chdir('z'.repeat(40)); }`;
  execFileSync(process.execPath, ['-e', deep], { cwd: dir });
  t.teardown(() => execFileSync('rm', ['-rf', dir])); // GNU rm walks by fd, past PATH_MAX
  const errors = [];
  for (const parallel of ['never', 'always'] as const) {
    const err = await t.throwsAsync(collect(exportDir(dir, { parallel }))) as NodeJS.ErrnoException;
    t.is(err.code, 'ENAMETOOLONG', `${parallel}: ${String(err)}`);
    errors.push({ message: err.message, code: err.code, errno: err.errno, syscall: err.syscall, path: err.path });
  }
  t.deepEqual(errors[1], errors[0], 'the same error, field for field');
  t.truthy(errors[0].syscall);
});

asRoot({ serial: true })('exportDir: a reader that stops early stops the worker too (its thread ends, no descriptor stays open)', async (t) => {
  const { dir, cleanup } = tempDir('strata-export-stop-');
  t.teardown(cleanup);
  buildTree(dir);
  // more entries than the worker may run ahead (16 batches of 256), so it is still walking when we stop
  fs.mkdirSync(path.join(dir, 'more'));
  for (let i = 0; i < 5000; i++) fs.writeFileSync(path.join(dir, 'more', `m${i}`), '');
  // descriptors and threads of this process
  const fds = () => fs.readdirSync('/proc/self/fd').length;
  const threads = () => fs.readdirSync('/proc/self/task').length;
  const settle = async (fdLimit: number, threadLimit: number) => {
    for (let i = 0; i < 50 && (fds() > fdLimit || threads() > threadLimit); i++) await new Promise((r) => setTimeout(r, 100));
  };
  let fdsBefore = -1;
  let threadsBefore = -1;
  for (let i = 0; i < 4; i++) {
    if (i === 1) {
      // after a first round, which may set up what any worker needs once per process
      await new Promise((r) => setTimeout(r, 300));
      fdsBefore = fds();
      threadsBefore = threads();
    }
    const s: Readable = exportDir(dir, { parallel: 'always' });
    for await (const chunk of s) {
      void chunk;
      break; // destroys the stream
    }
    t.true(s.destroyed);
  }
  // the open files of the destroyed streams are closed, and the terminated workers' own
  // descriptors are released (asynchronously, so give them a moment)
  await settle(fdsBefore, threadsBefore);
  t.true(threads() <= threadsBefore, `${threads()} threads, ${threadsBefore} before: a scan worker is still alive`);
  t.true(fds() <= fdsBefore, `${fds()} descriptors open, ${fdsBefore} before`);
});

asRoot({ serial: true })('exportDir: a scan worker that dies mid-walk fails the export at once; one that cannot load only costs the help', async (t) => {
  const { dir, cleanup } = tempDir('strata-export-crash-');
  t.teardown(cleanup);
  t.teardown(() => {
    delete scanWorkerTesting.exitAfterBatches;
    delete scanWorkerTesting.failToLoad;
  });
  buildTree(dir);
  const good = await exported(dir, { whiteouts: 'none', parallel: 'never' });

  scanWorkerTesting.exitAfterBatches = 3;
  const t0 = Date.now();
  const died = await t.throwsAsync(collect(exportDir(dir, { parallel: 'always' })));
  t.regex(died!.message, /the scan worker exited \(code 3\) before the walk ended/);
  t.true(Date.now() - t0 < 10_000, `took ${Date.now() - t0} ms`);
  delete scanWorkerTesting.exitAfterBatches;

  scanWorkerTesting.failToLoad = true;
  const unloaded = await t.throwsAsync(collect(exportDir(dir, { parallel: 'always' })));
  t.regex(unloaded!.message, /failing to load/, 'asked for a worker: its failure is the error');
  scanWorkerTesting.handOffAfter = 100; // the tree is smaller than the real threshold
  t.teardown(() => delete scanWorkerTesting.handOffAfter);
  const auto = await exported(dir, { whiteouts: 'none' });
  t.deepEqual(auto.stats, { inThread: good.stats!.inThread, byWorker: 0 }, "'auto' carried on in this thread");
  t.true(auto.tar.equals(good.tar));
});

/**
 * A tree whose every byte of metadata is fixed (modes, owners, ns mtimes, xattrs), with what
 * needs each header form: PAX path, linkpath, uid, ns mtime and xattrs, a ustar prefix/name split.
 */
function fixedTree(root: string): void {
  const at = (rel: string) => path.join(root, rel);
  fs.mkdirSync(at('a/b'), { recursive: true });
  fs.mkdirSync(at('opaque'));
  fs.writeFileSync(at('a/file'), 'x'.repeat(1500));
  fs.writeFileSync(at('a/b/empty'), '');
  fs.writeFileSync(at('big'), Buffer.alloc((1 << 20) + 77, 0x5a)); // past one chunk, not block aligned
  fs.linkSync(at('a/file'), at('a/b/hard'));
  fs.symlinkSync('t'.repeat(130), at('a/long-link'));
  fs.symlinkSync('../file', at('a/b/short-link'));
  const split = 'p'.repeat(90) + '/' + 'q'.repeat(60); // 151 chars: a ustar prefix and name
  fs.mkdirSync(at(split.split('/')[0]));
  fs.writeFileSync(at(split), 'split');
  fs.writeFileSync(at('n'.repeat(180)), 'long'); // no split: a PAX path
  fs.writeFileSync(fsPath(at('bad\xff name')), 'not UTF-8');
  sys.mknod(at('a/fifo'), sys.S_IFIFO | 0o644, 0);
  sys.mknod(at('a/null'), sys.S_IFCHR | 0o666, sys.makedev(1, 3));
  sys.mknod(at('a/whiteout'), sys.S_IFCHR, 0);
  sys.lsetxattr(at('a/file'), 'user.note', Buffer.from('hello'));
  sys.lsetxattr(at('a/file'), 'security.capability', capabilityV2(1 << 13, true));
  sys.lsetxattr(at('opaque'), 'trusted.overlay.opaque', Buffer.from('y'));
  fs.lchownSync(at('a/b/empty'), 3_000_000, 44);
  const modes: Record<string, number> = { 'a/file': 0o4755, 'a/b': 0o2775, big: 0o600 };
  // every mode and time set explicitly (no umask, no clock); times from the sorted order, set
  // deepest first so that a directory's is set after its children are complete
  const rels = execFileSync('find', ['.', '-mindepth', '1', '-print0'], { cwd: root }).toString('latin1').split('\0').filter(Boolean).map((p) => p.slice(2)).sort();
  const times = new Map(rels.map((rel, i) => [rel, 1_600_000_000_000_000_000n + BigInt(i) * 1_000_000_123n + (i % 3 === 0 ? 0n : 456_789n)]));
  for (const rel of [...rels].sort((a, b) => b.split('/').length - a.split('/').length)) {
    const p = fsPath(at(rel));
    const st = fs.lstatSync(p);
    if (!st.isSymbolicLink()) fs.chmodSync(p, modes[rel] ?? (st.isDirectory() ? 0o755 : 0o644));
    sys.lutimensNs(p, times.get(rel)!);
  }
}

asRoot({ serial: true })('exportDir: the bytes of a fixed tree are pinned (every header form; both walks; plain and overlay forms)', async (t) => {
  const { dir, cleanup } = tempDir('strata-export-pinned-');
  t.teardown(cleanup);
  const root = path.join(dir, 'tree');
  fs.mkdirSync(root);
  fixedTree(root);
  const pinned = {
    none: '6ee7049314622d5aba75ef2077c814208ce21b4c5c38f57b88a5ad68e57333f4',
    overlay: 'a324f206134b40f037dbfdacd220b860025619fa1ff1a24f26ca8b9706c2994d',
  };
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  const out = path.join(dir, 'out.tar');
  for (const whiteouts of ['none', 'overlay'] as const) {
    for (const parallel of ['never', 'always'] as const) {
      t.is(sha(await collect(exportDir(root, { whiteouts, parallel }))), pinned[whiteouts], `${whiteouts}, walk ${parallel}, read as a stream`);
      // into a file: the stream writes it itself (big's body by sendfile)
      await pipeline(exportDir(root, { whiteouts, parallel }), fs.createWriteStream(out));
      t.is(sha(fs.readFileSync(out)), pinned[whiteouts], `${whiteouts}, walk ${parallel}, piped into a file`);
    }
  }
  // process.stdout redirected to a file (what `strata layer diff > file` is), after bytes another writer put there
  const fd = fs.openSync(out, 'w');
  fs.writeSync(fd, 'before');
  const script = `import { exportDir } from ${JSON.stringify(new URL('../archive/export.ts', import.meta.url).href)};
    import { pipeline } from 'node:stream/promises';
    await pipeline(exportDir(process.argv[1]), process.stdout);`;
  execFileSync(process.execPath, ['--import=tsx', '--input-type=module', '-e', script, root], { stdio: ['ignore', fd, 'inherit'] });
  fs.closeSync(fd);
  const written = fs.readFileSync(out);
  t.is(written.subarray(0, 6).toString(), 'before');
  t.is(sha(written.subarray(6)), pinned.none, 'to process.stdout, a file');
});

asRoot({ serial: true })('exportDir: piped into a file stream that positions its writes, or has writes pending, the ordinary pipe writes it; one that appends gets the same bytes', async (t) => {
  const { dir, cleanup } = tempDir('strata-export-pipe-');
  t.teardown(cleanup);
  const root = path.join(dir, 'tree');
  fs.mkdirSync(root);
  fixedTree(root);
  const expected = await collect(exportDir(root));
  const out = path.join(dir, 'out.tar');
  fs.writeFileSync(out, 'x'.repeat(10));
  await pipeline(exportDir(root), fs.createWriteStream(out, { flags: 'r+', start: 4 }));
  t.deepEqual(fs.readFileSync(out), Buffer.concat([Buffer.from('xxxx'), expected]), 'written from `start`');
  const w = fs.createWriteStream(out);
  w.write('head');
  await pipeline(exportDir(root), w);
  t.deepEqual(fs.readFileSync(out), Buffer.concat([Buffer.from('head'), expected]), 'after the pending write');
  // O_APPEND: written directly, but sendfile refuses such an output (EINVAL), so big's body is read and written
  await pipeline(exportDir(root), fs.createWriteStream(out, { flags: 'a' }));
  t.deepEqual(fs.readFileSync(out), Buffer.concat([Buffer.from('head'), expected, expected]), 'appended');
});
