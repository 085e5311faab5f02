// Docker ≥ 1.10 content-addressable store (graphdrivers.md §4.2):
//
//   image/<driver>/imagedb/content/sha256/<id>          image config (id = sha256 of these bytes)
//   image/<driver>/imagedb/metadata/sha256/<id>/parent  "sha256:<parent image id>"
//   image/<driver>/layerdb/sha256/<chain>/{diff,size,cache-id,parent,tar-split.json.gz}
//   image/<driver>/layerdb/mounts/<ctr>/{mount-id,init-id,parent}
//   image/<driver>/repositories.json
//   containers/<id>/config.v2.json (and hostconfig.json, only checked: dockerd skips a container it cannot read)
//
// Layer metadata files are read on first use (listing 1,000 images must not
// read 5,000 layers × 5 files), every read is read-only, and each unreadable
// or malformed file becomes a Problem naming it.
import * as path from 'node:path';
import { chainIds, isDigest, isHex64 } from './digests.ts';
import { CONTAINER_FIELDS, HISTORY_FIELDS, IMAGE_CONFIG_FIELDS, fieldTypeProblems } from './field-types.ts';
import {
  addTag, commandOf, containerStateOf, parseCreated, sortImageRefs, type ContainerRecord, type HistoryRecord, type LayerRecord, type StoreModel,
} from './model.ts';
import { Problems } from './problems.ts';
import { StoreFiles } from './store-files.ts';
import { readTagFile, splitReference } from './tag-store.ts';
import { asString as str, asObject as obj, isDirectory, lstatQuiet } from '../sys/read-only-files.ts';
import { readDirStrings } from '../sys/read-dir.ts';

export interface ModernOptions {
  /** which image/<driver> store to read when there are several */
  driver?: string;
}

/** The image/<driver> directories that hold a store (imagedb or layerdb inside). */
export function modernDrivers(root: string): string[] {
  const base = path.join(root, 'image');
  let names: string[];
  try {
    names = readDirStrings(base).sort();
  } catch {
    return [];
  }
  return names.filter((n) => isDirectory(path.join(base, n, 'imagedb')) || isDirectory(path.join(base, n, 'layerdb')));
}

/** A layerdb/sha256/<chain> directory; each file is read on first use. */
export class ModernLayer implements LayerRecord {
  private cache = new Map<string, unknown>();
  constructor(readonly key: string, readonly dir: string, private readonly files: StoreFiles) {}

  private once<T>(name: string, read: () => T): T {
    if (!this.cache.has(name)) this.cache.set(name, read());
    return this.cache.get(name) as T;
  }

  get chainId(): string {
    return this.key;
  }

  get diffId(): string | null {
    return this.once('diff', () => {
      const p = path.join(this.dir, 'diff');
      const s = this.files.text(p, { what: 'layer DiffID' });
      if (s !== null && !isDigest(s)) {
        this.files.problems.add(p, `layer DiffID is not a sha256 digest: ${JSON.stringify(s.slice(0, 80))}`);
        return null;
      }
      return s;
    });
  }

  get size(): number | null {
    return this.once('size', () => this.files.integer(path.join(this.dir, 'size'), { what: 'layer size' }));
  }

  get cacheId(): string | null {
    return this.once('cache-id', () => {
      const p = path.join(this.dir, 'cache-id');
      const s = this.files.text(p, { what: 'layer cache-id' });
      if (s !== null && (s.includes('/') || s === '.' || s === '..')) {
        this.files.problems.add(p, `cache-id is not a directory name: ${JSON.stringify(s)}`);
        return null;
      }
      return s;
    });
  }

  get parent(): string | null {
    return this.once('parent', () => {
      const p = path.join(this.dir, 'parent');
      const s = this.files.text(p, { required: false, what: 'layer parent' });
      if (s !== null && !isDigest(s)) {
        this.files.problems.add(p, `layer parent is not a sha256 chain id: ${JSON.stringify(s.slice(0, 80))}`);
        return null;
      }
      return s;
    });
  }

  get tarSplit(): string | null {
    return this.once('tar-split', () => {
      const p = path.join(this.dir, 'tar-split.json.gz');
      // whatever is there: its reader refuses (and names) anything but a regular file
      return lstatQuiet(p) ? p : null;
    });
  }

  get blob(): null {
    return null;
  }
}


/** History of a config: its `history` array, or one entry per layer for configs that have none. */
export function historyOf(config: Record<string, unknown> | null, layerCount: number): HistoryRecord[] {
  const h = config?.history;
  if (Array.isArray(h)) {
    return h.map((e) => {
      const o = obj(e) ?? {};
      return {
        created: parseCreated(o.created), createdBy: str(o.created_by), comment: str(o.comment),
        emptyLayer: o.empty_layer === true, author: str(o.author),
      };
    });
  }
  const created = parseCreated(config?.created);
  return Array.from({ length: layerCount }, () => ({ created, createdBy: '', comment: '', emptyLayer: false, author: '' }));
}

