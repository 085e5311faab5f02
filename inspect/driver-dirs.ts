// A driver home of a data root, as the offline views read it: a thin view
// over the driver folder's DriverLayout (drivers/layout.ts), which says where
// everything is. Comparisons choose their strategy from the layout's
// properties alone (offlineDiff): the driver's own read-only open, the change
// walkers over diff dirs, or the archive walkers over full trees.
import type { Change } from '../archive/types.ts';
import type { DiffFormat } from '../archive/diff-format.ts';
import { directorySize } from '../archive/tree-size.ts';
import type { Driver } from '../drivers/driver.ts';
import { unknownLayout, type DriverLayout, type FilesDir, type LayoutInventory } from '../drivers/layout.ts';
import { layoutFor } from '../drivers/all.ts';
import type { StoreModel } from '../layerstore/model.ts';

// The change walkers and the drivers (and the FFI bindings under them) are
// loaded by the operations that use them, so listing a store does not pay for them.
const changesLib = () => import('../archive/changes.ts');

export type { LayoutUnit as DriverUnit } from '../drivers/layout.ts';

/** Read-only view of one driver's home directory. */
export class DriverDirs {
  readonly layout: DriverLayout;
  readonly home: string;

  /** `root`: the docker data root; `name`: the layout it names (a driver name, or `graph`). */
  constructor(readonly name: string, readonly root: string) {
    this.layout = layoutFor(name) ?? unknownLayout(name);
    this.home = this.layout.homeIn(root);
  }

  /** The layer dirs hold only the layer's own changes (with whiteouts), not its full tree. */
  get holdsDiffs(): boolean {
    return this.layout.holds === 'diffs';
  }

  /** Whiteout form of the diff dirs (holdsDiffs). */
  get diffFormat(): DiffFormat {
    return this.layout.diffFormat ?? 'overlay';
  }

  /** filesDir, or its reason as an error. */
  private reachableDir(id: string): string {
    const f = this.filesDir(id);
    if (f.dir === null) throw new Error(f.reason);
    return f.dir;
  }

  /** The directory in which the files a layer's tar names are found (DriverLayout.filesDir). */
  filesDir(id: string): FilesDir {
    return this.layout.filesDir(this.home, id);
  }

  /** Some layers' files are put together before they are read (a devicemapper pool on a kernel without dm, overlay's container layers merged). */
  get rebuildsFiles(): boolean {
    return this.layout.rebuilt?.applies(this.home) ?? false;
  }

  /** fn on the directory of layer `id`'s files, rebuilt for the duration of fn where the layout needs it. */
  async withFilesDir<T>(id: string, fn: (dir: string) => Promise<T>): Promise<T> {
    const f = this.filesDir(id);
    if (f.dir !== null) return fn(f.dir);
    if (!this.rebuildsFiles) throw new Error(f.reason);
    return this.layout.rebuilt!.withFilesDir(this.home, id, fn);
  }

  /** Layer `id` can be read: its directory is there, or the record its files are rebuilt from. */
  reachable(id: string): boolean {
    return this.unreachable(id) === null;
  }

  /**
   * Why layer `id`'s data cannot be reached, or null when it can: its driver
   * directory, or (devicemapper read in userspace) its device record, whose
   * device the thin pool holds.
   */
  unreachable(id: string): string | null {
    const f = this.filesDir(id);
    if (f.dir !== null || (this.rebuildsFiles && this.layout.rebuilt!.has(this.home, id))) return null;
    return f.reason;
  }

  /** fn on the full trees of `id` and of `parent` (null: none), each through withFilesDir. */
  private withTrees<T>(id: string, parent: string | null, fn: (own: string, base: string | null) => Promise<T>): Promise<T> {
    return this.withFilesDir(id, (own) => (parent ? this.withFilesDir(parent, (base) => fn(own, base)) : fn(own, null)));
  }

  /** Parent ids recorded by the home itself, nearest first, when it records them. */
  recordedLowers(id: string): string[] | null {
    return this.layout.recordedLowers(this.home, id);
  }

  /** The layout records no parents: a reader passes the store's chain as lowers. */
  get needsStoreLowers(): boolean {
    return this.layout.holds === 'diffs' && !this.layout.recordsLowers;
  }

  /** The lower diff dirs of `id`: `lowers` (driver ids, nearest first) or the recorded ones. */
  private lowerDirs(id: string, lowers?: string[]): string[] {
    return (lowers ?? this.recordedLowers(id) ?? []).map((l) => this.reachableDir(l));
  }

  /**
   * What `docker diff` shows for layer `id` against `parent` (a container's
   * RW layer against its init layer). `lowers` (driver ids, nearest first)
   * replaces the parents the layout records, for layouts that record none
   * (needsStoreLowers). Throws when the data is not reachable.
   */
  async changes(id: string, parent: string | null, lowers?: string[]): Promise<Change[]> {
    switch (this.layout.offlineDiff) {
      case 'driver':
        return (await this.driver()).changes(id, parent);
      case 'diff-dirs': {
        const { changesFromDiffDir } = await changesLib();
        return changesFromDiffDir(this.reachableDir(id), this.lowerDirs(id, lowers), this.diffFormat);
      }
      case 'trees': {
        const { changesDirs } = await changesLib();
        return this.withTrees(id, parent, async (own, base) => changesDirs(own, base));
      }
    }
  }

  /**
   * moby DiffSize of a container layer against its init layer (docker's
   * SizeRw): the driver's own diffSize on a read-only open; directory.Size
   * of the own changes for the other diff-dir layouts; changes +
   * ChangesSize over full trees otherwise.
   */
  async diffSize(id: string, parent: string | null): Promise<number> {
    switch (this.layout.offlineDiff) {
      case 'driver':
        return (await this.driver()).diffSize(id, parent);
      case 'diff-dirs':
        return directorySize(this.reachableDir(id));
      case 'trees': {
        const { changesDirs, changesSize } = await changesLib();
        return this.withTrees(id, parent, async (own, base) => changesSize(own, changesDirs(own, base)));
      }
    }
  }

  /** moby GetMetadata-like paths for `strata inspect` (no mount happens). */
  metadata(id: string): Record<string, string> {
    return this.layout.metadata(this.home, id);
  }

  /** Every entry of the home, grouped by layer id, for disk accounting. */
  inventory(): LayoutInventory {
    return this.layout.inventory(this.home);
  }

  private opened: Promise<Driver> | null = null;

  /** The strata driver of this layout over the home, opened read-only (no probes, no writes). */
  private driver(): Promise<Driver> {
    return (this.opened ??= import('../drivers/registry.ts').then((r) => r.openReadOnly(this.name, this.home)));
  }
}

/** The driver directories of a docker store (null for a registry tree). */
export function driverDirsOf(model: StoreModel): DriverDirs | null {
  return model.driver === null ? null : new DriverDirs(model.driver, model.root);
}
