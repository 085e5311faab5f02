// A legacy (Docker ≤ 1.9) root migrated to the modern layout on the way, as
// Docker 1.10's migration did (moby migrate/v1, graphdrivers.md §7), but into
// the target driver and staged like every other migration:
//
// - each v1 layer moves into the target under its graph id (kept as cache-id,
//   as 1.10 kept it). Its DiffID: with a tar-data.json.gz (1.8+) the tar that
//   tar-split reassembles from the source's files (moby ChecksumForGraphID);
//   without one, the layer's diff (its diff dir, or its changes against its
//   parent) exported, its tar-split recorded on the way into applyDiff, and
//   reassembled once more from the target's files to check the DiffID.
// - then, under the staged root: layerdb (chain ids), imagedb configs made
//   from the v1 json (v1.MakeConfigFromV1Config: id/parent/Size dropped,
//   rootfs and history down the v1 chain added), metadata parent,
//   repositories.json from the legacy tag file, each container's
//   layerdb/mounts record and a config.v2.json from its config.json.
// - the switch moves those config.v2.json in; --rollback removes them.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { exportChanges, exportDir } from '../archive/export.ts';
import type { Driver } from '../drivers/driver.ts';
import type { DriverLayout } from '../drivers/layout.ts';
import { chainIdOf } from '../layerstore/digests.ts';
import { mkdirDurable, syncDir, writeFileDurable } from '../layerstore/durable.ts';
import { goJson } from '../layerstore/go-json.ts';
import { readLegacyStore } from '../layerstore/legacy-graph.ts';
import { modernDrivers } from '../layerstore/modern-store.ts';
import { detectLayout } from '../layerstore/store.ts';
import { DirFileGetter, recordTarSplit, TarSplitRecorder } from '../layerstore/tar-split.ts';
import { StoreWriter } from '../layerstore/writer.ts';
import { asObject, asString, readFileReadOnly } from '../sys/read-only-files.ts';
import { asLayerError, digestChecked, moveImageLayer, sourceChanges, withSourceFiles, type Moved, type SourceHome } from './convert.ts';
import type { Journal } from './journal.ts';
import { readContainerConfig } from './metadata.ts';
import { MigrateError, type MigrationPlan, type PlannedLayer } from './plan.ts';

/** The legacy source of `root` (its driver, or `graph` for docker ≤ 0.6); null when the root is not a legacy store. */
export function legacySourceOf(root: string, from: string | undefined): string | null {
  if (modernDrivers(root).length || detectLayout(root)?.kind !== 'legacy') return null;
  return readLegacyStore(root, from && from !== 'auto' ? { driver: from } : {}).driver;
}

/** Where a legacy run keeps what the staged layers gave (DiffID, tar-split) and the containers it writes a config.v2.json for. */
const legacyDir = (j: Journal) => path.join(j.dir, 'legacy');
const diffIdFile = (j: Journal, id: string) => path.join(legacyDir(j), `${id}.diffid`);
const tarSplitFile = (j: Journal, id: string) => path.join(legacyDir(j), `${id}.tar-split.json.gz`);
const containersList = (j: Journal) => path.join(legacyDir(j), 'containers');
/** present when the run made R/image (a legacy root has none): rollback removes it again */
const madeImageDir = (j: Journal) => path.join(legacyDir(j), 'made-image-dir');

/** A v1 layer's tar-data.json.gz is copied through memory (the store writer takes bytes): far above any real one, which is ~100 bytes a file. */
const TAR_SPLIT_CAP = 256 << 20;

/** The source's diff of `l` as a tar (aufs-form whiteouts for a diff dir). */
async function withLegacyDiff<T>(src: SourceHome, l: PlannedLayer, fn: (tar: AsyncIterable<Uint8Array>) => Promise<T>): Promise<T> {
  if (src.layout.holds === 'diffs') {
    const own = src.layout.filesDir(src.home, l.id);
    if (own.dir === null) throw new MigrateError(`v1 layer ${l.id}: ${own.reason}`);
    const form = src.layout.diffFormat === 'fuse-overlayfs' ? 'overlay' : src.layout.diffFormat ?? 'none';
    return fn(exportDir(own.dir, { whiteouts: form }) as AsyncIterable<Uint8Array>);
  }
  const changes = await sourceChanges(src, l, []);
  return withSourceFiles(src, l.id, (own) => fn(exportChanges(own, changes) as AsyncIterable<Uint8Array>));
}

