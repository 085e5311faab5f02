// What the workload groups share: layer chains built the same way in every
// driver and every containers-storage peer, and the variant makers.
import { createReadStream, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { SampleEntry } from '../../../fixtures/sample-image.ts';
import { deepId, deepLayers, manyFiles, T_LOWER, writeTar } from '../../lib/shapes.ts';
import { timeChild, timeOurs } from '../measure-child.ts';
import type { BenchContext, BenchDriver, CsPeer, Variant } from '../types.ts';

export interface LayerSpec { id: string; parent: string | null; entries: SampleEntry[] }

/** Layer ids in each containers-storage peer, by our id. */
export type CsIds = Map<CsPeer, Map<string, string>>;

/** What one run has built so far: workloads that name the same layer id share it (same spec, built once). */
interface Built { tars: Map<string, string>; cs: CsIds }
const built = new WeakMap<BenchContext, Built>();

/**
 * Write each layer's tar under ctx.dir/tars, then create + applyDiff it in every
 * driver and import it into every peer (untimed). A layer some earlier workload
 * of this run already built is reused, so give a shared layer the same id and
 * the same entries everywhere.
 */
export async function buildChain(ctx: BenchContext, layers: LayerSpec[]): Promise<Built> {
  let b = built.get(ctx);
  if (!b) built.set(ctx, (b = { tars: new Map(), cs: new Map(ctx.cs.map((c) => [c, new Map<string, string>()])) }));
  for (const l of layers) {
    if (b.tars.has(l.id)) continue;
    const tar = join(ctx.dir, 'tars', `${l.id}.tar`);
    await writeTar(l.entries, tar);
    // the peers' imports are processes: they run side by side with each other and with our drivers
    const peers = Promise.all(ctx.cs.map(async (c) => {
      const ids = b.cs.get(c)!;
      ids.set(l.id, await c.importLayer(l.parent === null ? null : ids.get(l.parent)!, tar));
    }));
    try {
      for (const { driver } of ctx.drivers) {
        await driver.create(l.id, l.parent);
        await driver.applyDiff(l.id, l.parent, createReadStream(tar, { highWaterMark: 1 << 20 }));
      }
    } finally {
      await peers;
    }
    b.tars.set(l.id, tar);
  }
  return b;
}

/** Data made once per run and shared by the workloads that use it (the big tree, the inspect store). */
const made = new WeakMap<BenchContext, Map<string, Promise<unknown>>>();
export function once<T>(ctx: BenchContext, key: string, make: () => Promise<T>): Promise<T> {
  let m = made.get(ctx);
  if (!m) made.set(ctx, (m = new Map()));
  if (!m.has(key)) m.set(key, make());
  return m.get(key) as Promise<T>;
}

/** graphtest's N (10,000; 1,000 with --quick) */
export const manyCount = (ctx: BenchContext) => (ctx.quick ? 1000 : 10000);

/** addManyFiles(N, 3): the large lower DiffSmallUpper, Diff10KFilesBottom and ChangesModified share. */
export const manyLower = (ctx: BenchContext): LayerSpec => ({ id: 'many-lower', parent: null, entries: manyFiles(manyCount(ctx), 3, T_LOWER) });

/**
 * The deep chain (graphtest addFiles base + addLayerFiles layers) up to index
 * `top` (top + 1 layers), shared by DeepLayerDiff/Read and the depth sweep:
 * a deeper request extends what is built.
 */
export async function deepChain(ctx: BenchContext, top: number): Promise<Built & { top: string }> {
  const layers = deepLayers(top).map((entries, i) => ({ id: deepId(i), parent: i ? deepId(i - 1) : null, entries }));
  return { ...(await buildChain(ctx, layers)), top: deepId(top) };
}

export async function drain(s: Readable): Promise<number> {
  let n = 0;
  for await (const c of s) n += (c as Buffer).length;
  return n;
}

/** One strata variant per driver. */
export const perDriver = (ctx: BenchContext, fn: (d: BenchDriver) => Partial<Variant> & { op: () => Promise<unknown> }): Variant[] =>
  ctx.drivers.map((d) => {
    const { op, ...rest } = fn(d);
    return { name: d.name, kind: 'strata', run: () => timeOurs(op), ...rest };
  });

/** One peer variant per containers-storage driver: argv built from that peer's layer ids. */
export const perCs = (ctx: BenchContext, ids: CsIds, fn: (c: CsPeer, id: (ours: string) => string) => Partial<Variant> & { argv: () => string[] }): Variant[] =>
  ctx.cs.map((c) => {
    const { argv, ...rest } = fn(c, (ours) => ids.get(c)!.get(ours)!);
    return { name: c.name, kind: 'peer', run: async () => timeChild(argv()), ...rest };
  });

/** get + read a file + put, in each driver. */
export const readThrough = (d: BenchDriver, id: string, file: string) => async () => {
  const p = await d.driver.get(id);
  try {
    readFileSync(join(p, file));
  } finally {
    await d.driver.put(id);
  }
};
