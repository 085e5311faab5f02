// vfs: every layer is a full, plain copy of its parent (moby
// daemon/graphdriver/vfs). No union filesystem, no mounts: works on any
// backing filesystem and needs nothing from the kernel, at the price of disk
// space and create time. Diffs are naive (drivers/naive.ts).
//
// Layout: <home>/dir/<id>/ is the layer's whole tree.
//
// Quota: the `size` storage option needs project quotas on the backing
// filesystem (drivers/quota.ts: xfs mounted with prjquota/pquota, or ext4
// with prjquota, and xfs_quota to set limits). The layer directory gets its
// own project id before the parent is copied in, so everything below it is
// charged to it. Without that, `size` fails with moby's ErrQuotaNotSupported.
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  InvalidParameterError, LayerNotFoundError, QuotaNotSupportedError, mustBeExistingHome, parentOrNull, parseStorageOptKeyValue,
  ramInBytes, validateId, type CreateOpts, type Driver, type InitOpts, type LayerInfo, type ProtoDriver,
} from '../driver.ts';
import { NaiveDiffDriver } from '../naive.ts';
import { readOnlyDriver } from '../read-only.ts';
import { ProjectQuota } from '../quota.ts';
import { LAYERS_DIR } from './layout.ts';
import { removeTree } from '../../archive/remove-tree.ts';
import { copyTree } from '../../archive/copy-tree.ts';

export const NAME = 'vfs';

const isRoot = process.getuid?.() === 0;

/** moby vfs Init: options `size=<bytes>` only (default quota for RW layers). No probes: the open modes differ in that `manage` creates nothing and `read-only` writes nothing (no quota, layer writes refused). */
export async function init(home: string, options: string[], opts: InitOpts = {}): Promise<Driver> {
  let defaultSize = 0;
  for (const opt of options) {
    const [key, val] = parseStorageOptKeyValue(opt);
    if (key === 'size') defaultSize = ramInBytes(val);
    else throw new InvalidParameterError(`unknown option ${key} for vfs`);
  }
  if (opts.mode === 'read-only') {
    mustBeExistingHome(NAME, home);
    // every layer is read below dir/: a hostile home's dir/ swapped for a symlink would read another tree
    const layers = path.join(home, LAYERS_DIR);
    if (fs.lstatSync(layers, { throwIfNoEntry: false })?.isSymbolicLink()) {
      throw new Error(`${NAME}: ${layers} is a symlink, not the directory of layers (not followed out of the home)`);
    }
    return readOnlyDriver(new NaiveDiffDriver(new VfsDriver(home, 'read-only open: no quota')), { getRefused: null, layerDir: (id) => path.join(layers, id) });
  }
  if (opts.mode === 'manage') mustBeExistingHome(NAME, home);
  else fs.mkdirSync(home, { recursive: true, mode: 0o710 });
  const quota = ProjectQuota.detect(home, layerDirs);
  if (defaultSize > 0 && typeof quota === 'string') throw new QuotaNotSupportedError(quota);
  return new NaiveDiffDriver(new VfsDriver(home, quota, defaultSize));
}

export class VfsDriver implements ProtoDriver {
  readonly name = NAME;

  /**
   * @param quota project quota control, or why there is none
   * @param defaultSize `size` driver option: quota for every RW layer (0 = none)
   */
  constructor(readonly home: string, private readonly quota: ProjectQuota | string, private readonly defaultSize = 0) {}

  /** `<home>/dir/<id>` */
  dir(id: string): string {
    return path.join(this.home, LAYERS_DIR, validateId(id));
  }

  async createReadWrite(id: string, parent: string | null, opts?: CreateOpts): Promise<void> {
    let size = this.defaultSize;
    for (const [key, val] of Object.entries(opts?.storageOpt ?? {})) {
      if (key === 'size') {
        if (typeof this.quota === 'string') throw new QuotaNotSupportedError(this.quota);
        size = ramInBytes(val);
      } else {
        throw new InvalidParameterError(`Storage opt ${key} not supported`);
      }
    }
    this.createLayer(id, parentOrNull(parent), size);
  }

  async create(id: string, parent: string | null, opts?: CreateOpts): Promise<void> {
    if (opts?.storageOpt && Object.keys(opts.storageOpt).length > 0) {
      throw new InvalidParameterError('--storage-opt is not supported for vfs on read-only layers');
    }
    this.createLayer(id, parentOrNull(parent), 0);
  }

  private createLayer(id: string, parent: string | null, size: number): void {
    const dir = this.dir(id);
    const parentDir = parent === null ? null : this.dir(parent);
    if (parentDir !== null && !isDir(parentDir)) throw new LayerNotFoundError(NAME, parent!, parentDir);
    fs.mkdirSync(path.dirname(dir), { recursive: true, mode: 0o710 });
    fs.mkdirSync(dir, 0o755); // EEXIST for an id already in use, as moby
    try {
      fs.chmodSync(dir, 0o755); // whatever the umask
      if (isRoot) fs.chownSync(dir, 0, 0);
      if (size > 0) (this.quota as ProjectQuota).setQuota(dir, size);
      if (parentDir !== null) copyTree(parentDir, dir);
    } catch (e) {
      removeTree(dir);
      throw e;
    }
  }

  async remove(id: string): Promise<void> {
    removeTree(this.dir(id)); // any depth: a layer may hold paths longer than PATH_MAX
  }

  async get(id: string): Promise<string> {
    const dir = this.dir(id);
    if (!isDir(dir)) throw new LayerNotFoundError(NAME, id, dir);
    return dir;
  }

  /** No mounts, nothing to release (moby vfs Put is a no-op too). */
  async put(id: string): Promise<void> {
    validateId(id);
  }

  exists(id: string): boolean {
    return isDir(this.dir(id));
  }

  status(): [string, string][] {
    return [];
  }

  /** moby HEAD: the layer directory, which is what migrations read. */
  metadata(id: string): Record<string, string> {
    const dir = this.dir(id);
    if (!isDir(dir)) throw new LayerNotFoundError(NAME, id, dir);
    return { SourceDir: dir };
  }

  async cleanup(): Promise<void> {}

  /** Layer ids (vfs records no parents). */
  layers(): LayerInfo[] {
    let names: string[];
    try {
      names = fs.readdirSync(path.join(this.home, 'dir'));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
    return names.sort().map((id) => ({ id }));
  }
}

/** Layer directories, which carry the project ids in use. */
function layerDirs(home: string): string[] {
  const root = path.join(home, 'dir');
  return fs.existsSync(root) ? fs.readdirSync(root).map((n) => path.join(root, n)) : [];
}

function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return false;
    throw e;
  }
}
