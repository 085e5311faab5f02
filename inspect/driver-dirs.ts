// Where each graphdriver keeps a layer's data, read without initialising the
// driver (a driver's init probes and creates directories in its home, which a
// read-only inspection must not do). Layouts are moby's (graphdrivers.md §2):
//
//   overlay2, fuse-overlayfs  <home>/<id>/{diff,link,lower,work,merged}, <home>/l/<LINKID> → ../<id>/diff
//   aufs                      <home>/diff/<id>, <home>/layers/<id> (parent ids, nearest first), <home>/mnt/<id>
//   overlay                   <home>/<id>/root (image layers, full tree) | <home>/<id>/{upper,work,merged,lower-id}
//   vfs                       <home>/dir/<id> (full tree)
//   btrfs                     <home>/subvolumes/<id> (full tree)
//   zfs                       <home>/graph/<id> (mount points; data lives in the pool)
//   devicemapper              <home>/metadata/<id> (device JSON), <home>/mnt/<id>/rootfs (only while mounted)
//   docker ≤ 0.6 ("graph")    <root>/graph/<id>/layer (aufs branch), <root>/containers/<id>/rw
//
// Diffs of container layers go through the strata vfs driver (constructed
// directly, no init) or the archive change walkers on the diff dirs (overlay2:
// its native path, on lowers checked by overlay2-links.ts).
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Change } from '../archive/types.ts';
import type { DiffFormat } from '../archive/diff-format.ts';
import type { Driver } from '../drivers/driver.ts';
import { LINK_DIR } from '../drivers/overlay2/layout.ts';
import { treeSize } from './layer-sizes.ts';

// The drivers and change walkers (and the FFI bindings under them) are loaded
// by the operations that use them, so listing a store does not pay for them.
const changesLib = () => import('../archive/changes.ts');
import { overlay2Lowers } from './overlay2-links.ts';
import { TEXT_CAP, isDirectory, listSorted, readFileReadOnly } from '../sys/read-only-files.ts';
import { devmapperPaths, kernelHasDeviceMapper, withDeviceMounted } from './devmapper-thin.ts';

/** The drivers whose layouts are known here (moby's six + fuse-overlayfs, zfs) and docker 0.x's graph-only layout. */
export const KNOWN_LAYOUTS = ['overlay2', 'fuse-overlayfs', 'aufs', 'overlay', 'btrfs', 'devicemapper', 'vfs', 'zfs'] as const;

/** The pre-0.7 layout: layers in graph/<id>/layer, no driver directory. */
export const GRAPH_LAYOUT = 'graph';

export interface DriverUnit {
  /** the driver id (directory name), e.g. a cache-id, "<mount-id>-init" */
  id: string;
  /** every path that belongs to this id (aufs: diff, layers and mnt entries) */
  paths: string[];
}

export interface DriverInventory {
  units: DriverUnit[];
  /** paths in the home that belong to no layer id (l/, backingFsBlockDev, metadata files…) */
  other: string[];
  /** overlay2 l/ entries whose target does not exist */
  danglingLinks: string[];
}

/** Read-only view of one driver's home directory. */
export class DriverDirs {
  /** `root`: the docker data root; the home is `<root>/<name>` (the data root itself for "graph"). */
  constructor(readonly name: string, readonly root: string) {}

  get home(): string {
    return this.name === GRAPH_LAYOUT ? path.join(this.root, 'graph') : path.join(this.root, this.name);
  }

  /** A driver whose layer dirs hold only the layer's own changes (with whiteouts), not its full tree. */
  get holdsDiffs(): boolean {
    return this.name === 'overlay2' || this.name === 'fuse-overlayfs' || this.name === 'aufs' || this.name === GRAPH_LAYOUT;
  }

  /** Whiteout form of the diff dirs. */
  get diffFormat(): DiffFormat {
    if (this.name === 'aufs' || this.name === GRAPH_LAYOUT) return 'aufs';
    return this.name === 'fuse-overlayfs' ? 'fuse-overlayfs' : 'overlay';
  }

  /** filesDir, or its reason as an error. */
  private reachableDir(id: string): string {
    const f = this.filesDir(id);
    if (f.dir === null) throw new Error(f.reason);
    return f.dir;
  }

