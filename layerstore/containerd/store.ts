// A containerd root (as Docker 29's containerd image store keeps it) read
// into the one StoreModel the inspect views render, plus what only
// containerd has (blobs, snapshots, leases) in `containerd`. Images are the
// namespace's image records (docker's namespace is `moby`), each resolved to
// this host's platform; layers are the config's chain ids, unpacked as
// committed snapshots of the root's snapshotter (overlayfs, native or btrfs:
// the one holding most of the namespace's snapshots; the others are read
// too, for df, verify and diff); containers are the
// namespace's container records, with docker's config.v2.json when the
// Docker root is given too. Read-only, always.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { chainIds } from '../digests.ts';
import { addTag, commandOf, containerStateOf, parseCreated, sortImageRefs, type ContainerRecord, type ImageRecord, type LayerRecord, type StoreModel } from '../model.ts';
import { historyOf } from '../modern-store.ts';
import { InspectError, Problems } from '../problems.ts';
import { StoreFiles } from '../store-files.ts';
import { BboltError } from '../bbolt.ts';
import { asObject, asString, isFile } from '../../sys/read-only-files.ts';
import { blobPath, CONTENT_DIR, diffIdsOf, resolveImage, type ResolvedImage } from './content.ts';
import { namespacesOf, openBolt, readNamespace, type CtrImage, type Namespace } from './meta-db.ts';
import { SnapshotterStore, type BackendSnapshot } from './snapshotter.ts';
import { SNAPSHOTTERS } from './snapshotters/all.ts';
import { META_DB } from './root.ts';

export { isContainerdRoot, META_DB } from './root.ts';

/** Docker's containerd namespace. */
export const DOCKER_NAMESPACE = 'moby';

export interface ContainerdOptions {
  /** the namespace to read (default: moby, else the only one there is) */
  namespace?: string;
  /** Docker's data root, for its containers/<id>/config.v2.json (Docker 29's pair of roots) */
  dockerRoot?: string;
  /** the snapshotter whose snapshots are the images' layers (default: the one holding most of the namespace's snapshots) */
  snapshotter?: string;
}

export interface ContainerdDetail {
  root: string;
  dockerRoot: string | null;
  namespace: string;
  namespaces: string[];
  ns: Namespace;
  /** the snapshotter the images' layers are read from */
  snapshotter: string;
  /** every snapshotter strata reads that has a metadata.db under the root, by name */
  snapshotters: Map<string, SnapshotterStore>;
  /** every image record, resolved to this platform, by name */
  resolved: Map<string, ResolvedImage>;
}

export interface ContainerdModel extends StoreModel {
  kind: 'containerd';
  containerd: ContainerdDetail;
}

export function isContainerdModel(m: StoreModel): m is ContainerdModel {
  return m.kind === 'containerd';
}

