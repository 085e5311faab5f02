// strata migrate on legacy (≤ 1.9) roots: the Docker 0.6 graph store of
// fixtures/legacy-store.ts and the 1.9/aufs store of fixtures/docker19-store.ts
// become modern image/<to> stores, as Docker 1.10 migrated them. Each image's
// flattened tree is checked against one built from the legacy branches by GNU
// tar (aufs whiteouts applied by hand), not by strata's own export. The kills
// are real (SIGKILL of a strata migrate process); the rest runs in process.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { treeManifest } from '../archive/digest.ts';
import { writeDocker19Store } from '../fixtures/docker19-store.ts';
import { writeLegacyStore } from '../fixtures/legacy-store.ts';
import { openStore } from '../layerstore/store.ts';
import { runMigration } from '../migrate/migrate.ts';
import type { StoreModel } from '../layerstore/model.ts';
import { asRoot } from './helpers/require.ts';
import { migrateCli, rootSnapshot, storeFacts, verifyProblems } from './helpers/migrate-store.ts';

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-migrate-legacy-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** What verify may say of a migrated legacy root: only that graph/ is still there (the source, kept until --delete-source). */
const graphKept = (root: string) => [`warning ${path.join(root, 'graph')}: pre-1.10 graph/ is still here (read it with a copy of the root without image/)`];

function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
}

/** Walk `dir` for aufs whiteouts: [opaque dirs, whited-out paths], relative. */
function whiteouts(dir: string, rel = ''): [string[], string[]] {
  const opq: string[] = [];
  const gone: string[] = [];
  for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    const p = path.join(rel, e.name);
    if (e.name === '.wh..wh..opq') opq.push(rel);
    else if (e.name.startsWith('.wh..wh.')) continue;
    else if (e.name.startsWith('.wh.')) gone.push(path.join(rel, e.name.slice(4)));
    else if (e.isDirectory()) {
      const [o, g] = whiteouts(dir, p);
      opq.push(...o);
      gone.push(...g);
    }
  }
  return [opq, gone];
}

/** Digest of the tree the aufs branches `branches` (base first) give, flattened with GNU tar, as storeFacts digests a tree. */
async function flattenBranches(branches: string[], into: string): Promise<string> {
  fs.mkdirSync(into);
  for (const b of branches) {
    const [opq, gone] = whiteouts(b);
    for (const d of opq) for (const n of fs.existsSync(path.join(into, d)) ? fs.readdirSync(path.join(into, d)) : []) fs.rmSync(path.join(into, d, n), { recursive: true });
    for (const g of gone) fs.rmSync(path.join(into, g), { recursive: true, force: true });
    run('sh', ['-c', `tar -C "$1" --exclude='.wh.*' --xattrs -cf - . | tar -C "$2" --xattrs --xattrs-include='*' -xpf -`, 'sh', b, into]);
  }
  const h = createHash('sha256');
  for (const l of await treeManifest(into, { dirMtimes: false, rootMetadata: false })) h.update(l + '\n');
  fs.rmSync(into, { recursive: true });
  return h.digest('hex');
}

/** repo:tag → legacy image id (v1) or image id (modern). */
const tagsOf = (m: StoreModel) => new Map(m.tags.map((t) => [`${t.repository}:${t.tag}`, t.imageId]));

/** Migrate `root` (legacy; `branch` gives a v1 id's aufs branch) to `to` and check tags, trees and verify. */
async function migrateAndCheck(t: import('ava').ExecutionContext, root: string, to: string, branch: (id: string) => string): Promise<void> {
  const legacy = await openStore(root);
  t.is(legacy.kind, 'legacy');
  const chains = new Map([...legacy.images.values()].map((img) => [img.id, img.layers]));
  t.is((await runMigration({ root, to })).action, 'migrated');
  t.deepEqual(await verifyProblems(root, to), graphKept(root));
  const migrated = await openStore(root, { driver: to });
  t.is(migrated.kind, 'modern');
  const before = tagsOf(legacy);
  const after = tagsOf(migrated);
  t.deepEqual([...after.keys()].sort(), [...before.keys()].sort());
  const facts = await storeFacts(root, to);
  const scratch = path.join(path.dirname(root), 'flat');
  const want = new Map<string, string>(); // per v1 image: several tags name one
  for (const [ref, v1] of before) {
    if (!want.has(v1)) want.set(v1, await flattenBranches(chains.get(v1)!.map(branch), scratch));
    t.is(facts.trees.get(after.get(ref)!), want.get(v1), `${ref}: flattened tree`);
  }
}

