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
import { existingDir, realDirBelow, homeNamed, idDirInventory, idDirPaths, sourceDirMetadata, type DriverFolder, type DriverLayout } from '../layout.ts';

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

/**
 * The mount(2) data for an overlay layer: moby's
 * `lowerdir=<home>/<lower-id>/root,upperdir=<id>/upper,workdir=<id>/work`,
 * after `prefix` (`index=off,` where the kernel has that parameter). A path
 * holding ',' or ':' cannot be written in overlay options: refused.
 */
export function mountData(home: string, id: string, lowerId: string, prefix = ''): string {
  const p = layerPaths(home, id);
  const lower = layerPaths(home, lowerId).root;
  for (const dir of [lower, p.upper, p.work]) {
    if (/[,:]/.test(dir)) throw new Error(`overlay: cannot mount layer ${id}: path ${dir} holds ',' or ':', which overlay mount options cannot carry`);
  }
  return `${prefix}lowerdir=${lower},upperdir=${p.upper},workdir=${p.work}`;
}

/** moby GetMetadata: `{RootDir}` for an image layer, else where the overlay mount's parts are. */
export function layerMetadata(home: string, id: string, lowerId: string | null): Record<string, string> {
  const p = layerPaths(home, id);
  if (lowerId === null) return { RootDir: p.root };
  return { LowerDir: layerPaths(home, lowerId).root, UpperDir: p.upper, WorkDir: p.work, MergedDir: p.merged };
}

/**
 * overlay's layout for the offline readers: a layer's files are its root/
 * (an image layer, a full tree) or else its upper/ (a container layer);
 * offline diffs compare the full trees (archive walkers), as they always have.
 */
export const layout: DriverLayout = {
  name: 'overlay', holds: 'trees', diffFormat: null, offlineDiff: 'trees', graphdriver: true, recordsLowers: false,
  homeIn: homeNamed('overlay'),
  filesDir(home, id) {
    const p = layerPaths(home, id);
    return existingDir(home, realDirBelow(home, p.root) ? p.root : p.upper);
  },
  recordedLowers: () => null,
  pathsOf: idDirPaths,
  metadata: (home, id) => sourceDirMetadata(layout, home, id),
  inventory: (home) => idDirInventory(home, null),
};

export const folder: DriverFolder = { layout, loadInit: async () => (await import('./overlay.ts')).init };
