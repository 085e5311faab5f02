// The apply of a tar file with regular files handed to the worker thread
// (archive/apply-offload.ts): the same tree as the in-thread apply, its
// errors named after the entry in entry order, no fd left behind, and a
// process that applied through it exits by itself.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { applyLayer, applyLayerFile, ApplyError } from '../archive/apply.ts';
import { treeManifest, manifestDiff } from '../archive/digest.ts';
import { asRoot, when } from './helpers/require.ts';
import { packTar, tempDir, type Entry } from './helpers/tar.ts';
import { tinyExt4, tinyFsMissing } from './helpers/tiny-fs.ts';
import { fdsUnder } from './helpers/fds.ts';
import { forceApplyWorker } from './helpers/apply-worker.ts';

const repo = fileURLToPath(new URL('..', import.meta.url));

/** Files of every size class (empty, one block, across ring slots), owners, special modes, and the cases that reuse a name. */
function entries(): Entry[] {
  const e: Entry[] = [{ name: './', type: 'directory' }, { name: 'd/', type: 'directory', mode: 0o750, uid: 3 }];
  for (let i = 0; i < 300; i++) e.push({ name: `d/f${i}`, content: Buffer.alloc((i * 997) % 9000, i), mode: i % 7 ? 0o644 : 0o4755, uid: i % 5, gid: i % 3 });
  e.push({ name: 'big', content: Buffer.alloc(3 << 20, 0x42), mode: 0o600, uid: 9 }); // spans ring slots
  e.push({ name: 'empty', content: '' });
  e.push({ name: 'd/f1', content: 'the later entry wins' }); // replaces a file the worker may still be writing
  e.push({ name: 'link', type: 'link', linkname: 'big', mode: 0o600, uid: 9 }); // a hardlink to a file the worker finishes (its metadata, as real tars)
  e.push({ name: 'd/f2/', type: 'directory' }); // a file replaced by a directory
  e.push({ name: 'x/', type: 'directory' }, { name: 'x/gone', content: 'soon removed' }, { name: '.wh.x' });
  e.push({ name: 'ns', content: 'ns time: written in this thread', pax: { mtime: '1600000000.123456789' } });
  e.push({ name: 'pre-epoch', content: 'moby: the epoch, never "now"', pax: { mtime: '-1' } });
  return e;
}

asRoot({ serial: true })('a tar file applied with the worker gives the tree the in-thread apply gives', async (t) => {
  const { dir: top, cleanup } = tempDir('strata-apply-offload-');
  t.teardown(cleanup);
  const tarFile = path.join(top, 'layer.tar');
  const tar = await packTar(entries());
  fs.writeFileSync(tarFile, tar);
  const inThread = path.join(top, 'in-thread');
  const byWorker = path.join(top, 'by-worker');
  fs.mkdirSync(inThread);
  fs.mkdirSync(byWorker);
  const sizeIn = await applyLayer(tar, inThread, { whiteouts: 'none' }); // a Buffer: never the worker
  forceApplyWorker(t);
  const sizeBy = await applyLayerFile(tarFile, byWorker, { whiteouts: 'none' });
  t.is(sizeBy, sizeIn);
  const a = await treeManifest(inThread);
  const b = await treeManifest(byWorker);
  t.deepEqual(b, a, manifestDiff(a, b));
  t.is(fs.statSync(path.join(byWorker, 'd/f7')).mode & 0o7777, 0o4755);
  t.is(fs.statSync(path.join(byWorker, 'big')).uid, 9);
  t.is(fs.readFileSync(path.join(byWorker, 'd/f1'), 'utf8'), 'the later entry wins');
  t.is(fs.statSync(path.join(byWorker, 'pre-epoch'), { bigint: true }).mtimeNs, 0n);
  // the pooled worker serves the next apply too
  const again = path.join(top, 'again');
  fs.mkdirSync(again);
  await applyLayerFile(tarFile, again, { whiteouts: 'aufs' });
  t.is(fs.statSync(path.join(again, 'link')).ino, fs.statSync(path.join(again, 'big')).ino);
});

