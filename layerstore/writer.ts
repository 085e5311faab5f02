// The store writer: what moby's layer store, image store and reference store
// write for a pulled or committed image and a created container, in dockerd
// 20.10's file names, modes and formats (graphdrivers.md §4.2):
//
//   image/<driver>/layerdb/sha256/<chain>/{size,parent,diff,cache-id,tar-split.json.gz}
//   image/<driver>/layerdb/mounts/<container>/{mount-id,init-id,parent}
//   image/<driver>/imagedb/content/sha256/<id>, imagedb/metadata/sha256/<id>/{parent,lastUpdated}
//   image/<driver>/repositories.json
//   containers/<id>/{config.v2.json,hostconfig.json}
//
// Crash safety: every file through durable.ts; a layer directory (and a mount
// record, and a container directory) is filled under layerdb/tmp and renamed
// into place, as moby's AtomicWriteSet does, so it is complete or absent; and
// each write comes after what it names: layer data (the driver) before its
// layerdb entry, layers before the image config that lists them, images
// before the tags and containers that point at them, the RW layer record
// before the container. A crash leaves at most unreferenced leftovers (a
// driver dir, a layerdb/tmp entry, a .tmp- file, a mount record without its
// container): what a killed dockerd leaves too.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tarSource, type Driver, type TarInput } from '../drivers/driver.ts';
import { chainIdOf, digestHex, imageIdOf, isDigest, isHex64, sha256Digest } from './digests.ts';
import { StoreWriteError, dropStagingDir, makeStagingDir, mkdirDurable, renameDirDurable, writeFileDurable, writeStagedFile } from './durable.ts';
import { goJson } from './go-json.ts';
import { tagStoreBytes } from './tag-store.ts';
import { TarSplitRecorder, recordTarSplit } from './tar-split.ts';

/** A layer's layerdb record. */
export interface LayerMeta {
  diffId: string;
  /** chain id of the parent layer, null for a base layer */
  parent: string | null;
  /** the driver's id of the layer's data */
  cacheId: string;
  /** bytes, as the driver's applyDiff returned */
  size: number;
  /** gzip'd tar-split (TarSplitRecorder.finish) */
  tarSplit: Buffer;
}

export interface WrittenLayer extends LayerMeta {
  chainId: string;
  /** bytes of the layer tar (0 when the layer existed and nothing was applied) */
  tarBytes: number;
}

/** A container's RW layer record (layerdb/mounts/<container>). */
export interface MountMeta {
  mountId: string;
  initId: string | null;
  /** chain id the RW layer sits on */
  parent: string | null;
}

/** Writes one image/<driver> store (and containers/) under a data root. */
export class StoreWriter {
  readonly meta: string;
  private readonly layerdb: string;
  private readonly tmp: string;
  private readonly imagedb: string;

  private constructor(readonly root: string, readonly driverName: string) {
    this.meta = path.join(root, 'image', driverName);
    this.layerdb = path.join(this.meta, 'layerdb');
    this.tmp = path.join(this.layerdb, 'tmp');
    this.imagedb = path.join(this.meta, 'imagedb');
  }

  /** Open (making what is missing, in dockerd's modes) the store of `driverName` under `root`. */
  static open(root: string, driverName: string): StoreWriter {
    const w = new StoreWriter(path.resolve(root), driverName);
    mkdirDurable(w.root, 0o710);
    // image/<driver>/… is dockerd's own: no symlink below the root is followed there (containers/ may be one, writeContainer)
    mkdirDurable(path.join(w.imagedb, 'content', 'sha256'), 0o700, w.root);
    mkdirDurable(path.join(w.imagedb, 'metadata', 'sha256'), 0o700, w.root);
    mkdirDurable(w.layerdb, 0o700, w.root);
    for (const d of ['sha256', 'tmp', 'mounts']) mkdirDurable(path.join(w.layerdb, d), 0o755, w.root);
    mkdirDurable(path.join(w.root, 'containers'), 0o710);
    return w;
  }

  layerDir(chainId: string): string {
    return path.join(this.layerdb, 'sha256', digestHex(chainId));
  }

  hasLayer(chainId: string): boolean {
    return fs.existsSync(this.layerDir(chainId));
  }

  /** Record a layer whose data the driver already holds; returns its chain id (an existing layer is kept). */
  commitLayer(l: LayerMeta): string {
    return this.commit(l).chainId;
  }