/** Read a modern store under `root`. Problems go to `problems`; nothing is written. */
export function readModernStore(root: string, opts: ModernOptions = {}, problems = new Problems()): StoreModel {
  const files = new StoreFiles(problems);
  const drivers = modernDrivers(root);
  let driver = opts.driver ?? null;
  if (driver === null) {
    if (drivers.length === 1) driver = drivers[0];
    else if (drivers.length > 1) {
      // prefer the one whose driver home has data
      const withData = drivers.filter((d) => isDirectory(path.join(root, d)) && (files.dir(path.join(root, d), { mayBeLink: true }) ?? []).length > 0);
      driver = withData[0] ?? drivers[0];
      problems.warn(path.join(root, 'image'), `image stores for several drivers (${drivers.join(', ')}); reading ${driver} (choose with --driver)`);
    } else driver = 'overlay2';
  }
  const metaDir = path.join(root, 'image', driver);
  if (!isDirectory(metaDir)) problems.add(metaDir, `no image store for driver ${driver}${drivers.length ? ` (found: ${drivers.join(', ')})` : ''}`);
  const model: StoreModel = {
    kind: 'modern', era: 'docker-1.10+', root, driver, metaDir,
    images: new Map(), layers: new Map(), containers: [], tags: [], problems,
  };

  // layers
  const layerBase = path.join(metaDir, 'layerdb', 'sha256');
  for (const name of files.subdirs(layerBase, 'layer directory', { required: false }) ?? []) {
    if (!isHex64(name)) {
      if (!name.endsWith('-removing')) problems.warn(path.join(layerBase, name), 'not a layer directory (name is not a sha256 hex digest)');
      continue;
    }
    model.layers.set(`sha256:${name}`, new ModernLayer(`sha256:${name}`, path.join(layerBase, name), files));
  }

  // images
  const chainMemo = new Map<string, string>(); // images share layer prefixes
  const contentDir = path.join(metaDir, 'imagedb', 'content', 'sha256');
  const metadataDir = path.join(metaDir, 'imagedb', 'metadata', 'sha256');
  // images with a metadata dir (local builds): the others have no parent file to open
  const withMetadata = new Set(files.subdirs(metadataDir, 'image metadata directory', { required: false }) ?? []);
  for (const name of files.dir(contentDir, { required: false }) ?? []) {
    const p = path.join(contentDir, name);
    if (!isHex64(name)) {
      problems.warn(p, 'not an image config (name is not a sha256 hex digest)');
      continue;
    }
    const id = `sha256:${name}`;
    const parsed = files.jsonObject(p, { what: 'image config' });
    const config = parsed?.value ?? null;
    if (config) {
      for (const m of fieldTypeProblems(config, IMAGE_CONFIG_FIELDS)) problems.add(p, `image config: ${m}`);
      if (Array.isArray(config.history)) {
        config.history.forEach((h, i) => {
          if (obj(h) === null) problems.add(p, `image config: "history[${i}]" is not an object`);
          else for (const m of fieldTypeProblems(obj(h)!, HISTORY_FIELDS, `history[${i}].`)) problems.add(p, `image config: ${m}`);
        });
      }
    }
    const rootfs = obj(config?.rootfs);
    const diffIds = Array.isArray(rootfs?.diff_ids) ? (rootfs!.diff_ids as unknown[]) : [];
    if (config && !Array.isArray(rootfs?.diff_ids)) problems.add(p, 'image config has no rootfs.diff_ids');
    const goodDiffIds: string[] = [];
    for (const d of diffIds) {
      if (typeof d === 'string' && isDigest(d)) goodDiffIds.push(d);
      else {
        problems.add(p, `rootfs.diff_ids holds ${JSON.stringify(d)}, not a sha256 digest`);
        break;
      }
    }
    const layers = chainIds(goodDiffIds, chainMemo);
    const parentFile = path.join(metadataDir, name, 'parent');
    const parentText = withMetadata.has(name) ? files.text(parentFile, { required: false, what: 'image parent' }) : null;
    let parent: string | null = null;
    if (parentText !== null) {
      if (isDigest(parentText)) parent = parentText;
      else problems.add(parentFile, `image parent is not a sha256 image id: ${JSON.stringify(parentText.slice(0, 80))}`);
    }
    model.images.set(id, {
      id, parent, created: parseCreated(config?.created), size: null, virtualSize: null, layers,
      config, configPath: p, history: historyOf(config, layers.length), tags: [], digests: [],
    });
  }
  // sizes: docker's Size is the sum of the image's layers
  for (const img of model.images.values()) {
    let total = 0;
    let known = true;
    for (const chain of img.layers) {
      const l = model.layers.get(chain);
      if (!l) {
        problems.add(path.join(layerBase, chain.slice(7)), `layer of image ${img.id} is missing from layerdb`);
        known = false;
        continue;
      }
      const s = l.size;
      if (s === null) known = false;
      else total += s;
    }
    img.size = known || total > 0 ? total : null;
    img.virtualSize = img.size;
  }

  // tags
  const reposFile = path.join(metaDir, 'repositories.json');
  for (const { repository: repo, key: ref, target } of readTagFile(files, reposFile, false) ?? []) {
    if (typeof target !== 'string' || !isDigest(target)) {
      problems.add(reposFile, `reference ${ref} points at ${JSON.stringify(target)}, not an image id`);
      continue;
    }
    const r = splitReference(ref);
    if (!addTag(model, { repository: repo, tag: r.tag, digest: r.digest, imageId: target, source: reposFile })) {
      problems.add(reposFile, `reference ${ref} points at image ${target}, which is not in imagedb`);
    }
  }
  sortImageRefs(model);

  readModernContainers(model, files);
  return model;
}

