// Removing a whole driver home (a staged target on rollback, the source with
// --delete-source): through the driver opened to manage it where strata drives
// it (btrfs subvolumes, mounts' bookkeeping), then whatever is left as files.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { drivers, getDriver } from '../drivers/registry.ts';
import { removeTree } from '../archive/remove-tree.ts';
import { layoutFor } from '../drivers/all.ts';
import { isLayerName } from '../drivers/layout.ts';
import { MigrateError } from './plan.ts';

/** Remove `<root>/<name>`: `ids` (null: every layer the driver lists) through the driver, then the rest. */
export async function removeStaged(name: string, root: string, ids: string[] | null): Promise<void> {
  // a home is one directory of `root` named for a driver: never a path that could climb out of it
  if (!isLayerName(name) || layoutFor(name) === undefined) throw new MigrateError(`${root}: ${JSON.stringify(name)} is not a driver home to remove`);
  const home = path.join(root, name);
  if (!fs.lstatSync(home, { throwIfNoEntry: false })) return;
  if (drivers.has(name)) {
    let d;
    try {
      d = await getDriver(name, root, [], { mode: 'manage' });
    } catch {
      d = null; // a home this host cannot manage (aufs without its module, dm without dm): its files go below
    }
    if (d) {
      try {
        for (const id of ids ?? d.layers?.().map((l) => l.id) ?? []) await d.remove(id);
      } finally {
        await d.cleanup();
      }
    }
  }
  removeTree(home);
}