/** "docker.io/library/busybox:1" → "busybox:1", as the docker CLI shows a name. */
export function familiarName(name: string): string {
  return name.replace(/^docker\.io\//, '').replace(/^library\/(?=[^/]+$)/, '');
}

function chooseNamespace(all: string[], wanted: string | undefined, file: string): string {
  if (wanted !== undefined) {
    if (!all.includes(wanted)) throw new InspectError(`${file}: no namespace ${JSON.stringify(wanted)} (it has: ${all.join(', ') || 'none'})`, file);
    return wanted;
  }
  if (all.includes(DOCKER_NAMESPACE)) return DOCKER_NAMESPACE;
  if (all.length === 1) return all[0];
  throw new InspectError(`${file}: no namespace ${DOCKER_NAMESPACE}; choose one of ${all.join(', ') || '(none)'} with --namespace`, file);
}

/** The snapshotter's record of meta.db's snapshot `key` (a chain id, a container's key), through meta.db's name for it. */
export function backendOf(d: ContainerdDetail, key: string, snapshotter = d.snapshotter): BackendSnapshot | null {
  const name = d.ns.snapshots.get(snapshotter)?.get(key)?.name;
  return (name && d.snapshotters.get(snapshotter)?.records.get(name)) || null;
}

/** The store of the images' snapshotter; null when the root has no metadata.db for it. */
export function primaryStore(d: ContainerdDetail): SnapshotterStore | null {
  return d.snapshotters.get(d.snapshotter) ?? null;
}

/** Each snapshotter with a metadata.db under the root (a snapshotter that never stored a snapshot has none). */
function readSnapshotters(root: string, problems: Problems): Map<string, SnapshotterStore> {
  const out = new Map<string, SnapshotterStore>();
  for (const facts of SNAPSHOTTERS) {
    const store = SnapshotterStore.read(facts, root, problems);
    if (store) out.set(facts.name, store);
  }
  return out;
}

/** The images' snapshotter: the one asked for, else the one holding most of the namespace's snapshots (containerd's order on a tie). */
function chooseSnapshotter(stores: Map<string, SnapshotterStore>, ns: Namespace, wanted: string | undefined, file: string): string {
  const known = SNAPSHOTTERS.map((f) => f.name);
  if (wanted !== undefined) {
    if (!known.includes(wanted)) throw new InspectError(`${file}: snapshotter ${JSON.stringify(wanted)} is not one strata reads (${known.join(', ')})`, file);
    return wanted;
  }
  const held = (n: string) => (stores.has(n) ? ns.snapshots.get(n)?.size ?? 0 : -1);
  return known.reduce((best, n) => (held(n) > held(best) ? n : best), known[0]);
}

/** Read the containerd root `root`. Throws InspectError only when meta.db cannot be read at all. */
export function readContainerdStore(root: string, opts: ContainerdOptions = {}, problems = new Problems()): ContainerdModel {
  const abs = path.resolve(root);
  const file = path.join(abs, META_DB);
  const db = openBolt(file, problems);
  if (!db) throw new InspectError(`${file}: ${problems.list[problems.list.length - 1]?.message ?? 'cannot be read'}`, file);
  let ns: Namespace;
  let all: string[];
  try {
    all = namespacesOf(db);
    ns = readNamespace(db, chooseNamespace(all, opts.namespace, file));
  } catch (e) {
    if (e instanceof BboltError) throw new InspectError(e.message, file);
    throw e;
  } finally {
    db.close();
  }
  const snapshotters = readSnapshotters(abs, problems);
  for (const sn of ns.snapshots.keys()) {
    if (snapshotters.has(sn)) continue;
    const known = SNAPSHOTTERS.some((f) => f.name === sn);
    problems.warn(file, known ? `snapshots of the ${sn} snapshotter are listed, but the root has no metadata.db for it` : `snapshots of the ${sn} snapshotter are listed, not read (strata reads ${SNAPSHOTTERS.map((f) => f.name).join(', ')})`);
  }
  const snapshotter = chooseSnapshotter(snapshotters, ns, opts.snapshotter, file);
  const detail: ContainerdDetail = {
    root: abs, dockerRoot: opts.dockerRoot ? path.resolve(opts.dockerRoot) : null, namespace: ns.name, namespaces: all,
    ns, snapshotter, snapshotters, resolved: new Map(),
  };
  const model: ContainerdModel = {
    kind: 'containerd', era: 'docker-1.10+', root: abs, driver: snapshotter, metaDir: path.dirname(file),
    images: new Map(), layers: new Map(), containers: [], tags: [], problems, containerd: detail,
  };
  const files = new StoreFiles(problems);
  for (const img of ns.images) addImage(model, img, files);
  sortImageRefs(model);
  readContainers(model, files);
  return model;
}

function addImage(model: ContainerdModel, img: CtrImage, files: StoreFiles): void {
  const d = model.containerd;
  const r = resolveImage(d.root, img.name, img.target, files, d.ns.blobs);
  d.resolved.set(img.name, r);
  const id = img.target.digest;
  let rec = model.images.get(id);
  if (!rec) {
    const diffIds = diffIdsOf(r.configJson);
    const chains = chainIds(diffIds);
    let unpacked = 0;
    chains.forEach((chain, i) => {
      const snap = backendOf(d, chain);
      if (snap?.size) unpacked += snap.size;
      if (!model.layers.has(chain)) model.layers.set(chain, layerRecord(d, chain, diffIds[i], i ? chains[i - 1] : null, r, i, snap));
    });
    rec = {
      id, parent: null,
      created: parseCreated(r.configJson?.created) ?? img.createdAt,
      // docker 29 (moby daemon/containerd): the platform's content plus its unpacked snapshots
      size: r.manifest ? r.contentSize + unpacked : null,
      virtualSize: r.manifest ? r.contentSize + unpacked : null,
      layers: chains, config: r.configJson, configPath: r.configPath || (blobPath(d.root, id) ?? ''),
      history: historyOf(r.configJson, chains.length), tags: [], digests: [],
    } satisfies ImageRecord;
    model.images.set(id, rec);
  }
  const name = familiarName(img.name);
  const at = name.indexOf('@');
  const colon = name.lastIndexOf(':');
  const source = path.join(model.metaDir, 'meta.db');
  if (at >= 0) {
    // docker's dangling images are "moby-dangling@<digest>": no name to show
    if (!name.startsWith('moby-dangling@')) addTag(model, { repository: name.slice(0, at), tag: null, digest: name.slice(at + 1), imageId: id, source });
    return;
  }
  const repository = colon > name.lastIndexOf('/') ? name.slice(0, colon) : name;
  addTag(model, { repository, tag: colon > name.lastIndexOf('/') ? name.slice(colon + 1) : 'latest', digest: null, imageId: id, source });
  // moby lists the target digest under the repository (RepoDigests)
  const dig = `${repository}@${id}`;
  if (!rec.digests.includes(dig)) rec.digests.push(dig);
}

function layerRecord(d: ContainerdDetail, chain: string, diffId: string, parent: string | null, r: ResolvedImage, i: number, snap: BackendSnapshot | null): LayerRecord {
  const blob = r.layers[i] ? blobPath(d.root, r.layers[i].digest) : null;
  return {
    key: chain, diffId, chainId: chain, parent, size: snap?.size ?? null, cacheId: snap?.id ?? null, tarSplit: null,
    blob: blob && isFile(blob) ? blob : null,
    dir: (snap && primaryStore(d)?.ownDir(snap)) || path.join(d.root, CONTENT_DIR),
  };
}

function readContainers(model: ContainerdModel, files: StoreFiles): void {
  const d = model.containerd;
  const byName = new Map(d.ns.images.map((i) => [i.name, i.target.digest]));
  for (const c of d.ns.containers) {
    const sn = c.snapshotter ?? d.snapshotter;
    const snap = c.snapshotKey ? d.ns.snapshots.get(sn)?.get(c.snapshotKey) ?? null : null;
    const backend = snap?.name ? d.snapshotters.get(sn)?.records.get(snap.name) ?? null : null;
    if (c.snapshotKey && !snap) model.problems.add(path.join(model.metaDir, 'meta.db'), `container ${c.id}: its snapshot ${c.snapshotKey} is not in the namespace`);
    const rec: ContainerRecord = {
      id: c.id, name: c.id, imageId: (c.image && byName.get(c.image)) || null, driver: c.snapshotter,
      created: c.createdAt, running: false, state: containerStateOf(null), command: '', imageName: c.image ? familiarName(c.image) : null,
      mountId: backend?.id ?? null, initId: null, parentLayer: snap?.parent ?? null, configPath: path.join(model.metaDir, 'meta.db'),
    };
    const cfgPath = d.dockerRoot ? path.join(d.dockerRoot, 'containers', c.id, 'config.v2.json') : null;
    if (cfgPath && fs.existsSync(path.dirname(cfgPath))) {
      const cfg = files.jsonObject(cfgPath, { what: 'container config' })?.value ?? null;
      if (cfg) {
        rec.name = asString(cfg.Name).replace(/^\//, '') || c.id;
        rec.state = containerStateOf(cfg.State);
        rec.running = rec.state.running;
        rec.command = commandOf(cfg.Path, cfg.Args);
        rec.created = parseCreated(cfg.Created) ?? rec.created;
        rec.imageName = asString(asObject(cfg.Config)?.Image) || rec.imageName;
        rec.configPath = cfgPath;
      }
    }
    model.containers.push(rec);
  }
}

/** Where the images' snapshotter keeps the snapshot with id `id`, for inspect's GraphDriver.Data. */
export function snapshotDirs(d: ContainerdDetail, id: string): Record<string, string> {
  const store = primaryStore(d);
  const snap = store?.byId(id);
  return snap ? store!.dirs(snap) : {};
}
