// docker ≤ 0.6's layout (read, not driven): no driver directory; each image
// layer is the aufs branch <root>/graph/<id>/layer (its own changes, aufs
// whiteouts) beside the image's json, and a container's branch is
// <root>/containers/<id>/rw. Parents are not recorded with the layer dirs:
// the store's image chain gives them (inspect passes them as lowers).
import * as path from 'node:path';
import { addUnit, existing, existingDir, inventoryOf, sourceDirMetadata, type DriverFolder, type DriverLayout } from '../layout.ts';
import { isDirectory, listSorted } from '../../sys/read-only-files.ts';

/** The data root of a graph home (`<root>/graph`). */
const rootOf = (home: string) => path.dirname(home);

/** The layout's name as a legacy store's model records it. */
export const GRAPH_LAYOUT = 'graph';

export const layout: DriverLayout = {
  name: GRAPH_LAYOUT, holds: 'diffs', diffFormat: 'aufs', offlineDiff: 'diff-dirs', graphdriver: false, recordsLowers: false,
  homeIn: (root) => path.join(root, 'graph'),
  // an image layer, or a docker ≤ 0.6 container's rw branch
  filesDir: (home, id) => (isDirectory(path.join(home, id)) ? existingDir(home, path.join(home, id, 'layer')) : existingDir(rootOf(home), path.join(rootOf(home), 'containers', id, 'rw'))),
  recordedLowers: () => null,
  pathsOf: (home, id) => (id === '_tmp' ? [] : existing([path.join(home, id)]).filter(isDirectory)),
  metadata: (home, id) => sourceDirMetadata(layout, home, id),
  inventory(home) {
    const byId = new Map<string, string[]>();
    const other: string[] = [];
    for (const name of listSorted(home)) {
      const p = path.join(home, name);
      if (name !== '_tmp' && isDirectory(p)) addUnit(byId, name, p);
      else other.push(p);
    }
    return inventoryOf(byId, other, [], [home]);
  },
};

export const folder: DriverFolder = { layout };
