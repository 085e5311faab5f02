// The `read-only` open mode (driver.ts OpenMode): a driver over an existing
// home that writes nothing into it. The driver's init skips its probes, its
// mkdirs and its reclaiming of dead holders; this wrapper refuses, with one
// line naming the home, every operation that would write a layer.
import type { Readable } from 'node:stream';
import type { Change } from '../archive/types.ts';
import type { CreateOpts, Driver, LayerInfo, TarInput } from './driver.ts';

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
}

/** `d` with create, createReadWrite, remove, applyDiff and persist refused (and get, when opts say so). */
export function readOnlyDriver(d: Driver, opts: ReadOnlyOpts): Driver {
  const refuse = (what: string) => new ReadOnlyOpenError(d.name, d.home, what);
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
      return d.get(id, mountLabel);
    },
    put: (id: string) => d.put(id),
    exists: (id: string) => d.exists(id),
    status: () => d.status(),
    metadata: (id: string) => d.metadata(id),
    cleanup: () => d.cleanup(),
    layers: d.layers ? (): LayerInfo[] => d.layers!() : undefined,
    diff: (id: string, parent: string | null): Readable => d.diff(id, parent),
    changes: (id: string, parent: string | null): Promise<Change[]> => d.changes(id, parent),
    diffSize: (id: string, parent: string | null): Promise<number> => d.diffSize(id, parent),
  };
}
