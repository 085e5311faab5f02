// zfs's on-disk layout (read, not driven): <home>/graph/<id> is the mount
// point of the layer's dataset (a clone of its parent's snapshot); the data
// lives in the pool, so an unmounted dataset is an empty directory here.
import * as path from 'node:path';
import { realDirBelow, homeNamed, sourceDirMetadata, subdirInventory, subdirPaths, type DriverFolder, type DriverLayout } from '../layout.ts';
import { listSorted } from '../../sys/read-only-files.ts';

export const layout: DriverLayout = {
  name: 'zfs', holds: 'trees', diffFormat: null, offlineDiff: 'trees', graphdriver: true, recordsLowers: false,
  homeIn: homeNamed('zfs'),
  filesDir(home, id) {
    const dir = path.join(home, 'graph', id);
    if (!realDirBelow(home, dir) || listSorted(dir).length === 0) return { dir: null, reason: `zfs dataset for ${id} is not mounted at ${dir}` };
    return { dir };
  },
  recordedLowers: () => null,
  pathsOf: subdirPaths(['graph']),
  metadata: (home, id) => sourceDirMetadata(layout, home, id),
  inventory: (home) => subdirInventory(home, ['graph']),
};

export const folder: DriverFolder = { layout };