  /**
   * The directory in which the files a layer's tar names are found: its own
   * changes (overlay2, aufs) or its full tree (vfs, btrfs, overlay image
   * layers…). null with a reason when the data cannot be reached offline.
   */
  filesDir(id: string): { dir: string } | { dir: null; reason: string } {
    const h = this.home;
    let dir: string;
    switch (this.name) {
      case 'overlay2':
      case 'fuse-overlayfs':
        dir = path.join(h, id, 'diff');
        break;
      case 'aufs':
        dir = path.join(h, 'diff', id);
        break;
      case 'overlay': {
        const root = path.join(h, id, 'root');
        dir = isDirectory(root) ? root : path.join(h, id, 'upper');
        break;
      }
      case 'vfs':
        dir = path.join(h, 'dir', id);
        break;
      case 'btrfs':
        dir = path.join(h, 'subvolumes', id);
        break;
      case 'zfs':
        dir = path.join(h, 'graph', id);
        if (!isDirectory(dir) || fs.readdirSync(dir).length === 0) {
          return { dir: null, reason: `zfs dataset for ${id} is not mounted at ${dir}` };
        }
        break;
      case 'devicemapper':
        dir = path.join(h, 'mnt', id, 'rootfs');
        if (!isDirectory(dir)) {
          // the pool is read in userspace only through withFilesDir (when the kernel has no dm)
          return { dir: null, reason: `devicemapper device for ${id} is not mounted (${dir}); this path reads only mounted devices` };
        }
        break;
      case GRAPH_LAYOUT:
        // an image layer, or a docker ≤ 0.6 container's rw branch
        dir = isDirectory(path.join(h, id)) ? path.join(h, id, 'layer') : path.join(this.root, 'containers', id, 'rw');
        break;
      default:
        return { dir: null, reason: `unknown storage driver ${this.name}` };
    }
    if (!isDirectory(dir)) return { dir: null, reason: `${dir} is missing` };
    return { dir };
  }

  /**
   * A devicemapper store whose thin devices this kernel cannot activate (no
   * /sys/class/misc/device-mapper or no dmsetup): its layers are read by
   * rebuilding the thin devices in userspace (inspect/devmapper-thin.ts).
   */
  get readsThinPoolInUserspace(): boolean {
    return this.name === 'devicemapper' && fs.existsSync(devmapperPaths(this.root).metadata) && !kernelHasDeviceMapper();
  }

  /**
   * fn on the directory of layer `id`'s files (as filesDir). A devicemapper
   * device that is not mounted is, when readsThinPoolInUserspace, rebuilt from
   * the pool and loop-mounted read-only for the duration of fn, then unmounted
   * and removed. Throws filesDir's reason when the files cannot be reached.
   */
  async withFilesDir<T>(id: string, fn: (dir: string) => Promise<T>): Promise<T> {
    const f = this.filesDir(id);
    if (f.dir !== null) return fn(f.dir);
    if (!this.readsThinPoolInUserspace) throw new Error(f.reason);
    return withDeviceMounted(this.root, id, (mnt) => {
      const rootfs = path.join(mnt, 'rootfs');
      if (!isDirectory(rootfs)) throw new Error(`thin device of ${id} has no rootfs/ directory`);
      return fn(rootfs);
    });
  }

  /**
   * Layer `id` can be read: its directory is there, or (readsThinPoolInUserspace)
   * dockerd's record of its thin device is, for withFilesDir to rebuild it.
   */
  reachable(id: string): boolean {
    if (this.filesDir(id).dir !== null) return true;
    return this.readsThinPoolInUserspace && fs.existsSync(devmapperPaths(this.root).devInfo(id));
  }

  /** fn on the full trees of `id` and of `parent` (null: none), each through withFilesDir. */
  private withTrees<T>(id: string, parent: string | null, fn: (own: string, base: string | null) => Promise<T>): Promise<T> {
    return this.withFilesDir(id, (own) => (parent ? this.withFilesDir(parent, (base) => fn(own, base)) : fn(own, null)));
  }

