// What a migration will do, worked out from the store alone (nothing is
// written): which driver the root holds, every layer in parent-first order
// with how it moves, the containers, and the pre-flight refusals (a daemon
// on the root, a target that already holds data, too little space or too few
// inodes).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { layoutFor } from '../drivers/all.ts';
import { drivers } from '../drivers/registry.ts';
import { holdsData, type DriverLayout } from '../drivers/layout.ts';
import { modernDrivers } from '../layerstore/modern-store.ts';
import { openStore } from '../layerstore/store.ts';
import type { StoreModel } from '../layerstore/model.ts';
import { mountsUnder } from '../sys/mountinfo.ts';
import { socketRefusal } from './daemon-socket.ts';
import { layerInodes, metadataInodes } from './inodes.ts';
import { legacySourceOf } from './legacy.ts';
import { canLinkDiff } from './link-layer.ts';
import { treeBytes } from './tree-bytes.ts';

export interface MigrateOptions {
  root: string;
  to: string;
  /** the source driver; 'auto' (default): the one image/<driver> of the root */
  from?: string;
  dryRun?: boolean;
  resume?: boolean;
  rollback?: boolean;
  deleteSource?: boolean;
}

/** A migration refused or failed: one line naming the layer or file. */
export class MigrateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MigrateError';
  }
}

/**
 * A full disk met mid-run (pre-flight's figures are estimates, and other
 * writers share the filesystem) as one line naming the file being written;
 * null for any other error. Only the target and the staging area are ever
 * written, so the source is as it was.
 */
export function outOfSpace(e: unknown): MigrateError | null {
  const err = e as { code?: unknown; syscall?: unknown; path?: unknown } | null;
  if (err?.code !== 'ENOSPC' && err?.code !== 'EDQUOT') return null;
  const what = err.code === 'ENOSPC' ? 'no space left on device' : 'disk quota exceeded';
  const where = typeof err.path === 'string' ? `${err.path}: ` : '';
  const call = typeof err.syscall === 'string' ? ` (${err.syscall})` : '';
  return new MigrateError(`${where}${what}${call}, ${err.code}; the source is untouched: free space, then run again with --resume (or --rollback)`);
}

/**
 * How one layer moves: 'tar-split' (image layers: reassembled tar, DiffID checked twice), 'link' (image layers
 * whose source diff dir the target takes by hard links: link-layer.ts), 'diff' (containers' layers: changes
 * compared) or 'v1' (a legacy root's image layers: legacy.ts).
 */
export interface PlannedLayer {
  /** the driver id (cache-id, mount-id, init-id): kept, so layerdb's records stay true */
  id: string;
  /** the driver id of its parent, null for a base layer */
  parent: string | null;
  kind: 'image' | 'init' | 'rw';
  method: 'tar-split' | 'link' | 'diff' | 'v1';
  /** image layers: chain id, DiffID and tar-split file */
  chainId: string | null;
  diffId: string | null;
  tarSplit: string | null;
  /** bytes of the layer's own files in the source (what is copied) */
  bytes: number;
  /** inodes the layer takes in the target, an estimate (inodes.ts) */
  inodes: number;
}

export interface PlannedContainer {
  id: string;
  name: string;
  configPath: string;
  mountId: string | null;
}

/** For layers in plan order: each one's ancestors' driver ids, nearest first (what changes read as lowers). */
export function lowersIn(layers: readonly PlannedLayer[]): (l: PlannedLayer) => string[] {
  const parentOf = new Map(layers.map((l) => [l.id, l.parent]));
  return (l) => {
    const out: string[] = [];
    for (let p = l.parent; p; p = parentOf.get(p) ?? null) out.push(p);
    return out;
  };
}

export interface MigrationPlan {
  root: string;
  from: string;
  to: string;
  /** a ≤ 1.9 graph store, migrated to the modern layout on the way (legacy.ts) */
  legacy: boolean;
  layers: PlannedLayer[];
  containers: PlannedContainer[];
  bytesToCopy: number;
  bytesToLink: number;
  /** seconds, at the throughput measured for the generic path (bench/migrate.ts) */
  estimateSeconds: number;
  /** inodes the target needs: the layers' sum and metadataInodes */
  inodes: number;
  /** inodes of image/<to> and the staging area's files */
  metadataInodes: number;
  /** free bytes and inodes where the target home goes (inodes null: the filesystem has no inode limit, as btrfs) */
  free: { bytes: number; inodes: number | null };
}

/** bench/migrate.ts measured 55–73 MB/s of layer tar for the generic path on this 2-core host; an estimate, not a promise. */
const BYTES_PER_SECOND = 60e6;

