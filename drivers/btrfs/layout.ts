// btrfs's on-disk layout: <home>/subvolumes/<id> is a subvolume (a snapshot
// of its parent's) holding the layer's full tree, <home>/quotas/<id> its size
// limit; no parents are recorded in the home (the driver: btrfs.ts).
import * as path from 'node:path';
import { existingDir, homeNamed, sourceDirMetadata, subdirInventory, subdirPaths, type DriverFolder, type DriverLayout } from '../layout.ts';

export const layout: DriverLayout = {
  name: 'btrfs', holds: 'trees', diffFormat: null, offlineDiff: 'trees', graphdriver: true, recordsLowers: false,
  homeIn: homeNamed('btrfs'),
  filesDir: (home, id) => existingDir(home, path.join(home, 'subvolumes', id)),
  pathsOf: subdirPaths(['subvolumes']),
  recordedLowers: () => null,
  metadata: (home, id) => sourceDirMetadata(layout, home, id),
  inventory: (home) => subdirInventory(home, ['subvolumes']),
};

export const folder: DriverFolder = { layout, loadInit: async () => (await import('./btrfs.ts')).init };