asRoot({ serial: true })('an error in this thread after files were handed over: the earlier entries are done and no fd stays open', async (t) => {
  const { dir: top, cleanup } = tempDir('strata-apply-offload-');
  t.teardown(cleanup);
  const tarFile = path.join(top, 'layer.tar');
  const e: Entry[] = [];
  for (let i = 0; i < 50; i++) e.push({ name: `f${i}`, content: Buffer.alloc(5000, i) });
  e.push({ name: '../escape', content: 'no' });
  fs.writeFileSync(tarFile, await packTar(e));
  const layer = path.join(top, 'layer');
  fs.mkdirSync(layer);
  forceApplyWorker(t);
  const err = await t.throwsAsync(applyLayerFile(tarFile, layer, { whiteouts: 'none' }));
  t.true(err instanceof ApplyError, String(err));
  t.regex(err!.message, /^tar entry "\.\.\/escape": .*outside of the layer \(layer partially applied: 50 entries written before it\)$/);
  for (let i = 0; i < 50; i++) t.true(fs.readFileSync(path.join(layer, `f${i}`)).equals(Buffer.alloc(5000, i)), `f${i}`);
  t.deepEqual(fdsUnder(layer), []);
});

const missing = tinyFsMissing();
when(missing === null, missing ?? '', { serial: true })('the disk fills while the worker writes: one line naming the entry, no fd left', async (t) => {
  const fs4 = tinyExt4(3, 256, { journal: false });
  t.teardown(() => fs4.cleanup());
  const { dir: top, cleanup } = tempDir('strata-apply-offload-');
  t.teardown(cleanup);
  const tarFile = path.join(top, 'layer.tar');
  const e: Entry[] = [{ name: 'small', content: 'fits' }, { name: 'big', content: Buffer.alloc(8 << 20, 0x61) }, { name: 'after', content: 'never' }];
  fs.writeFileSync(tarFile, await packTar(e));
  const layer = path.join(fs4.dir, 'layer');
  fs.mkdirSync(layer);
  forceApplyWorker(t);
  const err = await t.throwsAsync(applyLayerFile(tarFile, layer, { whiteouts: 'none' }));
  t.true(err instanceof ApplyError, String(err));
  t.false(err!.message.includes('\n'));
  t.regex(err!.message, /^tar entry "big": ENOSPC.*\(layer partially applied: 1 entries written before it\)$/);
  t.deepEqual(fdsUnder(fs4.dir), [], 'every fd the apply and its worker opened is closed');
  t.is(fs.readFileSync(path.join(layer, 'small'), 'utf8'), 'fits');
});

asRoot({ serial: true })('a process that applied through the worker exits by itself, after a success and after a failure', async (t) => {
  const { dir: top, cleanup } = tempDir('strata-apply-offload-');
  t.teardown(cleanup);
  const tarFile = path.join(top, 'layer.tar');
  const e: Entry[] = [];
  for (let i = 0; i < 20; i++) e.push({ name: `f${i}`, content: Buffer.alloc(3000, i) });
  fs.writeFileSync(tarFile, await packTar(e));
  const script = `
    const { applyLayerFile, applyOffload } = await import(${JSON.stringify(path.join(repo, 'archive/apply.ts'))});
    applyOffload.mode = 'always';
    const fs = await import('node:fs');
    fs.mkdirSync(process.argv[1] + '/ok');
    await applyLayerFile(${JSON.stringify(tarFile)}, process.argv[1] + '/ok', { whiteouts: 'none' });
    await applyLayerFile(${JSON.stringify(tarFile)}, process.argv[1] + '/ok', { whiteouts: 'none' }).catch(() => {});
    await applyLayerFile(${JSON.stringify(tarFile)}, process.argv[1] + '/missing', { whiteouts: 'none' }).catch(() => {});
    console.log('done');`;
  const r = spawnSync(process.execPath, ['--import=tsx', '--input-type=module', '-e', script, top], { cwd: repo, encoding: 'utf8', timeout: 60_000 });
  t.is(r.signal, null, 'it ended by itself, not by the timeout');
  t.is(r.status, 0, r.stderr);
  t.is(r.stdout.trim(), 'done');
  t.is(fs.readdirSync(path.join(top, 'ok')).length, 20);
});

