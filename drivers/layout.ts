// What is pure about a driver's home: where things are, read without
// initialising the driver. A driver's init probes the kernel and creates
// directories in its home; a reader of an existing data root (inspect, df,
// verify, migrate's source side) must do neither. So each driver folder
// exports, besides its driver (when strata drives it), a DriverLayout: no
// probes, no mounts, no writes, every file read through
// sys/read-only-files.ts (O_NOATIME, O_NONBLOCK|O_NOFOLLOW, size caps).
// Layouts strata reads but does not drive (aufs, btrfs, zfs, …) are folders
// with a layout alone. drivers/all.ts lists every folder once.
//
// Worked example (containerd's snapshots are the same idea: a snapshotter
// knows where a key's files are without mounting anything), an overlay2 home
// `<root>/overlay2` holding a base layer B and a container layer C over it:
//
//   const L = layoutFor('overlay2')!;
//   const home = L.homeIn(root);             // <root>/overlay2
//   L.filesDir(home, C)                      // { dir: <home>/C/diff }: C's own changes
//   L.holds, L.diffFormat                    // 'diffs', 'overlay': whiteouts are 0/0 char devices
//   L.recordedLowers(home, C)                // [B]: parsed from <home>/C/lower, links never followed
//   L.pathsOf(home, C)                       // [<home>/C]: what belongs to C (df, removal)
//   L.metadata(home, C)                      // { UpperDir, LowerDir, WorkDir, MergedDir } as docker inspect
//   L.inventory(home)                        // units by id, l/ as `other`, dangling l/ links
//   L.offlineDiff                            // 'driver': C against B is overlay2's own native
//                                            //   changes/diffSize on a read-only open
//
// A vfs home says `holds: 'trees'` (each layer a full copy), records no
// lowers (null) and has one unit dir per layer under dir/; an aufs home holds
// diffs in the aufs form under diff/<id> with its parents in layers/<id>.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { DiffFormat } from '../archive/diff-format.ts';
import type { InitFunc } from './driver.ts';
import { isDirectory, listSorted, lstatQuiet } from '../sys/read-only-files.ts';
import { type DirEntry, dirHasEntries, readDirEntryStrings } from '../sys/read-dir.ts';

/** Where a layer's files are, or why they cannot be reached offline. */
export type FilesDir = { dir: string } | { dir: null; reason: string };

export interface LayoutUnit {
  /** the driver id (directory name), e.g. a cache-id, "<mount-id>-init" */
  id: string;
  /** every path that belongs to this id (aufs: diff, layers and mnt entries) */
  paths: string[];
}

export interface LayoutInventory {
  units: LayoutUnit[];
  /** paths in the home that belong to no layer id (l/, backingFsBlockDev, metadata files…) */
  other: string[];
  /** link entries (overlay2 l/) whose target does not exist */
  danglingLinks: string[];
  /** directories of the home that are not units themselves: the home, aufs' diff/ layers/ mnt/, vfs' dir/… */
  ownDirs: string[];
}

/**
 * How an offline reader compares a layer with a parent (docker diff, SizeRw):
 * - 'driver': the driver's own changes/diffSize on a read-only open of the
 *   home (vfs; overlay2, whose read-only open takes only its native path);
 * - 'diff-dirs': the change walkers over the layer's own diff dir and its
 *   lowers' (recorded, or given by the store for layouts that record none);
 *   the size is directory.Size of the own diff dir (moby's aufs DiffSize);
 * - 'trees': the two full trees compared by the archive walkers, the size
 *   summed over the changes (moby's naive DiffSize).
 */
export type OfflineDiff = 'driver' | 'diff-dirs' | 'trees';

/**
 * A layer whose files must be put together before they can be read:
 * devicemapper on a kernel without device-mapper (thin devices rebuilt from
 * the pool in userspace and loop-mounted read-only); overlay (v1)'s container
 * layers, a diff over one lower root, merged by a read-only overlay mount.
 */
export interface RebuiltFiles {
  /** the home's layers are read this way on this host */
  applies(home: string): boolean;
  /** the layout's record of `id` is there, for withFilesDir to rebuild it */
  has(home: string, id: string): boolean;
  /** fn on the rebuilt files of `id`, torn down afterwards */
  withFilesDir<T>(home: string, id: string, fn: (dir: string) => Promise<T>): Promise<T>;
}

/** A layout's own links, checked by `strata verify`. */
export interface LayoutLinks {
  /** every bad link or link file of the home */
  problems(home: string): { path: string; message: string }[];
  /** the file in which the home records `id`'s parents */
  lowersFile(home: string, id: string): string;
}

