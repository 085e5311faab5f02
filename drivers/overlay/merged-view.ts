// overlay (v1)'s container layers, read offline. A layer with upper/ (a
// container's -init or read-write layer) holds only its changes, in the
// overlay whiteout form, over the one root/ its lower-id names; its full tree
// exists only merged. A kernel overlay mount of the two as *lower* dirs (no
// upperdir, no workdir, MS_RDONLY) is that tree, and the kernel writes
// nothing for it: a store reader stays a reader. The mount point lives in the
// run dir outside the home and is counted by the Mounter like every mount, so
// a reader killed while it holds one leaves a record the next reader reclaims.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { validateId } from '../driver.ts';
import { LayerMounts } from '../mounter.ts';
import { runStateDir } from '../refcount.ts';
import * as sys from '../../sys/syscalls.ts';
import { realDirBelow } from '../layout.ts';
import { layerPaths, lowerIdOf, mergedViewData } from './layout.ts';

const views = new Map<string, { mounts: LayerMounts; reclaimed: Promise<void> }>();

/** One Mounter per home and process; dead readers' views reclaimed before the first mount. */
function viewsOf(home: string): { mounts: LayerMounts; run: string; reclaimed: Promise<void> } {
  const run = runStateDir('overlay-views', home);
  let v = views.get(home);
  if (!v) {
    const mounts = new LayerMounts(run);
    v = { mounts, reclaimed: mounts.reclaim() };
    views.set(home, v);
  }
  return { ...v, run };
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
    await v.mounts.get(id, target, () => ({ kind: 'kernel', fstype: 'overlay', source: 'overlay', data, flags: sys.MS_RDONLY }));
  } catch (e) {
    throw new Error(`overlay layer ${id}: its read-only merged view does not mount (${(e as Error).message})`);
  }
  try {
    return await fn(target);
  } finally {
    await v.mounts.put(id, target);
    try {
      fs.rmdirSync(v.run); // the last view of this home: its run dir goes too
    } catch (e) {
      if (!['ENOTEMPTY', 'EEXIST', 'ENOENT'].includes((e as NodeJS.ErrnoException).code!)) throw e;
    }
  }
}