asRoot({ serial: true })('a root entry after files the worker is creating: its setgid bit and group do not reach them', async (t) => {
  const { dir: top, cleanup } = tempDir('strata-apply-offload-');
  t.teardown(cleanup);
  const tarFile = path.join(top, 'layer.tar');
  const e: Entry[] = [];
  for (let i = 0; i < 200; i++) e.push({ name: `f${i}`, content: 'x', uid: 0, gid: 0 });
  e.push({ name: './', type: 'directory', mode: 0o2755, gid: 5 });
  fs.writeFileSync(tarFile, await packTar(e));
  forceApplyWorker(t);
  for (let round = 0; round < 5; round++) {
    const layer = path.join(top, `layer${round}`);
    fs.mkdirSync(layer);
    await applyLayerFile(tarFile, layer, { whiteouts: 'none' });
    t.is(fs.statSync(layer).mode & 0o7777, 0o2755);
    const inherited = e.slice(0, 200).filter((x) => fs.statSync(path.join(layer, x.name)).gid !== 0).map((x) => x.name);
    t.deepEqual(inherited, [], 'moby: files made before the root entry keep their own group');
  }
});

asRoot({ serial: true })('a cut-off tar: the half-written file the worker held is closed before the apply rejects', async (t) => {
  const { dir: top, cleanup } = tempDir('strata-apply-offload-');
  t.teardown(cleanup);
  const tarFile = path.join(top, 'layer.tar');
  const whole = await packTar([{ name: 'a', content: Buffer.alloc(100, 1) }, { name: 'b', content: Buffer.alloc(3000, 2) }]);
  fs.writeFileSync(tarFile, whole.subarray(0, 3 * 512 + 1000)); // a's header and body, b's header, 1,000 bytes of b
  forceApplyWorker(t);
  for (let round = 0; round < 30; round++) {
    const layer = path.join(top, `layer${round}`);
    fs.mkdirSync(layer);
    const err = await t.throwsAsync(applyLayerFile(tarFile, layer, { whiteouts: 'none' }));
    t.regex(err!.message, /^tar entry "b": /);
    t.deepEqual(fdsUnder(layer), [], `round ${round}: no fd into the layer once the apply rejected`);
  }
});

asRoot({ serial: true })('thousands of new dirs of tiny files: the handles the worker closes stay bounded (fd limit 320)', async (t) => {
  const { dir: top, cleanup } = tempDir('strata-apply-offload-');
  t.teardown(cleanup);
  const tarFile = path.join(top, 'layer.tar');
  const e: Entry[] = [];
  for (let i = 0; i < 6000; i++) e.push({ name: `d${i}/`, type: 'directory' }, { name: `d${i}/f0`, content: '' });
  fs.writeFileSync(tarFile, await packTar(e));
  fs.mkdirSync(path.join(top, 'layer'));
  const script = `
    const { applyLayerFile } = await import(${JSON.stringify(path.join(repo, 'archive/apply.ts'))});
    await applyLayerFile(${JSON.stringify(tarFile)}, ${JSON.stringify(path.join(top, 'layer'))}, { whiteouts: 'none' });
    console.log('done');`;
  // the in-thread apply needs ~150 fds (the handle cache of 128); the worker may hold back 64 more
  const r = spawnSync('sh', ['-c', 'ulimit -n 320 && exec "$0" --import=tsx --input-type=module -e "$1"', process.execPath, script],
    { cwd: repo, encoding: 'utf8', timeout: 120_000, env: { ...process.env, STRATA_APPLY_WORKER: 'always' } });
  t.is(r.status, 0, r.stderr);
  t.is(r.stdout.trim(), 'done');
  t.is(fs.readdirSync(path.join(top, 'layer')).length, 6000);
});