/** The pure description of one on-disk layout (see the example above). */
export interface DriverLayout {
  /** the driver name as a data root spells it (`graph` for docker ≤ 0.6) */
  readonly name: string;
  /** the home under a data root: `<root>/<name>` for every graphdriver */
  homeIn(root: string): string;
  /** 'diffs': a layer's dir holds its own changes with whiteouts (in diffFormat); 'trees': its full tree */
  readonly holds: 'diffs' | 'trees';
  /** whiteout form of the diff dirs (null: the layout holds full trees) */
  readonly diffFormat: DiffFormat | null;
  /** how an offline reader compares layers ('driver': the driver registered under `name`, opened read-only) */
  readonly offlineDiff: OfflineDiff;
  /** a graphdriver home `<root>/<name>` (prior state); false for docker ≤ 0.6's graph/, where later dockers keep metadata */
  readonly graphdriver: boolean;
  /** the home records each layer's parents (recordedLowers); else a reader takes them from the store's chain */
  readonly recordsLowers: boolean;
  /** the directory in which the files a layer's tar names are found */
  filesDir(home: string, id: string): FilesDir;
  /** every path of the home that belongs to `id` (what inventory lists as its unit), existing ones only */
  pathsOf(home: string, id: string): string[];
  /** parent ids the home itself records for `id`, nearest first; null when the layout records none or they cannot be read */
  recordedLowers(home: string, id: string): string[] | null;
  /** moby GetMetadata-like paths for `strata inspect` (nothing is mounted) */
  metadata(home: string, id: string): Record<string, string>;
  /** every entry of the home, grouped by layer id */
  inventory(home: string): LayoutInventory;
  /** set when some layers' files must be rebuilt to be read (devicemapper) */
  readonly rebuilt?: RebuiltFiles;
  /** set when the layout has links to check (overlay2's l/ and lower files) */
  readonly links?: LayoutLinks;
  /**
   * Set when a read-only layer made by the driver's create() has filesDir an
   * empty diff dir in this whiteout form that may be filled with hard links of
   * another home's files (migrate's fast path): nothing of the driver's own
   * bookkeeping lives inside it, and the driver never writes into it again.
   */
  readonly linkableDiffs?: DiffFormat;
}

/** A driver folder's entry in drivers/all.ts: its layout, and its driver's init loaded on first use. */
export interface DriverFolder {
  layout: DriverLayout;
  /** absent for a layout-only folder */
  loadInit?: () => Promise<InitFunc>;
}

// ---- the one layer-id rule ------------------------------------------------------

/**
 * A layer id is one plain, non-empty path component: it becomes a directory
 * name. Ids read from a store (cache-id, mount-id, init-id) may be hostile
 * (`..`, `../x`, absolute, with a NUL): such an id names nothing of any home.
 */
export function isLayerName(id: string): boolean {
  return typeof id === 'string' && id !== '' && id !== '.' && id !== '..' && !id.includes('/') && !id.includes('\0');
}

/** `layout` refusing every id that is not a layer name (drivers/all.ts wraps each layout once). */
export function guardIds(layout: DriverLayout): DriverLayout {
  const bad = (id: string) => !isLayerName(id);
  const reason = (id: string) => `layer id ${JSON.stringify(id)} is not a directory name`;
  const rebuilt = layout.rebuilt;
  const links = layout.links;
  return {
    ...layout,
    filesDir: (home, id) => (bad(id) ? { dir: null, reason: reason(id) } : layout.filesDir(home, id)),
    pathsOf: (home, id) => (bad(id) ? [] : layout.pathsOf(home, id)),
    recordedLowers: (home, id) => (bad(id) ? null : layout.recordedLowers(home, id)),
    metadata: (home, id) => (bad(id) ? {} : layout.metadata(home, id)),
    inventory: (home) => layout.inventory(home),
    rebuilt: rebuilt && {
      applies: (home) => rebuilt.applies(home),
      has: (home, id) => !bad(id) && rebuilt.has(home, id),
      withFilesDir: (home, id, fn) => (bad(id) ? Promise.reject(new Error(reason(id))) : rebuilt.withFilesDir(home, id, fn)),
    },
    links,
  };
}

// ---- the one non-empty-home rule ----------------------------------------------

/**
 * moby's prior-state test (isEmptyDir inverted): `dir` is a directory with at
 * least one entry. An unreadable directory counts as holding data, so a store
 * is never taken for empty because it could not be listed.
 */
export function holdsData(dir: string): boolean {
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch {
    return false;
  }
  if (!st.isDirectory()) return false;
  try {
    return dirHasEntries(dir);
  } catch {
    return true;
  }
}

// ---- helpers the layout modules share --------------------------------------------

/**
 * `p`, below `base` (the home, or the data root), and every directory on the
 * way to it are real directories: each step is lstat'ed, so a directory of a
 * hostile home replaced by a symlink (vfs dir/, aufs diff/, an overlay2
 * layer dir) is never followed out of it. The symlink met, or null.
 */
function symlinkBelow(base: string, p: string): { at: string | null; ok: boolean } {
  let at = base;
  for (const part of path.relative(base, p).split(path.sep).filter(Boolean)) {
    at = path.join(at, part);
    const st = lstatQuiet(at);
    if (!st?.isDirectory()) return { at: st?.isSymbolicLink() && at !== p ? at : null, ok: false };
  }
  return { at: null, ok: true };
}