  /** Parent ids recorded by the driver itself, nearest first (aufs layers/<id>, overlay2 lower), when it records them. */
  recordedLowers(id: string): string[] | null {
    try {
      if (this.name === 'aufs') {
        const t = readFileReadOnly(path.join(this.home, 'layers', id), TEXT_CAP).toString('utf8');
        return t.split('\n').map((s) => s.trim()).filter(Boolean);
      }
      if (this.name === 'overlay2' || this.name === 'fuse-overlayfs') return overlay2Lowers(this.home, id);
    } catch {
      return null;
    }
    return null;
  }

  /**
   * What `docker diff` shows for layer `id` against `parent` (a container's
   * RW layer against its init layer): through the strata driver where there
   * is one, else the change walkers over the same directories. `lowers`
   * (driver ids, nearest first) replaces the parents the driver records,
   * for layouts that record none (docker ≤ 0.6). Throws when the data is not
   * reachable.
   */
  async changes(id: string, parent: string | null, lowers?: string[]): Promise<Change[]> {
    const { changesDirs, changesFromDiffDir } = await changesLib();
    switch (this.name) {
      case 'vfs':
        return (await this.vfs()).changes(id, parent);
      case 'overlay2':
        // what the overlay2 driver's native changes() does, on checked lowers
        this.overlay2NativeOnly(id, parent);
        return changesFromDiffDir(this.reachableDir(id), (this.recordedLowers(id) ?? []).map((l) => this.reachableDir(l)), this.diffFormat);
      case 'fuse-overlayfs':
      case 'aufs':
      case GRAPH_LAYOUT: {
        const lowerDirs = (lowers ?? this.recordedLowers(id) ?? []).map((l) => this.reachableDir(l));
        return changesFromDiffDir(this.reachableDir(id), lowerDirs, this.diffFormat);
      }
      default:
        return this.withTrees(id, parent, async (own, base) => changesDirs(own, base));
    }
  }

  /**
   * moby DiffSize of a container layer against its init layer (docker's
   * SizeRw): the strata driver's diffSize for overlay2 (directory.Size of the
   * diff) and vfs (changes, then ChangesSize); directory.Size of the own
   * changes for the other diff-dir layouts; changes + ChangesSize otherwise.
   */
  async diffSize(id: string, parent: string | null, lowers?: string[]): Promise<number> {
    switch (this.name) {
      case 'vfs':
        return (await this.vfs()).diffSize(id, parent);
      case 'overlay2':
        // the overlay2 driver's native diffSize: directory.Size of the diff
        this.overlay2NativeOnly(id, parent);
        return treeSize(this.reachableDir(id));
      case 'fuse-overlayfs':
      case 'aufs':
      case GRAPH_LAYOUT: {
        return treeSize(this.reachableDir(id));
      }
      default: {
        const { changesDirs, changesSize } = await changesLib();
        return this.withTrees(id, parent, async (own, base) => changesSize(own, changesDirs(own, base)));
      }
    }
  }

  /**
   * overlay2 compares a layer with its direct parent from the diff dirs alone
   * (the driver's native path); against anything else it would mount (its
   * naive path), which writes into the home. Offline, only the native case is
   * done, and only on a `lower` whose links all stay inside the home
   * (overlay2Lowers throws naming the bad entry). It is done here, not by the
   * driver, so every file is read through the store readers (O_NOATIME,
   * O_NONBLOCK, caps).
   */
  private overlay2NativeOnly(id: string, parent: string | null): void {
    const lowers = overlay2Lowers(this.home, id);
    const direct = parent === null ? lowers.length === 0 : lowers[0] === parent;
    if (!direct) {
      throw new Error(`layer ${id} is not a child of ${parent ?? 'nothing'} by its ${path.join(this.home, id, 'lower')} (${lowers[0] ?? 'a base layer'}); comparing them would need a mount, which an offline read does not do`);
    }
  }

