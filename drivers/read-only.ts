// The `read-only` open mode (driver.ts OpenMode): a driver over an existing
// home that writes nothing into it. The driver's init skips its probes, its
// mkdirs and its reclaiming of dead holders; this wrapper refuses, with one
// line naming the home, every operation that would write a layer.
import type { Readable } from 'node:stream';
import type { Change } from '../archive/types.ts';
import { LayerNotFoundError, type CreateOpts, type Driver, type LayerInfo, type TarInput } from './driver.ts';
import { isLayerName, realDirBelow } from './layout.ts';

/** An operation a read-only open does not do. */
export class ReadOnlyOpenError extends Error {
  constructor(driver: string, home: string, what: string) {
    super(`${driver}: ${home} is open read-only: ${what} refused`);
    this.name = 'ReadOnlyOpenError';
  }
}

export interface ReadOnlyOpts {
  /** why get() is refused too (a mounting driver whose mount would write into the home), or null when get() reads */
  getRefused: string | null;
  /** the directory that must be a real one below the home (no symlink on the way) for `id` to be a layer: vfs dir/<id>, overlay2 <id>/diff */
  layerDir: (id: string) => string;
}

/** `d` with create, createReadWrite, remove, applyDiff and persist refused (and get, when opts say so). */
export function readOnlyDriver(d: Driver, opts: ReadOnlyOpts): Driver {
  const refuse = (what: string) => new ReadOnlyOpenError(d.name, d.home, what);
  // a hostile home's layer dir swapped for a symlink is no layer: nothing reads through it
  const isLayer = (id: string) => isLayerName(id) && realDirBelow(d.home, opts.layerDir(id)) && d.exists(id);
  const layer = (id: string, where: string) => {
    if (!isLayer(id)) throw new LayerNotFoundError(d.name, id, where);
  };
  return {
    name: d.name,
    home: d.home,
    createReadWrite: async (id: string, _p: string | null, _o?: CreateOpts) => { throw refuse(`createReadWrite ${id}`); },
    create: async (id: string, _p: string | null, _o?: CreateOpts) => { throw refuse(`create ${id}`); },
    remove: async (id: string) => { throw refuse(`remove ${id}`); },
    applyDiff: async (id: string, _p: string | null, _t: TarInput) => { throw refuse(`applyDiff ${id}`); },
    persist: async (id: string) => { throw refuse(`persist ${id}`); },
    get: async (id: string, mountLabel?: string) => {
      if (opts.getRefused !== null) throw refuse(`get ${id} (${opts.getRefused})`);
      layer(id, 'get');
      return d.get(id, mountLabel);
    },
    put: (id: string) => d.put(id),
    exists: isLayer,
    status: () => d.status(),
    metadata: (id: string) => (layer(id, 'metadata'), d.metadata(id)),
    cleanup: () => d.cleanup(),
    layers: d.layers ? (): LayerInfo[] => d.layers!() : undefined,
    diff: (id: string, parent: string | null): Readable => (layer(id, 'diff'), d.diff(id, parent)),
    changes: async (id: string, parent: string | null): Promise<Change[]> => (layer(id, 'changes'), d.changes(id, parent)),
    diffSize: async (id: string, parent: string | null): Promise<number> => (layer(id, 'diffSize'), d.diffSize(id, parent)),
  };
}
