// strata migrate across drivers on stores strata writes itself: after each run
// the target store verifies clean, every image's flattened tree and every
// DiffID is what it was, each container's changes are the same, the configs
// name the target driver and the source is byte for byte untouched.
import type { ExecutionContext } from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { sampleStoreSpec, writeModernStore } from '../fixtures/modern-store.ts';
import { asRoot, when } from './helpers/require.ts';
import { strata } from './helpers/strata-cli.ts';
import { loopBtrfs, loopBtrfsMissing } from './helpers/tiny-fs.ts';
import { sourceSnapshot, storeFacts, verifyProblems } from './helpers/migrate-store.ts';

function tempRoot(t: { teardown(fn: () => void): void }, base = os.tmpdir()): string {
  const dir = fs.mkdtempSync(path.join(base, 'strata-migrate-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return path.join(dir, 'root');
}

/** Migrate `root` from `from` to `to` through the CLI and check everything a migration keeps. */
async function migrateAndCheck(t: ExecutionContext, root: string, from: string, to: string, linked = false): Promise<void> {
  const before = await storeFacts(root, from);
  const source = sourceSnapshot(root, from, { linked });
  const r = strata(['migrate', '--root', root, '--to', to]);
  t.is(r.code, 0, r.stderr);
  t.deepEqual(sourceSnapshot(root, from, { linked }), source, 'the source is untouched');
  t.deepEqual(await verifyProblems(root, to), []);
  const after = await storeFacts(root, to);
  t.deepEqual(after.diffIds, before.diffIds);
  t.deepEqual(after.trees, before.trees);
  t.deepEqual(after.changes, before.changes);
  t.true(before.changes.size > 0 && [...before.changes.values()].every((c) => c.length > 0));
  for (const id of fs.readdirSync(path.join(root, 'containers'))) {
    t.is(JSON.parse(fs.readFileSync(path.join(root, 'containers', id, 'config.v2.json'), 'utf8')).Driver, to);
  }
}

/** Every regular file of `a` (recursively) and the same name in `b`: [path, inode in a, inode in b]. */
function inodePairs(a: string, b: string): [string, bigint, bigint | null][] {
  const out: [string, bigint, bigint | null][] = [];
  for (const e of fs.readdirSync(a, { withFileTypes: true, recursive: true })) {
    const p = path.join(e.parentPath, e.name);
    if (!e.isFile() || e.name.startsWith('.wh.')) continue;
    const other = fs.lstatSync(path.join(b, path.relative(a, p)), { bigint: true, throwIfNoEntry: false });
    out.push([path.relative(a, p), fs.lstatSync(p, { bigint: true }).ino, other?.ino ?? null]);
  }
  return out;
}

asRoot()('aufs → overlay2 on one filesystem: image layers are hard links (dry run says so), containers\' layers copies', async (t) => {
  const root = tempRoot(t);
  await writeModernStore(root, 'aufs', sampleStoreSpec());
  const dry = strata(['migrate', '--root', root, '--to', 'overlay2', '--dry-run', '--json']);
  t.is(dry.code, 0, dry.stderr);
  const plan = JSON.parse(dry.stdout);
  t.true(plan.bytesToLink > 0);
  t.deepEqual([...new Set(plan.layers.filter((l: { kind: string }) => l.kind === 'image').map((l: { method: string }) => l.method))], ['link']);
  t.true(plan.layers.filter((l: { kind: string }) => l.kind !== 'image').every((l: { method: string }) => l.method === 'diff'));
  const sourceDiff = (id: string) => path.join(root, 'aufs', 'diff', id);
  await migrateAndCheck(t, root, 'aufs', 'overlay2', true);
  let files = 0;
  for (const l of plan.layers as { id: string; kind: string }[]) {
    for (const [p, a, b] of inodePairs(sourceDiff(l.id), path.join(root, 'overlay2', l.id, 'diff'))) {
      files++;
      if (l.kind === 'image') t.is(b, a, `${l.id}/${p} is a link of the source's file`);
      else t.not(b, a, `${l.kind} layer ${l.id}/${p} is a copy (the kernel writes it in place)`);
    }
  }
  t.true(files > 0);
});

for (const [from, to] of [['vfs', 'overlay2'], ['overlay2', 'vfs'], ['aufs', 'vfs'], ['overlay', 'overlay2'], ['overlay2', 'overlay']]) {
  asRoot()(`${from} → ${to}: images, layers and containers kept, source untouched`, async (t) => {
    const root = tempRoot(t);
    await writeModernStore(root, from, sampleStoreSpec());
    await migrateAndCheck(t, root, from, to);
  });
}

when(loopBtrfsMissing() === null, loopBtrfsMissing() ?? '')('vfs → btrfs and btrfs → overlay2 on a btrfs root', async (t) => {
  const fsys = loopBtrfs();
  t.teardown(() => fsys.cleanup());
  const root = tempRoot(t, fsys.dir);
  await writeModernStore(root, 'vfs', sampleStoreSpec());
  await migrateAndCheck(t, root, 'vfs', 'btrfs');
  const other = tempRoot(t, fsys.dir);
  await writeModernStore(other, 'btrfs', sampleStoreSpec());
  await migrateAndCheck(t, other, 'btrfs', 'overlay2');
});