export const STAGING_DIR = '.strata-migrate';

/** The source driver: `from`, or the only image/<driver> the root has. */
export function sourceDriverOf(root: string, from: string | undefined): string {
  const found = modernDrivers(root);
  if (from && from !== 'auto') {
    if (!found.includes(from)) throw new MigrateError(`${path.join(root, 'image', from)}: no such store (the root holds: ${found.join(', ') || 'none'})`);
    return from;
  }
  if (found.length === 0) throw new MigrateError(`${root}: holds no image/<driver>/ store to migrate`);
  if (found.length > 1) throw new MigrateError(`${root}: holds several stores (${found.join(', ')}); choose one with --from`);
  return found[0];
}

export function layoutOrFail(name: string): DriverLayout {
  const l = layoutFor(name);
  if (!l || !l.graphdriver) throw new MigrateError(`unknown storage driver ${JSON.stringify(name)}`);
  return l;
}

/** Image layers parent first, each once. */
function imageLayersInOrder(model: StoreModel): PlannedLayer[] {
  const out: PlannedLayer[] = [];
  const done = new Set<string>();
  const visit = (key: string, stack: Set<string>) => {
    if (done.has(key)) return;
    const l = model.layers.get(key);
    if (!l) throw new MigrateError(`${model.metaDir}: layer ${key} is named but not in layerdb`);
    if (stack.has(key)) throw new MigrateError(`${l.dir}: the layer's parent chain loops`);
    stack.add(key);
    if (l.parent) visit(l.parent, stack);
    if (!l.cacheId) throw new MigrateError(`${l.dir}: the layer has no cache-id`);
    const parent = l.parent ? model.layers.get(l.parent)!.cacheId : null;
    out.push({ id: l.cacheId, parent, kind: 'image', method: 'tar-split', chainId: l.chainId ?? l.key, diffId: l.diffId, tarSplit: l.tarSplit, bytes: 0, inodes: 0 });
    done.add(key);
  };
  for (const key of [...model.layers.keys()].sort()) visit(key, new Set());
  return out;
}

function containerLayers(model: StoreModel): PlannedLayer[] {
  const out: PlannedLayer[] = [];
  for (const c of model.containers) {
    if (!c.mountId) continue;
    const top = c.parentLayer ? model.layers.get(c.parentLayer)?.cacheId ?? null : null;
    if (c.parentLayer && !top) throw new MigrateError(`${c.configPath}: the container's layer ${c.parentLayer} is not in layerdb`);
    const base = { chainId: null, diffId: null, tarSplit: null, method: 'diff' as const, bytes: 0, inodes: 0 };
    if (c.initId) out.push({ ...base, id: c.initId, parent: top, kind: 'init' });
    out.push({ ...base, id: c.mountId, parent: c.initId ?? top, kind: 'rw' });
  }
  return out;
}

/** Refuse a root a daemon uses: a live pid in a pid file beside it, a socket that answers (daemon-socket.ts), a mount below it. */
export async function daemonRefusal(root: string): Promise<string | null> {
  for (const pidFile of [path.join(root, 'docker.pid'), path.join(path.dirname(root), 'docker.pid')]) {
    let pid: number;
    try {
      pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
    } catch {
      continue;
    }
    if (Number.isInteger(pid) && pid > 0 && fs.existsSync(`/proc/${pid}`)) return `${pidFile}: dockerd (pid ${pid}) is running on this root; stop it first`;
  }
  const socket = await socketRefusal(root);
  if (socket) return socket;
  const mounts = mountsUnder(root);
  if (mounts.length) return `${mounts[0].mountPoint}: mounted below the root (a daemon or container uses it); unmount it first`;
  return null;
}

/** Image layers take the fast path: the target links the source's diff form, and the home and the staging area (in the root) share a filesystem. */
function linksHere(src: DriverLayout, target: DriverLayout, home: string, root: string): boolean {
  if (src.holds !== 'diffs' || !canLinkDiff(src.diffFormat, target.linkableDiffs)) return false;
  try {
    return fs.statSync(home).dev === fs.statSync(root).dev;
  } catch {
    return false;
  }
}

/**
 * What the reader could not read (an image config, a layer's metadata, a
 * container's config) would not reach the target, and after --delete-source
 * it would be gone: a store with errors is refused, naming the first.
 */
function refuseDamaged(root: string, model: StoreModel): void {
  const errors = model.problems.errors;
  if (!errors.length) return;
  const more = errors.length > 1 ? ` (and ${errors.length - 1} more: strata verify --root ${root} lists them)` : '';
  throw new MigrateError(`${errors[0].path}: ${errors[0].message}${more}; a damaged store is not migrated, nothing was written`);
}

