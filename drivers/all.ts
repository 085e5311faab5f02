// Every driver folder, once: its on-disk layout goes into the layout table
// (layoutFor, knownLayouts) and, where strata drives it, its init into the
// registry, loaded on first use so that reading a layout does not load a
// driver (nor the FFI bindings under it). Adding a driver: one folder, one
// line here, one conformance test file (README "Adding a driver").
// The order is the one in which several homes of one data root are listed.
import { register } from './registry.ts';
import { guardIds, holdsData, type DriverFolder, type DriverLayout } from './layout.ts';
import type { InitFunc } from './driver.ts';

// loaded side by side: one await per folder made the loader fetch, compile and
// run them one after another
const FOLDERS: DriverFolder[] = (await Promise.all([
  import('./overlay2/layout.ts'),
  import('./fuse-overlayfs/layout.ts'),
  import('./aufs/layout.ts'),
  import('./overlay/layout.ts'),
  import('./btrfs/layout.ts'),
  import('./devicemapper/layout.ts'),
  import('./vfs/layout.ts'),
  import('./zfs/layout.ts'),
  import('./docker-0.6-graph/layout.ts'),
])).map((m) => m.folder);

const layouts = new Map<string, DriverLayout>();
for (const { layout, loadInit } of FOLDERS) {
  layouts.set(layout.name, guardIds(layout));
  if (loadInit) register(layout.name, lazyInit(loadInit));
}

function lazyInit(load: () => Promise<InitFunc>): InitFunc {
  return async (home, options, opts) => (await load())(home, options, opts);
}

/** The layout a data root names `name` (a driver name, or `graph`); undefined when strata knows none. */
export function layoutFor(name: string): DriverLayout | undefined {
  return layouts.get(name);
}

/** Every known layout, in the order above. */
export function knownLayouts(): DriverLayout[] {
  return [...layouts.values()];
}

/** Names of the graphdriver homes under `root` that hold data (layout.ts holdsData), in the order above. */
export function homesIn(root: string): string[] {
  return knownLayouts().filter((l) => l.graphdriver && holdsData(l.homeIn(root))).map((l) => l.name);
}
