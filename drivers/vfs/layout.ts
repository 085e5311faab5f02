// vfs's on-disk layout: <home>/dir/<id>/ is the layer's whole tree (a full
// copy of its parent plus its own changes); no parents are recorded.
import * as path from 'node:path';
import { existingDir, homeNamed, sourceDirMetadata, subdirInventory, subdirPaths, type DriverFolder, type DriverLayout } from '../layout.ts';

export const LAYERS_DIR = 'dir';

export const layout: DriverLayout = {
  name: 'vfs', holds: 'trees', diffFormat: null, offlineDiff: 'driver', graphdriver: true, recordsLowers: false,
  homeIn: homeNamed('vfs'),
  filesDir: (home, id) => existingDir(home, path.join(home, LAYERS_DIR, id)),
  pathsOf: subdirPaths([LAYERS_DIR]),
  recordedLowers: () => null,
  metadata: (home, id) => sourceDirMetadata(layout, home, id),
  inventory: (home) => subdirInventory(home, [LAYERS_DIR]),
};

export const folder: DriverFolder = { layout, loadInit: async () => (await import('./vfs.ts')).init };