/** Read the store and plan the migration; throws MigrateError for what a run would refuse. */
export async function planMigration(opts: MigrateOptions): Promise<MigrationPlan> {
  const root = path.resolve(opts.root);
  if (!drivers.has(opts.to)) throw new MigrateError(`--to ${opts.to}: no such driver (strata drives: ${drivers.names().join(', ')})`);
  const legacyFrom = legacySourceOf(root, opts.from);
  const from = legacyFrom ?? sourceDriverOf(root, opts.from);
  if (from === opts.to) throw new MigrateError(`${root}: the store is already on ${from}`);
  const src = legacyFrom ? layoutFor(from)! : layoutOrFail(from);
  const model = await openStore(root, { driver: from });
  const images = imageLayersInOrder(model).map((l) => (legacyFrom ? { ...l, method: 'v1' as const, chainId: null } : l));
  const layers = [...images, ...containerLayers(model)];
  refuseDamaged(root, model); // after the layers' records were read: the model reads a file, and reports it, on first use
  const home = src.homeIn(root);
  for (const l of layers) {
    const f = src.filesDir(home, l.id);
    if (f.dir !== null) l.bytes = treeBytes(f.dir);
    else if (!src.rebuilt?.applies(home) || !src.rebuilt.has(home, l.id)) throw new MigrateError(`${from} layer ${l.id}: ${f.reason}`);
  }
  const target = layoutOrFail(opts.to);
  if (!legacyFrom && linksHere(src, target, home, root)) for (const l of layers) if (l.kind === 'image') l.method = 'link';
  const inodes = await layerInodes(layers, { layout: src, home }, target);
  for (const l of layers) l.inodes = inodes.get(l.id)!;
  // full trees hold their parents' bytes again: what moves is a layer's own diff, so count the top ones only roughly
  const bytesOf = (link: boolean) => layers.filter((l) => (l.method === 'link') === link).reduce((s, l) => s + l.bytes, 0);
  const bytesToCopy = bytesOf(false);
  const containers = model.containers.map((c) => ({ id: c.id, name: c.name, configPath: c.configPath, mountId: c.mountId }));
  const st = fs.statfsSync(root);
  const meta = metadataInodes(root, from, layers.length);
  return {
    root, from, to: opts.to, legacy: legacyFrom !== null, layers, containers, bytesToCopy, bytesToLink: bytesOf(true),
    estimateSeconds: Math.ceil(bytesToCopy / BYTES_PER_SECOND), inodes: layers.reduce((s, l) => s + l.inodes, meta),
    metadataInodes: meta,
    // f_files 0: no fixed inode table (btrfs allocates them as it goes)
    free: { bytes: st.bavail * st.bsize, inodes: st.files === 0 ? null : st.ffree },
  };
}

/** The pre-flight checks a run (not a dry run) makes before writing anything; `moved`: a resumed run's layers already staged. */
export async function preflight(plan: MigrationPlan, moved: ReadonlyMap<string, number> | null): Promise<void> {
  const resuming = moved !== null;
  const busy = await daemonRefusal(plan.root);
  if (busy) throw new MigrateError(busy);
  const target = layoutOrFail(plan.to);
  const home = target.homeIn(plan.root);
  if (!resuming) {
    if (holdsData(home)) throw new MigrateError(`${home}: already holds data; remove it or migrate elsewhere`);
    const meta = path.join(plan.root, 'image', plan.to);
    if (fs.existsSync(meta)) throw new MigrateError(`${meta}: already exists; remove it first`);
    const staging = path.join(plan.root, STAGING_DIR);
    if (fs.existsSync(staging)) throw new MigrateError(`${staging}: a migration was started here; run with --resume or --rollback`);
  }
  // a resumed run's staged layers have taken their bytes and inodes already
  const left = plan.layers.filter((l) => !moved?.has(l.id));
  const bytes = left.filter((l) => l.method !== 'link').reduce((s, l) => s + l.bytes, 0);
  if (bytes > plan.free.bytes) throw new MigrateError(`${plan.root}: ${bytes} bytes to copy, ${plan.free.bytes} free`);
  const inodes = left.reduce((s, l) => s + l.inodes, plan.metadataInodes);
  if (plan.free.inodes !== null && inodes > plan.free.inodes) {
    throw new MigrateError(`${plan.root}: the target needs about ${inodes} inodes, the filesystem has ${plan.free.inodes} free`);
  }
}