  /** commitLayer, saying whether this call made the layer (false: it was there, or another writer made it first). */
  private commit(l: LayerMeta): { chainId: string; created: boolean } {
    if (!isDigest(l.diffId)) throw new StoreWriteError(this.layerdb, `layer DiffID ${JSON.stringify(l.diffId)} is not a sha256 digest`);
    // 64 hex, or a 16-hex graph id of 2013 that Docker 1.10's migration kept as cache-id
    if (!isHex64(l.cacheId.replace(/-init$/, '')) && !/^[0-9a-f]{16}$/.test(l.cacheId)) throw new StoreWriteError(this.layerdb, `cache id ${JSON.stringify(l.cacheId)} is not 64 hex digits`);
    if (l.parent !== null && !this.hasLayer(l.parent)) throw new StoreWriteError(this.layerDir(l.parent), `parent layer ${l.parent} is not in layerdb`);
    const chainId = chainIdOf(l.parent, l.diffId);
    const target = this.layerDir(chainId);
    if (fs.existsSync(target)) return { chainId, created: false };
    const stage = makeStagingDir(this.tmp, 'write-set-');
    try {
      // moby's order (layer/layer_store.go registerWithDescriptor)
      writeStagedFile(path.join(stage, 'size'), String(l.size), 0o644);
      if (l.parent !== null) writeStagedFile(path.join(stage, 'parent'), l.parent, 0o644);
      writeStagedFile(path.join(stage, 'diff'), l.diffId, 0o644);
      writeStagedFile(path.join(stage, 'cache-id'), l.cacheId, 0o644);
      writeStagedFile(path.join(stage, 'tar-split.json.gz'), l.tarSplit, 0o644);
      renameDirDurable(stage, target);
    } catch (e) {
      dropStagingDir(stage);
      // another writer (another process) committed the same chain id first: its layer is the one, as complete as ours
      if (fs.existsSync(target)) return { chainId, created: false };
      throw e;
    }
    return { chainId, created: true };
  }

  /**
   * Apply a layer tar with `driver` as layer `cacheId` on `parent` (recording
   * its tar-split and DiffID on the way), then record it. A layer already in
   * layerdb is not applied again when the tar is in memory (its DiffID known
   * up front); applied from a stream, the new copy is removed again.
   */
  async applyLayer(driver: Driver, tar: TarInput, parent: { chainId: string; cacheId: string } | null, cacheId: string): Promise<WrittenLayer> {
    if (tar instanceof Uint8Array) {
      const chainId = chainIdOf(parent?.chainId ?? null, sha256Digest(Buffer.from(tar.buffer, tar.byteOffset, tar.byteLength)));
      if (this.hasLayer(chainId)) return this.existing(chainId);
    }
    const rec = new TarSplitRecorder();
    await driver.create(cacheId, parent?.cacheId ?? null);
    let size: number;
    try {
      size = await driver.applyDiff(cacheId, parent?.cacheId ?? null, recordTarSplit(tarSource(tar) as AsyncIterable<Uint8Array>, rec));
    } catch (e) {
      // as moby's registerWithDescriptor: a layer that failed to apply is removed (a crash here leaves an orphan dir)
      await driver.remove(cacheId).catch(() => undefined);
      throw e;
    }
    const meta: LayerMeta = { diffId: rec.diffId(), parent: parent?.chainId ?? null, cacheId, size, tarSplit: rec.finish() };
    const { chainId, created } = this.commit(meta);
    if (created) return { ...meta, chainId, tarBytes: rec.size };
    // the layer was there already, or another writer recorded it meanwhile: its data is the layer's, ours goes
    await driver.remove(cacheId);
    return this.existing(chainId);
  }

  private existing(chainId: string): WrittenLayer {
    const dir = this.layerDir(chainId);
    const read = (n: string) => fs.readFileSync(path.join(dir, n), 'utf8').trim();
    const parent = fs.existsSync(path.join(dir, 'parent')) ? read('parent') : null;
    return {
      chainId, diffId: read('diff'), parent, cacheId: read('cache-id'), size: Number(read('size')),
      tarSplit: fs.readFileSync(path.join(dir, 'tar-split.json.gz')), tarBytes: 0,
    };
  }