/** Move v1 layer `l` into `target`, its DiffID and tar-split kept in the staging area. */
export async function moveLegacyLayer(src: SourceHome, target: Driver, targetLayout: DriverLayout, l: PlannedLayer, journal: Journal): Promise<Moved> {
  mkdirDurable(legacyDir(journal), 0o700);
  const problems: string[] = [];
  const problem = (p: string, m: string) => void problems.push(`${p} ${m}`);
  let moved: Moved;
  let diffId: string;
  let tarSplit: Buffer;
  if (l.tarSplit) {
    const tarData = l.tarSplit;
    diffId = await withSourceFiles(src, l.id, (dir) => digestChecked(tarData, new DirFileGetter(dir), problem, `v1 layer ${l.id}`));
    if (problems.length) throw new MigrateError(`v1 layer ${l.id}: source file ${problems[0]}; the source is untouched`);
    moved = await moveImageLayer(src, target, targetLayout, { ...l, diffId });
    tarSplit = readFileReadOnly(tarData, TAR_SPLIT_CAP, 'a tar-split kept in memory');
  } else {
    const rec = new TarSplitRecorder();
    await target.create(l.id, l.parent);
    const size = await asLayerError(`v1 layer ${l.id}`, withLegacyDiff(src, l, (tar) => target.applyDiff(l.id, l.parent, recordTarSplit(tar, rec))));
    diffId = rec.diffId();
    tarSplit = rec.finish();
    moved = { tarBytes: rec.size, size };
  }
  writeFileDurable(tarSplitFile(journal, l.id), tarSplit, 0o600);
  if (!l.tarSplit) {
    const f = targetLayout.filesDir(target.home, l.id);
    if (f.dir === null) throw new MigrateError(`v1 layer ${l.id}: the target's files cannot be read back (${f.reason})`);
    const again = await digestChecked(tarSplitFile(journal, l.id), new DirFileGetter(f.dir), problem, `v1 layer ${l.id}`);
    if (problems.length) throw new MigrateError(`v1 layer ${l.id}: target file ${problems[0]}`);
    if (again !== diffId) throw new MigrateError(`v1 layer ${l.id}: the migrated files give ${again}, its diff gave ${diffId}`);
  }
  writeFileDurable(diffIdFile(journal, l.id), diffId, 0o600);
  return moved;
}

/** moby v1.MakeConfigFromV1Config: the v1 json without its v1-only fields, rootfs and history added, keys sorted (a Go map). */
export function configFromV1(v1: Record<string, unknown>, diffIds: string[], history: Record<string, unknown>[]): Buffer {
  const c: Record<string, unknown> = { ...v1, rootfs: { type: 'layers', diff_ids: diffIds }, history };
  for (const k of ['id', 'parent', 'Size', 'parent_id', 'layer_id', 'throwaway']) delete c[k];
  return goJson(Object.fromEntries(Object.keys(c).sort().map((k) => [k, c[k]])));
}

/** moby v1.HistoryFromConfig: image.History's fields in its order, empty ones omitted. */
function historyOf(v1: Record<string, unknown>): Record<string, unknown> {
  const cmd = asObject(v1.container_config)?.Cmd;
  const h: Record<string, unknown> = { created: asString(v1.created) || '0001-01-01T00:00:00Z' };
  const createdBy = Array.isArray(cmd) ? cmd.map(asString).join(' ') : '';
  for (const [k, v] of [['author', asString(v1.author)], ['created_by', createdBy], ['comment', asString(v1.comment)]]) if (v) h[k] = v;
  return h;
}