asRoot()('the Docker 0.6 graph store → overlay2: same tags, same flattened trees, verify clean', async (t) => {
  const root = path.join(tempDir(t), 'root');
  await writeLegacyStore(root, 'built');
  await migrateAndCheck(t, root, 'overlay2', (id) => path.join(root, 'graph', id, 'layer'));
  const m = await openStore(root, { driver: 'overlay2' });
  // each image's history is its v1 chain's (HistoryFromConfig): the scooby build step on top
  const scooby = m.images.get(m.tags.find((x) => x.repository === 'scooby_snacks')!.imageId)!;
  t.deepEqual(scooby.history.map((h) => h.createdBy), ['', '/bin/sh -c touch scooby_snacks.txt']);
});

asRoot()('the Docker 1.9 aufs store → vfs: tags, trees, the container and its config.v2.json', async (t) => {
  const root = path.join(tempDir(t), 'root');
  const info = await writeDocker19Store(root);
  await migrateAndCheck(t, root, 'vfs', (id) => path.join(root, 'aufs', 'diff', id));
  const m = await openStore(root, { driver: 'vfs' });
  for (const c of info.containers.values()) {
    const rec = m.containers.find((x) => x.id === c.id)!;
    t.truthy(rec, `container ${c.id} in the migrated store`);
    const cfg = JSON.parse(fs.readFileSync(path.join(root, 'containers', c.id, 'config.v2.json'), 'utf8'));
    t.is(cfg.Driver, 'vfs');
    // its image: the migrated one whose top layer has the v1 image's id as cache-id
    const img = m.images.get(cfg.Image)!;
    t.is(m.layers.get(img.layers.at(-1)!)!.cacheId, c.image);
    t.is(rec.mountId, c.id);
    t.is(rec.initId, `${c.id}-init`);
  }
  // the container's changes read from the migrated vfs layers are those of its aufs branch
  const facts = await storeFacts(root, 'vfs');
  for (const c of info.containers.values()) {
    const [, gone] = whiteouts(path.join(root, 'aufs', 'diff', c.id));
    for (const g of gone) t.regex(facts.changes.get(c.id)!, new RegExp(`^D /${g}$`, 'm'));
  }
});

asRoot()('without tar-split (≤ 1.7) the DiffIDs come from the diffs, the same on every run', async (t) => {
  const dir = tempDir(t);
  const ids: string[][] = [];
  for (const n of ['a', 'b']) {
    const root = path.join(dir, n);
    await writeDocker19Store(root);
    for (const id of fs.readdirSync(path.join(root, 'graph'))) fs.rmSync(path.join(root, 'graph', id, 'tar-data.json.gz'), { force: true });
    t.is((await runMigration({ root, to: 'overlay2' })).action, 'migrated');
    t.deepEqual(await verifyProblems(root, 'overlay2'), graphKept(root));
    const m = await openStore(root, { driver: 'overlay2' });
    ids.push([...[...m.layers.values()].map((l) => `${l.key} ${l.diffId}`), ...m.images.keys()].sort());
  }
  t.true(ids[0].length > 0);
  t.deepEqual(ids[1], ids[0]);
});

for (const [point, how] of [['layer:2', 'rollback'], ['metadata', 'resume'], ['switch:image', 'rollback'], ['done', 'rollback']] as const) {
  asRoot()(`a legacy conversion killed at ${point}, then --${how}`, async (t) => {
    const root = path.join(tempDir(t), 'root');
    await writeDocker19Store(root);
    const rootBefore = rootSnapshot(root);
    const r = migrateCli(['--root', root, '--to', 'overlay2'], { STRATA_MIGRATE_CRASH_AT: point });
    t.is(r.signal, 'SIGKILL', `${r.code} ${r.stderr}`);
    const again = await runMigration({ root, to: 'overlay2', [how]: true });
    t.is(again.action, how === 'rollback' ? 'rolled-back' : 'migrated');
    if (how === 'rollback') t.deepEqual(rootSnapshot(root), rootBefore);
    else t.deepEqual(await verifyProblems(root, 'overlay2'), graphKept(root));
  });
}