  /**
   * Store an image config (its exact bytes: the id is their sha256) whose
   * layers are all in layerdb; `parent` (a local build's parent image) and
   * `lastUpdated` (moby: when it was tagged or committed) go to its metadata.
   */
  writeImage(configBytes: Buffer, opts: { layers: readonly string[]; parent?: string | null; lastUpdated?: string | null }): string {
    for (const c of opts.layers) if (!this.hasLayer(c)) throw new StoreWriteError(this.layerDir(c), `layer ${c} of the image is not in layerdb`);
    const id = imageIdOf(configBytes);
    const hex = digestHex(id);
    writeFileDurable(path.join(this.imagedb, 'content', 'sha256', hex), configBytes, 0o600);
    if (opts.parent || opts.lastUpdated) {
      const md = path.join(this.imagedb, 'metadata', 'sha256', hex);
      mkdirDurable(md, 0o700, this.root);
      if (opts.parent) {
        if (!this.hasImage(opts.parent)) throw new StoreWriteError(md, `parent image ${opts.parent} is not in imagedb`);
        writeFileDurable(path.join(md, 'parent'), opts.parent, 0o600);
      }
      if (opts.lastUpdated) writeFileDurable(path.join(md, 'lastUpdated'), opts.lastUpdated, 0o600);
    }
    return id;
  }

  hasImage(id: string): boolean {
    return isDigest(id) && fs.existsSync(path.join(this.imagedb, 'content', 'sha256', digestHex(id)));
  }

  /** Replace repositories.json with `refs` (familiar reference → image id); every image must be in imagedb. */
  writeTags(refs: ReadonlyMap<string, string>): void {
    const file = path.join(this.meta, 'repositories.json');
    for (const [ref, id] of refs) if (!this.hasImage(id)) throw new StoreWriteError(file, `${ref} names image ${id}, which is not in imagedb`);
    writeFileDurable(file, tagStoreBytes(refs), 0o600);
  }

  /**
   * A container's RW layer as moby's CreateRWLayer makes it: the init layer
   * `<mountId>-init` on `parent`, filled by `init` (mounted), the RW layer on
   * it, then the mount record.
   */
  async createRWLayer(driver: Driver, containerId: string, mountId: string, parent: { chainId: string; cacheId: string } | null, init: (rootfs: string) => void): Promise<MountMeta> {
    const initId = `${mountId}-init`;
    await driver.createReadWrite(initId, parent?.cacheId ?? null);
    const initFs = await driver.get(initId);
    try {
      init(initFs);
    } finally {
      await driver.put(initId);
    }
    await driver.createReadWrite(mountId, initId);
    const m: MountMeta = { mountId, initId, parent: parent?.chainId ?? null };
    this.writeMount(containerId, m);
    return m;
  }

  /** layerdb/mounts/<containerId>, complete or absent. */
  writeMount(containerId: string, m: MountMeta): void {
    const target = path.join(this.layerdb, 'mounts', containerId);
    if (!isHex64(containerId)) throw new StoreWriteError(target, 'container id is not 64 hex digits');
    if (m.parent !== null && !this.hasLayer(m.parent)) throw new StoreWriteError(target, `parent layer ${m.parent} is not in layerdb`);
    const stage = makeStagingDir(this.tmp, 'mount-', 0o755);
    try {
      writeStagedFile(path.join(stage, 'mount-id'), m.mountId, 0o644);
      if (m.initId !== null) writeStagedFile(path.join(stage, 'init-id'), m.initId, 0o644);
      if (m.parent !== null) writeStagedFile(path.join(stage, 'parent'), m.parent, 0o644);
      renameDirDurable(stage, target);
    } catch (e) {
      dropStagingDir(stage);
      throw e;
    }
  }

  /**
   * containers/<id>/{hostconfig.json,config.v2.json}: `config` (moby
   * container.Container, fields in its order) and `hostConfig` marshalled as
   * Go does. Staged and renamed in, so the directory is complete or absent;
   * when containers/ is on another file system (a symlink), written in place
   * with config.v2.json, what dockerd loads, last.
   */
  writeContainer(id: string, config: unknown, hostConfig: unknown): string {
    const containers = path.join(this.root, 'containers');
    const target = path.join(containers, id);
    if (!isHex64(id)) throw new StoreWriteError(target, 'container id is not 64 hex digits');
    const fill = (dir: string, write: typeof writeFileDurable) => {
      write(path.join(dir, 'hostconfig.json'), goJson(hostConfig), 0o644);
      write(path.join(dir, 'config.v2.json'), goJson(config), 0o600);
    };
    const sameFs = fs.statSync(containers).dev === fs.statSync(this.tmp).dev;
    if (!sameFs) {
      mkdirDurable(target, 0o710);
      fill(target, writeFileDurable);
      return target;
    }
    const stage = makeStagingDir(this.tmp, 'container-', 0o710);
    try {
      fill(stage, writeStagedFile);
      renameDirDurable(stage, target);
    } catch (e) {
      dropStagingDir(stage);
      throw e;
    }
    return target;
  }
}