  /** moby GetMetadata-like paths for `strata inspect` (no mount happens). */
  metadata(id: string): Record<string, string> {
    const h = this.home;
    switch (this.name) {
      case 'overlay2':
      case 'fuse-overlayfs': {
        const md: Record<string, string> = {
          MergedDir: path.join(h, id, 'merged'), UpperDir: path.join(h, id, 'diff'), WorkDir: path.join(h, id, 'work'),
        };
        const lowers = this.recordedLowers(id);
        if (lowers && lowers.length) md.LowerDir = lowers.map((l) => path.join(h, l, 'diff')).join(':');
        return md;
      }
      case 'aufs':
        return { DiffDir: path.join(h, 'diff', id), LayersFile: path.join(h, 'layers', id), MountDir: path.join(h, 'mnt', id) };
      case 'devicemapper':
        return { MetadataFile: path.join(h, 'metadata', id), MountDir: path.join(h, 'mnt', id) };
      default: {
        const f = this.filesDir(id);
        return f.dir === null ? {} : { SourceDir: f.dir };
      }
    }
  }

  private vfsDriver: Driver | null = null;

  /** The strata vfs driver (naive diffs) on this home, constructed without init. */
  private async vfs(): Promise<Driver> {
    const { VfsDriver } = await import('../drivers/vfs/vfs.ts');
    const { NaiveDiffDriver } = await import('../drivers/naive.ts');
    return (this.vfsDriver ??= new NaiveDiffDriver(new VfsDriver(this.home, 'offline read: no quota')));
  }

  /**
   * Every entry of the home, grouped by layer id, for disk accounting.
   * Non-layer entries (l/, backingFsBlockDev, metadata files) are `other`.
   */
  inventory(): DriverInventory {
    const h = this.home;
    const byId = new Map<string, string[]>();
    const other: string[] = [];
    const danglingLinks: string[] = [];
    const addUnit = (id: string, p: string) => {
      const list = byId.get(id);
      if (list) list.push(p);
      else byId.set(id, [p]);
    };
    const lsTyped = (d: string): fs.Dirent[] => {
      try {
        return fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      } catch {
        return [];
      }
    };
    const subdirLayout = (sub: string[]) => {
      for (const name of listSorted(h)) {
        if (sub.includes(name) && isDirectory(path.join(h, name))) {
          for (const id of listSorted(path.join(h, name))) addUnit(id, path.join(h, name, id));
        } else other.push(path.join(h, name));
      }
    };
    switch (this.name) {
      case 'overlay2':
      case 'fuse-overlayfs':
      case 'overlay':
        // entry types from readdir (d_type): no lstat per layer
        for (const e of lsTyped(h)) {
          const p = path.join(h, e.name);
          if (e.name === LINK_DIR && this.name !== 'overlay') {
            other.push(p);
            for (const l of lsTyped(p)) {
              const lp = path.join(p, l.name);
              if (l.isSymbolicLink() && !fs.existsSync(lp)) danglingLinks.push(lp);
            }
          } else if (e.isDirectory() && !e.name.startsWith('.')) addUnit(e.name, p);
          else other.push(p);
        }
        break;
      case 'aufs':
        subdirLayout(['diff', 'layers', 'mnt']);
        break;
      case 'vfs':
        subdirLayout(['dir']);
        break;
      case 'btrfs':
        subdirLayout(['subvolumes']);
        break;
      case 'zfs':
        subdirLayout(['graph']);
        break;
      case 'devicemapper':
        subdirLayout(['metadata', 'mnt']);
        // the pool's own records are not layers
        for (const meta of ['base', 'deviceset-metadata', 'transaction-metadata']) {
          const list = byId.get(meta);
          if (list) {
            byId.delete(meta);
            other.push(...list);
          }
        }
        break;
      case GRAPH_LAYOUT:
        for (const name of listSorted(h)) {
          const p = path.join(h, name);
          if (name !== '_tmp' && isDirectory(p)) addUnit(name, p);
          else other.push(p);
        }
        break;
      default:
        other.push(...listSorted(h).map((n) => path.join(h, n)));
    }
    const units = [...byId.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)).map(([id, paths]) => ({ id, paths }));
    return { units, other, danglingLinks };
  }
}

/** Driver homes present under a data root (non-empty known-layout directories), sorted. */
export function driverHomesIn(root: string): string[] {
  const found: string[] = [];
  for (const name of KNOWN_LAYOUTS) {
    const p = path.join(root, name);
    try {
      if (fs.statSync(p).isDirectory() && fs.readdirSync(p).length > 0) found.push(name);
    } catch {
      // absent
    }
  }
  return found;
}
