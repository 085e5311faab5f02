// devicemapper's on-disk layout (read, not driven: no device-mapper here):
//
//   <home>/devicemapper/{data,metadata}   the thin pool's two loop files
//   <home>/metadata/<id>                  Docker's record of the layer's thin device
//   <home>/mnt/<id>/rootfs                the layer's full tree, only while mounted
//
// An unmounted device is read, on a kernel that cannot activate the pool, by
// rebuilding it from the pool in userspace (thin-pool.ts) and loop-mounting
// the copy read-only for the duration of one read.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { homeNamed, realDirBelow, inventoryOf, subdirInventory, subdirPaths, type DriverFolder, type DriverLayout } from '../layout.ts';
import { devmapperPaths, kernelHasDeviceMapper } from './thin-pool.ts';

/** The pool's own records under metadata/: not layers. */
const POOL_RECORDS = ['base', 'deviceset-metadata', 'transaction-metadata'];

const SUBDIRS = ['metadata', 'mnt'];

const rootOf = (home: string) => path.dirname(home);

export const layout: DriverLayout = {
  name: 'devicemapper', holds: 'trees', diffFormat: null, offlineDiff: 'trees', graphdriver: true, recordsLowers: false,
  homeIn: homeNamed('devicemapper'),
  filesDir(home, id) {
    const dir = path.join(home, 'mnt', id, 'rootfs');
    // the pool is read in userspace only through rebuilt.withFilesDir (when the kernel has no dm)
    if (!realDirBelow(home, dir)) return { dir: null, reason: `devicemapper device for ${id} is not mounted (${dir}); this path reads only mounted devices` };
    return { dir };
  },
  recordedLowers: () => null,
  pathsOf: (home, id) => (POOL_RECORDS.includes(id) ? [] : subdirPaths(SUBDIRS)(home, id)),
  metadata: (home, id) => ({ MetadataFile: path.join(home, 'metadata', id), MountDir: path.join(home, 'mnt', id) }),
  inventory(home) {
    const inv = subdirInventory(home, SUBDIRS);
    const byId = new Map(inv.units.map((u) => [u.id, u.paths]));
    for (const meta of POOL_RECORDS) {
      const list = byId.get(meta);
      if (list) {
        byId.delete(meta);
        inv.other.push(...list);
      }
    }
    return inventoryOf(byId, inv.other, inv.danglingLinks, inv.ownDirs);
  },
  rebuilt: {
    applies: (home) => fs.existsSync(devmapperPaths(rootOf(home)).metadata) && !kernelHasDeviceMapper(),
    has: (home, id) => fs.existsSync(devmapperPaths(rootOf(home)).devInfo(id)),
    // the read-only driver (read-only.ts), loaded only when a layer is read
    async withFilesDir(home, id, fn) {
      const d = (await import('./read-only.ts')).rebuiltFor(home);
      const dir = await d.get(id);
      try {
        return await fn(dir);
      } finally {
        await d.put(id);
      }
    },
  },
};

export const folder: DriverFolder = { layout, loadInit: async () => (await import('./devicemapper.ts')).init };