function readModernContainers(model: StoreModel, files: StoreFiles): void {
  const { root, metaDir, problems } = model;
  const mountsDir = path.join(metaDir, 'layerdb', 'mounts');
  const ctrDir = path.join(root, 'containers');
  const mounts = new Set(files.dir(mountsDir, { required: false }) ?? []);
  for (const id of files.dir(ctrDir, { required: false, mayBeLink: true }) ?? []) {
    const dir = path.join(ctrDir, id);
    if (!files.realDir(dir, 'container directory')) continue;
    const configPath = path.join(dir, 'config.v2.json');
    if (!lstatQuiet(configPath)) {
      if (lstatQuiet(path.join(dir, 'config.json'))) problems.warn(dir, 'container from Docker ≤ 1.9 that was never migrated (config.json only)');
      else problems.add(configPath, 'container config is missing');
      continue;
    }
    const cfg = files.jsonObject(configPath, { what: 'container config' })?.value ?? null;
    if (cfg) for (const m of fieldTypeProblems(cfg, CONTAINER_FIELDS)) problems.add(configPath, `container config: ${m}`);
    // not used here, but dockerd skips a container whose host config it cannot read (a missing one is a default)
    files.jsonObject(path.join(dir, 'hostconfig.json'), { required: false, what: 'container host config' });
    const config = obj(cfg?.Config);
    const state = obj(cfg?.State);
    const image = str(cfg?.Image);
    const driver = str(cfg?.Driver) || null;
    if (driver && driver !== model.driver) {
      problems.warn(configPath, `container was created with storage driver ${driver}, not ${model.driver} (dockerd would not restore it)`);
    }
    const md = path.join(mountsDir, id);
    let mountId: string | null = null;
    let initId: string | null = null;
    let parentLayer: string | null = null;
    const recorded = mounts.delete(id);
    if (recorded && files.realDir(md, 'RW layer record')) {
      const mp = path.join(md, 'mount-id');
      mountId = files.text(mp, { what: 'container mount-id' });
      if (mountId !== null && !/^[a-f0-9]{64}$/.test(mountId)) problems.add(mp, `invalid mount id value ${JSON.stringify(mountId)}`);
      const ip = path.join(md, 'init-id');
      initId = files.text(ip, { required: false, what: 'container init-id' });
      if (initId !== null && !/^[a-f0-9]{64}-init$/.test(initId)) problems.add(ip, `invalid init id value ${JSON.stringify(initId)}`);
      const pp = path.join(md, 'parent');
      parentLayer = files.text(pp, { required: false, what: 'container parent layer' });
      if (parentLayer !== null && !isDigest(parentLayer)) {
        problems.add(pp, `container parent is not a chain id: ${JSON.stringify(parentLayer)}`);
        parentLayer = null;
      }
    } else if (!recorded && (driver === model.driver || driver === null)) {
      problems.add(md, `container ${id} has no RW layer record in layerdb/mounts`);
    }
    const st = containerStateOf(state);
    const rec: ContainerRecord = {
      id, name: str(cfg?.Name).replace(/^\//, ''), imageId: image || null, driver,
      created: parseCreated(cfg?.Created), running: st.running, state: st, command: commandOf(cfg?.Path, cfg?.Args),
      imageName: str(config?.Image) || null, mountId, initId, parentLayer, configPath,
    };
    if (image && !model.images.has(image)) problems.add(configPath, `container image ${image} is not in imagedb`);
    model.containers.push(rec);
  }
  for (const id of mounts) problems.add(path.join(mountsDir, id), `RW layer record for container ${id}, which has no containers/${id}/config.v2.json`);
}
