// overlay (v1)'s container layers, read offline. A layer with upper/ (a
// container's -init or read-write layer) holds only its changes, in the
// overlay whiteout form, over the one root/ its lower-id names; its full tree
// exists only merged. A kernel overlay mount of the two as *lower* dirs (no
// upperdir, no workdir, MS_RDONLY) is that tree, and the kernel writes
// nothing for it: a store reader stays a reader. The mount point lives in the
// run dir outside the home and is counted by the Mounter like every mount, so
// a reader killed while it holds one leaves a record the next reader reclaims.
import * as path from 'node:path';
import { validateId } from '../driver.ts';
import { LayerMounts, overlaySpec } from '../mounter.ts';
import { removeIfEmpty, runStateDir } from '../refcount.ts';
import * as sys from '../../sys/syscalls.ts';
import { realDirBelow } from '../layout.ts';
import { layerPaths, lowerIdOf, mergedViewData } from './layout.ts';

interface Views { mounts: LayerMounts; run: string; reclaimed: Promise<void> }
const views = new Map<string, Views>();

/** One Mounter per home and process; dead readers' views reclaimed before the first mount. */
function viewsOf(home: string): Views {
  let v = views.get(home);
  if (!v) {
    const run = runStateDir('overlay-views', home);
    const mounts = new LayerMounts(run);
    v = { mounts, run, reclaimed: mounts.reclaim() };
    views.set(home, v);
  }
  return v;
}

/** fn on the merged, read-only tree of overlay layer `id` (upper/ over its lower-id's root/), unmounted afterwards. */
export async function withMergedView<T>(home: string, id: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const p = layerPaths(home, validateId(id));
  if (!realDirBelow(home, p.upper)) throw new Error(`overlay layer ${id}: ${p.upper} is not a directory`);
  const low = lowerIdOf(home, id);
  if (low.lower === null) throw new Error(`overlay layer ${id}: ${low.reason}`);
  const v = viewsOf(home);
  await v.reclaimed;
  const target = path.join(v.run, id);
  const data = mergedViewData(home, id, low.lower);
  try {
    await v.mounts.get(id, target, () => ({ ...overlaySpec(data), flags: sys.MS_RDONLY }));
  } catch (e) {
    throw new Error(`overlay layer ${id}: its read-only merged view does not mount (${(e as Error).message})`);
  }
  try {
    return await fn(target);
  } finally {
    await v.mounts.put(id, target);
    removeIfEmpty(v.run); // the last view of this home: its run dir goes too
  }
}
