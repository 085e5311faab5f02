// What a migration must keep, read from a data root: each image's flattened
// tree (the digest of its top layer's full tree, mounted through the driver
// where the layout holds diffs), every layer's DiffID by chain id, each
// container's changes, and a fingerprint of the source's files.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import '../../drivers/all.ts';
import { layoutFor } from '../../drivers/all.ts';
import { getDriver } from '../../drivers/registry.ts';
import { createHash } from 'node:crypto';
import { treeManifest } from '../../archive/digest.ts';
import { changeLetter } from '../../archive/types.ts';
import { openStore } from '../../layerstore/store.ts';
import { containerChanges } from '../../inspect/diff.ts';
import { verifyStore } from '../../inspect/verify.ts';
import { snapshotTree } from './store-snapshot.ts';

export interface StoreFacts {
  /** image id → digest of its flattened tree */
  trees: Map<string, string>;
  /** chain id → DiffID */
  diffIds: Map<string, string | null>;
  /** container id → `docker diff` lines */
  changes: Map<string, string>;
}

/** fn on the full tree of layer `id` of driver `name` under `root`: the files dir of a tree layout (rebuilt where it must be), else a mount. */
async function withTree<T>(root: string, name: string, id: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const layout = layoutFor(name)!;
  const home = layout.homeIn(root);
  if (layout.holds === 'trees') {
    const f = layout.filesDir(home, id);
    if (f.dir !== null) return fn(f.dir);
    return layout.rebuilt!.withFilesDir(home, id, fn);
  }
  const d = await getDriver(name, root);
  try {
    const dir = await d.get(id);
    try {
      return await fn(dir);
    } finally {
      await d.put(id);
    }
  } finally {
    await d.cleanup();
  }
}

/**
 * What a store keeps. `wholeSeconds`: mtimes compared to the second — a store
 * whose files were not written from its layer tars (the devicemapper fixture
 * makes its thin devices directly) has nanoseconds the tars never carried, and
 * a migration, which rebuilds each layer from its tar, cannot keep them.
 */
export async function storeFacts(root: string, driver: string, opts: { wholeSeconds?: boolean } = {}): Promise<StoreFacts> {
  const model = await openStore(root, { driver });
  const trees = new Map<string, string>();
  for (const img of model.images.values()) {
    const top = model.layers.get(img.layers[img.layers.length - 1])!;
    trees.set(img.id, await withTree(root, driver, top.cacheId!, async (dir) => {
      const lines = await treeManifest(dir, { dirMtimes: false, rootMetadata: false });
      const h = createHash('sha256');
      for (const l of lines) h.update((opts.wholeSeconds ? l.replace(/ mtime=(\d+)\.\d+/, ' mtime=$1') : l) + '\n');
      return h.digest('hex');
    }));
  }
  const diffIds = new Map([...model.layers.values()].map((l) => [l.key, l.diffId]));
  const changes = new Map<string, string>();
  for (const c of model.containers) {
    changes.set(c.id, (await containerChanges(model, c.id)).map((x) => `${changeLetter[x.kind]} ${x.path}`).join('\n'));
  }
  return { trees, diffIds, changes };
}

/** `strata verify`'s problems for the store of `driver` (empty: clean). */
export async function verifyProblems(root: string, driver: string): Promise<string[]> {
  const model = await openStore(root, { driver });
  const r = await verifyStore(model);
  return r.problems.map((p) => `${p.severity} ${p.path}: ${p.message}`);
}

/**
 * A fingerprint of the source: its driver home and image/<driver>. `linked`:
 * without regular files' ctimes — a hard link taken of a file (migrate's fast
 * path) moves its ctime, which is the link count changing, not the file.
 */
export function sourceSnapshot(root: string, driver: string, opts: { linked?: boolean } = {}): Map<string, string> {
  const out = new Map<string, string>();
  for (const dir of [path.join(root, driver), path.join(root, 'image', driver)]) {
    if (!fs.existsSync(dir)) continue;
    for (const [k, v] of snapshotTree(dir)) out.set(`${path.relative(root, dir)}/${k}`, opts.linked && (Number(v.split(' ')[0]) & 0o170000) === 0o100000 ? v.replace(/ c\d+/, '') : v);
  }
  return out;
}

/** The whole root without ctimes (nothing can set them back) and directories' mtimes (a rename into a dir moves them). */
export function rootSnapshot(root: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const [k, v] of snapshotTree(root)) {
    const [mode, owner, size, mtime, , ...rest] = v.split(' ');
    const isDir = (Number(mode) & 0o170000) === 0o040000;
    out.set(k, [mode, owner, isDir ? '' : size, isDir ? '' : mtime, ...rest].join(' '));
  }
  return out;
}

/** Run `strata migrate ARGS` with `env` added (STRATA_MIGRATE_CRASH_AT); `signal` is the one that ended it, if any. */
export function migrateCli(args: string[], env: Record<string, string> = {}): { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string } {
  const repo = path.resolve(import.meta.dirname, '..', '..');
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(repo, 'cli', 'main.ts'), 'migrate', ...args], {
    cwd: repo, encoding: 'utf8', maxBuffer: 64 << 20, env: { ...process.env, STRATA_DEBUG: '', ...env },
  });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}