/** image/<to>/ (layerdb, imagedb, tags, mounts) and the containers' config.v2.json, written under the staged root. */
export function writeLegacyMetadata(journal: Journal, plan: MigrationPlan, sizes: ReadonlyMap<string, number>): void {
  const model = readLegacyStore(plan.root, { driver: plan.from });
  if (!fs.existsSync(path.join(plan.root, 'image'))) writeFileDurable(madeImageDir(journal), '', 0o600);
  fs.rmSync(path.join(journal.stageRoot, 'image', plan.to), { recursive: true, force: true }); // a killed run's half
  fs.rmSync(path.join(journal.stageRoot, 'containers'), { recursive: true, force: true });
  const w = StoreWriter.open(journal.stageRoot, plan.to);
  const chains = new Map<string, string[]>(); // v1 id → chain ids, base first
  const diffIds = new Map<string, string[]>();
  const histories = new Map<string, Record<string, unknown>[]>();
  const imageIds = new Map<string, string>();
  for (const l of plan.layers.filter((x) => x.method === 'v1')) {
    const img = model.images.get(l.id);
    if (!img?.config) throw new MigrateError(`${path.join(model.metaDir, l.id, 'json')}: the v1 image JSON cannot be read`);
    const diffId = fs.readFileSync(diffIdFile(journal, l.id), 'utf8');
    const parentChain = l.parent ? chains.get(l.parent)! : [];
    const chainId = chainIdOf(parentChain.at(-1) ?? null, diffId);
    w.commitLayer({ diffId, parent: parentChain.at(-1) ?? null, cacheId: l.id, size: sizes.get(l.id)!, tarSplit: fs.readFileSync(tarSplitFile(journal, l.id)) });
    chains.set(l.id, [...parentChain, chainId]);
    diffIds.set(l.id, [...(l.parent ? diffIds.get(l.parent)! : []), diffId]);
    histories.set(l.id, [...(l.parent ? histories.get(l.parent)! : []), historyOf(img.config)]);
    const config = configFromV1(img.config, diffIds.get(l.id)!, histories.get(l.id)!);
    imageIds.set(l.id, w.writeImage(config, { layers: chains.get(l.id)!, parent: l.parent ? imageIds.get(l.parent)! : null }));
  }
  const refs = new Map<string, string>();
  for (const t of model.tags) {
    const id = imageIds.get(t.imageId);
    if (id) refs.set(t.digest ? `${t.repository}@${t.digest}` : `${t.repository}:${t.tag}`, id);
  }
  w.writeTags(refs);
  const written: string[] = [];
  for (const c of model.containers) {
    const image = c.imageId ? imageIds.get(c.imageId) ?? null : null;
    if (c.imageId && !image) throw new MigrateError(`${c.configPath}: the container's image ${c.imageId} is not in graph/`);
    if (c.mountId) w.writeMount(c.id, { mountId: c.mountId, initId: c.initId, parent: c.imageId ? chains.get(c.imageId)!.at(-1)! : null });
    // a container that has a config.v2.json already keeps it as it is
    if (path.basename(c.configPath) !== 'config.json' || fs.existsSync(path.join(path.dirname(c.configPath), 'config.v2.json'))) continue;
    const cfg = readContainerConfig(c.configPath); // no symlink, no FIFO, under the JSON cap
    if (image) cfg.Image = image;
    cfg.Driver = plan.to;
    const dir = path.join(journal.stageRoot, 'containers', c.id);
    mkdirDurable(dir, 0o710);
    writeFileDurable(path.join(dir, 'config.v2.json'), goJson(cfg), 0o600);
    written.push(c.id);
  }
  writeFileDurable(containersList(journal), written.map((id) => `${id}\n`).join(''), 0o600);
}

/** The switch's last step for a legacy root: each staged config.v2.json renamed beside its config.json (idempotent). */
export function switchLegacyContainers(journal: Journal): void {
  for (const id of listed(journal)) {
    const staged = path.join(journal.stageRoot, 'containers', id, 'config.v2.json');
    const file = path.join(journal.root, 'containers', id, 'config.v2.json');
    if (!fs.existsSync(staged)) {
      if (fs.existsSync(file)) continue;
      throw new MigrateError(`${staged}: missing, and ${file} is not there either: the staging area is damaged`);
    }
    fs.renameSync(staged, file);
    syncDir(path.dirname(file));
  }
}

/** --rollback of a legacy run, after the generic steps: the config.v2.json files it wrote go (the legacy root had none), and R/image if it made it. */
export function rollbackLegacy(journal: Journal): void {
  const image = path.join(journal.root, 'image');
  if (fs.existsSync(madeImageDir(journal)) && fs.existsSync(image) && fs.readdirSync(image).length === 0) {
    fs.rmdirSync(image);
    syncDir(journal.root);
  }
  for (const id of listed(journal)) {
    const file = path.join(journal.root, 'containers', id, 'config.v2.json');
    if (!fs.existsSync(file)) continue;
    fs.rmSync(file);
    syncDir(path.dirname(file));
  }
}

function listed(journal: Journal): string[] {
  try {
    return fs.readFileSync(containersList(journal), 'utf8').split('\n').filter(Boolean);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}
