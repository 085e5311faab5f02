// overlay (v1)'s on-disk layout, exactly as Docker wrote it, and the pure
// planning of mounts and metadata (testable without root):
//
//   <home>/<id>/             0710
//   <home>/<id>/root/        an *image* layer: a complete root filesystem (0755).
//                            create(id, null) makes an empty one; applyDiff over
//                            a parent that has root/ makes one from the parent's
//   <home>/<id>/upper/       an *overlay* layer (a container, its -init layer, or
//                            a child not yet applied): the overlay upperdir, with
//                            the mode of the root it lies over
//   <home>/<id>/work/        its overlay workdir (0700)
//   <home>/<id>/lower-id     the id whose root/ is its one lowerdir (0600, no newline)
//   <home>/<id>/merged/      mount point while mounted (made by get, removed by put)
//   <home>/<id>/tmproot*     transient: the hardlink copy applyDiff builds
//
// There is always exactly one lowerdir, so layer depth is never a kernel limit:
// image layers are flattened by applyDiff, and a child of an overlay layer
// starts from a copy of that layer's upper/ over the same lower.
import * as path from 'node:path';
import { existingDir, isLayerName, realDirBelow, homeNamed, idDirInventory, idDirPaths, type DriverFolder, type DriverLayout } from '../layout.ts';
import { readFileReadOnly, TEXT_CAP } from '../../sys/read-only-files.ts';

export const ROOT_DIR = 'root';
export const UPPER_DIR = 'upper';
export const WORK_DIR = 'work';
export const MERGED_DIR = 'merged';
export const LOWER_ID_FILE = 'lower-id';
export const TMP_ROOT_PREFIX = 'tmproot';

export interface LayerPaths {
  dir: string;
  root: string;
  upper: string;
  work: string;
  merged: string;
  lowerId: string;
}

/** Where everything of layer `id` lives (`id` must already be a valid layer id). */
export function layerPaths(home: string, id: string): LayerPaths {
  const dir = path.join(home, id);
  return {
    dir,
    root: path.join(dir, ROOT_DIR),
    upper: path.join(dir, UPPER_DIR),
    work: path.join(dir, WORK_DIR),
    merged: path.join(dir, MERGED_DIR),
    lowerId: path.join(dir, LOWER_ID_FILE),
  };
}

/** A path holding ',' or ':' cannot be written in overlay mount options: refused, naming it. */
function refuseUnmountable(id: string, dirs: string[]): void {
  for (const dir of dirs) {
    if (/[,:]/.test(dir)) throw new Error(`overlay: cannot mount layer ${id}: path ${dir} holds ',' or ':', which overlay mount options cannot carry`);
  }
}

/**
 * The mount(2) data for an overlay layer: moby's
 * `lowerdir=<home>/<lower-id>/root,upperdir=<id>/upper,workdir=<id>/work`,
 * after `prefix` (`index=off,` where the kernel has that parameter). A path
 * holding ',' or ':' cannot be written in overlay options: refused.
 */
export function mountData(home: string, id: string, lowerId: string, prefix = ''): string {
  const p = layerPaths(home, id);
  const lower = layerPaths(home, lowerId).root;
  refuseUnmountable(id, [lower, p.upper, p.work]);
  return `${prefix}lowerdir=${lower},upperdir=${p.upper},workdir=${p.work}`;
}

/**
 * The mount(2) data of an overlay layer's read-only merged view (merged-view.ts):
 * its upper/ and its lower's root/, both as lowerdirs, upper first.
 */
export function mergedViewData(home: string, id: string, lowerId: string): string {
  const dirs = [layerPaths(home, id).upper, layerPaths(home, lowerId).root];
  refuseUnmountable(id, dirs);
  return `lowerdir=${dirs.join(':')}`;
}

/** moby GetMetadata: `{RootDir}` for an image layer, else where the overlay mount's parts are. */
export function layerMetadata(home: string, id: string, lowerId: string | null): Record<string, string> {
  const p = layerPaths(home, id);
  if (lowerId === null) return { RootDir: p.root };
  return { LowerDir: layerPaths(home, lowerId).root, UpperDir: p.upper, WorkDir: p.work, MergedDir: p.merged };
}

/** The lower-id of overlay layer `id` in `home` (read bounded, its root/ there), or why it cannot be used. */
export function lowerIdOf(home: string, id: string): { lower: string } | { lower: null; reason: string } {
  const p = layerPaths(home, id);
  let text: string;
  try {
    text = readFileReadOnly(p.lowerId, TEXT_CAP).toString('utf8');
  } catch (e) {
    return { lower: null, reason: `${p.lowerId}: ${(e as Error).message}` };
  }
  if (!isLayerName(text)) {
    return { lower: null, reason: `${p.lowerId} does not hold a layer id: ${JSON.stringify(text.slice(0, 80))}` };
  }
  if (!realDirBelow(home, layerPaths(home, text).root)) return { lower: null, reason: `${p.lowerId} names ${text}, which has no root/ directory` };
  return { lower: text };
}

/**
 * overlay's layout for the offline readers: an image layer's files are its
 * root/, a full tree. A container layer (upper/) is a diff over its
 * lower-id's root/, so its tree is read merged, through a read-only overlay
 * mount (`rebuilt`, merged-view.ts); offline diffs compare full trees.
 */
export const layout: DriverLayout = {
  name: 'overlay', holds: 'trees', diffFormat: null, offlineDiff: 'trees', graphdriver: true, recordsLowers: false,
  homeIn: homeNamed('overlay'),
  filesDir(home, id) {
    const p = layerPaths(home, id);
    if (!realDirBelow(home, p.root) && realDirBelow(home, p.upper)) {
      return { dir: null, reason: `overlay layer ${id} holds a diff (upper/) over its lower-id's root/: its tree is read through a read-only overlay mount` };
    }
    return existingDir(home, p.root);
  },
  recordedLowers: () => null,
  pathsOf: idDirPaths,
  metadata(home, id) {
    const p = layerPaths(home, id);
    if (realDirBelow(home, p.root)) return layerMetadata(home, id, null);
    const low = realDirBelow(home, p.upper) ? lowerIdOf(home, id) : null;
    return low?.lower ? layerMetadata(home, id, low.lower) : {};
  },
  inventory: (home) => idDirInventory(home, null),
  rebuilt: {
    applies: () => true,
    has: (home, id) => !realDirBelow(home, layerPaths(home, id).root) && realDirBelow(home, layerPaths(home, id).upper) && lowerIdOf(home, id).lower !== null,
    // the mount code loads only when a container layer is read
    withFilesDir: async (home, id, fn) => (await import('./merged-view.ts')).withMergedView(home, id, fn),
  },
};

export const folder: DriverFolder = { layout, loadInit: async () => (await import('./overlay.ts')).init };
