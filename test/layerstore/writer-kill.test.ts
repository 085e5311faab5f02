// Crash safety of the store writer, for real: a child process writing a store
// (test/helpers/store-writer-worker.ts: fixtures/modern-store.ts through
// layerstore/writer.ts and the vfs driver) SIGKILLs itself at its Nth
// file-system operation, N seeded and spread over the whole write (a write it
// lands on is cut in half first). After each kill the readers find a
// consistent store: every layerdb entry complete (all its files, its name the
// chain id of its parent and DiffID) or absent, no truncated or invalid file,
// verify clean (every recorded layer's tar rebuilt from tar-split and the
// driver's files matches its DiffID). The one leftover allowed is the one a
// killed dockerd leaves too: a container's RW layer record written, its
// config not yet (moby creates the RW layer before the container's files).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { verifyStore } from '../../inspect/verify.ts';
import { chainIdOf } from '../../layerstore/digests.ts';
import { detectLayout, openStore } from '../../layerstore/store.ts';
import { asRoot } from '../helpers/require.ts';
import { repo } from '../helpers/line-child.ts';
import { Rng } from '../helpers/random-layer-ops.ts';
import { tempDir } from '../helpers/tar.ts';

const SEED = Number(process.env.STRATA_FUZZ_SEED ?? 0x5702e);
const KILLS = 14;
const WORKER = path.join(repo, 'test', 'helpers', 'store-writer-worker.ts');

function runWorker(root: string, killAt: number): { status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', WORKER, root, String(killAt)], { cwd: repo, encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

const ORPHAN_MOUNT = /^RW layer record for container [0-9a-f]{64}, which has no containers\/[0-9a-f]{64}\/config\.v2\.json$/;

/** What is wrong with the store under `root` after a kill (empty: consistent). */
async function inconsistencies(root: string): Promise<string[]> {
  const out: string[] = [];
  const layerdb = path.join(root, 'image', 'vfs', 'layerdb', 'sha256');
  for (const name of fs.existsSync(layerdb) ? fs.readdirSync(layerdb) : []) {
    const dir = path.join(layerdb, name);
    const files = fs.readdirSync(dir).sort();
    const want = files.includes('parent') ? ['cache-id', 'diff', 'parent', 'size', 'tar-split.json.gz'] : ['cache-id', 'diff', 'size', 'tar-split.json.gz'];
    if (files.join() !== want.join()) out.push(`${dir}: holds ${files.join(', ')}`);
    else {
      const read = (f: string) => fs.readFileSync(path.join(dir, f), 'utf8');
      if (chainIdOf(files.includes('parent') ? read('parent') : null, read('diff')) !== `sha256:${name}`) out.push(`${dir}: not the chain id of its parent and diff`);
    }
  }
  if (detectLayout(root) === null) return out; // killed before imagedb/layerdb existed
  const model = await openStore(root, { driver: 'vfs' });
  const report = await verifyStore(model);
  for (const p of report.problems) {
    if (p.severity === 'error' && !ORPHAN_MOUNT.test(p.message)) out.push(`${p.path}: ${p.message}`);
  }
  return out;
}

asRoot({ serial: true })('SIGKILL at seeded points of a store write: every layer complete or absent, no partial file, verify clean', async (t) => {
  t.timeout(120_000);
  const tmp = tempDir('strata-writer-kill-');
  t.teardown(tmp.cleanup);
  const full = runWorker(path.join(tmp.dir, 'full'), 0);
  t.is(full.status, 0, full.stderr);
  const total = Number(/^ops (\d+)$/m.exec(full.stdout)?.[1]);
  t.true(total > 100, full.stdout);
  t.deepEqual(await inconsistencies(path.join(tmp.dir, 'full')), []);

  const rng = new Rng(SEED);
  const seen = { layers: new Set<number>(), images: new Set<number>() };
  for (let k = 0; k < KILLS; k++) {
    // one point in each of KILLS equal slices of the write, so every stage is hit
    const at = 1 + Math.floor(((k + rng.next()) * total) / KILLS);
    const root = path.join(tmp.dir, `kill-${k}`);
    const r = runWorker(root, at);
    t.is(r.signal, 'SIGKILL', `killAt ${at}: ${r.stderr}`);
    const bad = await inconsistencies(root);
    t.deepEqual(bad, [], `seed ${SEED}, killed at operation ${at} of ${total}`);
    const layerdb = path.join(root, 'image', 'vfs', 'layerdb', 'sha256');
    seen.layers.add(fs.existsSync(layerdb) ? fs.readdirSync(layerdb).length : 0);
    const content = path.join(root, 'image', 'vfs', 'imagedb', 'content', 'sha256');
    seen.images.add(fs.existsSync(content) ? fs.readdirSync(content).filter((n) => !n.startsWith('.')).length : 0);
    fs.rmSync(root, { recursive: true, force: true });
  }
  // the kills landed at different stages of the write, not all before or after it
  t.true(seen.layers.size >= 3, `layer counts seen: ${[...seen.layers].join(', ')}`);
  t.true(seen.images.size >= 2, `image counts seen: ${[...seen.images].join(', ')}`);
});
