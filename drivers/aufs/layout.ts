// aufs's on-disk layout, exactly as moby writes it (the driver is aufs.ts):
//
//   <home>/diff/<id>/    the layer's own changes, whiteouts in the aufs form
//   <home>/layers/<id>   its parents' ids, one a line, nearest first
//   <home>/mnt/<id>/     mount point while mounted
//   <home>/diff|mnt/<id>-removing   a Remove under way (cleaned at init)
//   <home>/.strata-fuse-work/<id>/  the FUSE union's workdir while mounted (mount-plan.ts)
import * as path from 'node:path';
import { existingDir, homeNamed, subdirInventory, subdirPaths, type DriverFolder, type DriverLayout } from '../layout.ts';
import { TEXT_CAP, readFileReadOnly } from '../../sys/read-only-files.ts';

const SUBDIRS = ['diff', 'layers', 'mnt'];

export const layout: DriverLayout = {
  name: 'aufs', holds: 'diffs', diffFormat: 'aufs', offlineDiff: 'diff-dirs', graphdriver: true, recordsLowers: true,
  homeIn: homeNamed('aufs'),
  filesDir: (home, id) => existingDir(home, path.join(home, 'diff', id)),
  pathsOf: subdirPaths(SUBDIRS),
  recordedLowers(home, id) {
    try {
      const t = readFileReadOnly(path.join(home, 'layers', id), TEXT_CAP).toString('utf8');
      return t.split('\n').map((s) => s.trim()).filter(Boolean);
    } catch {
      return null;
    }
  },
  metadata: (home, id) => ({ DiffDir: path.join(home, 'diff', id), LayersFile: path.join(home, 'layers', id), MountDir: path.join(home, 'mnt', id) }),
  inventory: (home) => subdirInventory(home, SUBDIRS),
};

export const folder: DriverFolder = { layout, loadInit: async () => (await import('./aufs.ts')).init };