/** `p` and every directory between `base` and it are real directories (no symlink followed). */
export const realDirBelow = (base: string, p: string): boolean => symlinkBelow(base, p).ok;

/** `dir` when it and every directory between `base` and it are real directories, else its reason. */
export function existingDir(base: string, dir: string): FilesDir {
  const r = symlinkBelow(base, dir);
  if (r.ok) return { dir };
  return { dir: null, reason: r.at ? `${r.at} is a symlink (not followed out of the home)` : `${dir} is missing` };
}

/** An inventory from a map of units (sorted by id). */
export function inventoryOf(byId: Map<string, string[]>, other: string[], danglingLinks: string[], ownDirs: string[]): LayoutInventory {
  const units = [...byId.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)).map(([id, paths]) => ({ id, paths }));
  return { units, other, danglingLinks, ownDirs };
}

/** Add `p` to the unit `id`. */
export function addUnit(byId: Map<string, string[]>, id: string, p: string): void {
  const list = byId.get(id);
  if (list) list.push(p);
  else byId.set(id, [p]);
}

/** The existing ones of `paths`. */
export function existing(paths: string[]): string[] {
  return paths.filter((p) => lstatQuiet(p) !== undefined);
}

/** pathsOf for a layout with one directory per id in the home (overlay2, overlay): hidden entries are no layer's (idDirInventory). */
export const idDirPaths = (home: string, id: string): string[] => (id.startsWith('.') ? [] : [path.join(home, id)].filter(isDirectory));

/** pathsOf for a layout whose ids are entries of subdirectories (subdirInventory). */
export const subdirPaths = (subs: readonly string[]) => (home: string, id: string): string[] =>
  existing(subs.filter((s) => realDirBelow(home, path.join(home, s))).map((s) => path.join(home, s, id)));

/**
 * The inventory of a home whose layers are entries of subdirectories
 * (vfs dir/<id>, aufs diff|layers|mnt/<id>, btrfs subvolumes/<id>…);
 * everything else in the home is `other`.
 */
export function subdirInventory(home: string, subs: readonly string[]): LayoutInventory {
  const byId = new Map<string, string[]>();
  const other: string[] = [];
  for (const name of listSorted(home)) {
    if (subs.includes(name) && isDirectory(path.join(home, name))) {
      for (const id of listSorted(path.join(home, name))) addUnit(byId, id, path.join(home, name, id));
    } else other.push(path.join(home, name));
  }
  const ownDirs = [home, ...subs.map((s) => path.join(home, s)).filter((p) => fs.existsSync(p))];
  return inventoryOf(byId, other, [], ownDirs);
}

/** The home's entries sorted by name, with their types from readdir (d_type: no lstat per layer). */
export function typedEntries(dir: string): DirEntry<string>[] {
  try {
    return readDirEntryStrings(dir).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  } catch {
    return [];
  }
}

/** `<root>/<name>`: every graphdriver's home. */
export const homeNamed = (name: string) => (root: string): string => path.join(root, name);

/**
 * The inventory of a home with one directory per layer id (overlay2,
 * overlay): hidden entries and files are `other`; `linkDir` (overlay2's l/)
 * is `other` too, and its symlinks whose target is missing are dangling.
 */
export function idDirInventory(home: string, linkDir: string | null): LayoutInventory {
  const byId = new Map<string, string[]>();
  const other: string[] = [];
  const danglingLinks: string[] = [];
  for (const e of typedEntries(home)) {
    const p = path.join(home, e.name);
    if (e.name === linkDir) {
      other.push(p);
      for (const l of typedEntries(p)) {
        const lp = path.join(p, l.name);
        if (l.isSymbolicLink() && !fs.existsSync(lp)) danglingLinks.push(lp);
      }
    } else if (e.isDirectory() && !e.name.startsWith('.')) addUnit(byId, e.name, p);
    else other.push(p);
  }
  return inventoryOf(byId, other, danglingLinks, [home]);
}

/** metadata() of layouts that name only where the files are. */
export function sourceDirMetadata(layout: DriverLayout, home: string, id: string): Record<string, string> {
  const f = layout.filesDir(home, id);
  return f.dir === null ? {} : { SourceDir: f.dir };
}

/** What a data root names a driver strata knows no layout of: nothing reachable, every entry `other`. */
export function unknownLayout(name: string): DriverLayout {
  return {
    name, holds: 'trees', diffFormat: null, offlineDiff: 'trees', graphdriver: true, recordsLowers: false,
    homeIn: homeNamed(name),
    filesDir: () => ({ dir: null, reason: `unknown storage driver ${name}` }),
    pathsOf: () => [],
    recordedLowers: () => null,
    metadata: () => ({}),
    inventory: (home) => inventoryOf(new Map(), listSorted(home).map((n) => path.join(home, n)), [], [home]),
  };
}
