// strata migrate killed (SIGKILL, at seeded points of every phase), stopped by
// a corrupted source layer, refused by pre-flight for want of inodes, and
// stopped by a disk that fills after pre-flight passed: each leaves the source's
// files as they were and, where it failed, one line naming what; then --resume
// finishes the migration or --rollback gives back the root as it was.
import type { ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { sampleStoreSpec, writeModernStore } from '../fixtures/modern-store.ts';
import { asRoot, when } from './helpers/require.ts';
import { fillUp, tinyExt4, tinyFsMissing } from './helpers/tiny-fs.ts';
import { migrateCli, rootSnapshot, sourceSnapshot, storeFacts, verifyProblems } from './helpers/migrate-store.ts';

function tempRoot(t: { teardown(fn: () => void): void }, base = os.tmpdir()): string {
  const dir = fs.mkdtempSync(path.join(base, 'strata-migrate-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return path.join(dir, 'root');
}

/** After a failed or killed run: --resume completes it (checked like a clean run), or --rollback restores the root. */
async function recover(t: ExecutionContext, root: string, how: 'resume' | 'rollback', before: Awaited<ReturnType<typeof storeFacts>>, rootBefore: Map<string, string>): Promise<void> {
  if (how === 'resume') {
    const r = migrateCli(['--root', root, '--to', 'overlay2', '--resume']);
    t.is(r.code, 0, r.stderr);
    t.deepEqual(await verifyProblems(root, 'overlay2'), []);
    const after = await storeFacts(root, 'overlay2');
    t.deepEqual(after, before);
  } else {
    const r = migrateCli(['--root', root, '--rollback']);
    t.is(r.code, 0, r.stderr);
    t.deepEqual(rootSnapshot(root), rootBefore);
  }
}

const CRASH_POINTS = ['staging', 'layer:1', 'layer:4', 'layer:7', 'metadata', 'staged', 'switch:home', 'switch:image', 'container', 'done'];

for (const [i, point] of CRASH_POINTS.entries()) {
  for (const how of ['resume', 'rollback'] as const) {
    if ((i % 2 === 0) !== (how === 'resume') && point !== 'switch:image') continue; // half each way; the commit point both
    asRoot({ serial: true })(`killed at ${point}, then --${how}`, async (t) => {
      const root = tempRoot(t);
      const info = await writeModernStore(root, 'vfs', sampleStoreSpec());
      const at = point === 'container' ? `container:${[...info.containers.values()][0].id}` : point;
      const before = await storeFacts(root, 'vfs');
      const source = sourceSnapshot(root, 'vfs');
      const rootBefore = rootSnapshot(root);
      const r = migrateCli(['--root', root, '--to', 'overlay2'], { STRATA_MIGRATE_CRASH_AT: at });
      t.is(r.signal, 'SIGKILL', `${r.code} ${r.stderr}`);
      t.deepEqual(sourceSnapshot(root, 'vfs'), source);
      const again = migrateCli(['--root', root, '--to', 'overlay2']);
      if (point === 'done') t.is(again.code, 0, 'killed after the end: nothing left to do');
      else {
        t.is(again.code, 1, 'a plain rerun refuses a started migration');
        t.regex(again.stderr, /^strata: .*\.strata-migrate: .*--resume or --rollback\n$/);
      }
      await recover(t, root, how, before, rootBefore);
    });
  }
}

asRoot({ serial: true })('a corrupted layer stops the run naming the layer and file; the source is untouched; --rollback', async (t) => {
  const root = tempRoot(t);
  const info = await writeModernStore(root, 'vfs', sampleStoreSpec());
  const base = [...info.layers.values()].find((l) => l.parent === null)!;
  const file = path.join(root, 'vfs', 'dir', base.cacheId, 'etc', 'passwd');
  const bytes = fs.readFileSync(file);
  bytes[0] ^= 0x20;
  fs.writeFileSync(file, bytes);
  const source = sourceSnapshot(root, 'vfs');
  const rootBefore = rootSnapshot(root);
  const r = migrateCli(['--root', root, '--to', 'overlay2']);
  t.is(r.code, 1);
  t.is(r.stderr.split('\n').length, 2, r.stderr);
  t.true(r.stderr.includes(base.cacheId) && r.stderr.includes(file), r.stderr);
  t.deepEqual(sourceSnapshot(root, 'vfs'), source);
  t.false(fs.existsSync(path.join(root, 'overlay2')));
  t.false(fs.existsSync(path.join(root, 'image', 'overlay2')));
  const rb = migrateCli(['--root', root, '--rollback']);
  t.is(rb.code, 0, rb.stderr);
  t.deepEqual(rootSnapshot(root), rootBefore);
});

const tinyFs = when(tinyFsMissing() === null, tinyFsMissing() ?? '', { serial: true });

tinyFs('pre-flight: too few free inodes for the target — one line (needed vs free), nothing written, the source untouched', async (t) => {
  const tiny = tinyExt4(32, 1024);
  t.teardown(() => tiny.cleanup());
  const root = path.join(tiny.dir, 'root');
  await writeModernStore(root, 'vfs', sampleStoreSpec());
  // take every inode but a few: the target's layers need more
  const filler = path.join(tiny.dir, 'filler');
  fs.mkdirSync(filler);
  let n = 0;
  for (;;) {
    try {
      fs.writeFileSync(path.join(filler, String(n++)), '');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
      break;
    }
  }
  for (let k = 1; k <= 30; k++) fs.rmSync(path.join(filler, String(n - 1 - k)));
  const rootBefore = rootSnapshot(root);
  const r = migrateCli(['--root', root, '--to', 'overlay2']);
  t.is(r.code, 1, r.stderr);
  const m = /^strata: (.*): the target needs about (\d+) inodes, the filesystem has (\d+) free\n$/.exec(r.stderr);
  t.truthy(m, r.stderr);
  t.is(m![1], root);
  t.true(Number(m![2]) > Number(m![3]) && Number(m![3]) <= 30, r.stderr);
  t.deepEqual(rootSnapshot(root), rootBefore, 'nothing written, not even the staging area');
});

/**
 * `strata migrate ARGS` paused at `step` (STRATA_MIGRATE_PAUSE_AT: it writes a
 * byte to fd 3, then waits for one on fd 4): `during` runs while it waits, then
 * it goes on; resolves with how it ended.
 */
async function migratePaused(args: string[], step: string, during: () => void): Promise<{ code: number | null; stderr: string }> {
  const repo = path.resolve(import.meta.dirname, '..');
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(repo, 'cli', 'main.ts'), 'migrate', ...args], {
    cwd: repo, stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'], env: { ...process.env, STRATA_DEBUG: '', STRATA_MIGRATE_PAUSE_AT: step },
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const exited = once(child, 'exit');
  const [paused, go] = [child.stdio[3] as Readable, child.stdio[4] as Writable];
  const reached = await Promise.race([once(paused, 'data').then(() => true), exited.then(() => false)]);
  if (reached) {
    during();
    go.end('g');
  }
  const [code] = await exited;
  if (!reached) throw new Error(`migrate ended (${code}) before ${step}: ${stderr}`);
  return { code: code as number | null, stderr };
}

tinyFs('the disk fills mid-run, after pre-flight passed: one ENOSPC line naming the file, the source untouched; space freed, --resume completes', async (t) => {
  const tiny = tinyExt4(32);
  t.teardown(() => tiny.cleanup());
  const root = path.join(tiny.dir, 'root');
  await writeModernStore(root, 'vfs', sampleStoreSpec());
  const before = await storeFacts(root, 'vfs');
  const source = sourceSnapshot(root, 'vfs');
  const rootBefore = rootSnapshot(root);
  const filler = path.join(tiny.dir, 'filler');
  const r = await migratePaused(['--root', root, '--to', 'overlay2'], 'layer:2', () => fillUp(filler));
  t.is(r.code, 1, r.stderr);
  t.is(r.stderr.split('\n').length, 2, r.stderr);
  // the file it was writing: in the staging area (never the source)
  t.regex(r.stderr, new RegExp(`^strata: ${root.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/\\.strata-migrate/\\S+: no space left on device \\(\\w+\\), ENOSPC; the source is untouched: .*--resume`), r.stderr);
  t.deepEqual(sourceSnapshot(root, 'vfs'), source);
  fs.rmSync(filler);
  await recover(t, root, 'resume', before, rootBefore);
});
