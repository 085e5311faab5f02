// What the workload groups share: layer chains built the same way in every
// driver and every containers-storage peer, and the variant makers.
import { createReadStream, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { SampleEntry } from '../../../fixtures/sample-image.ts';
import { writeTar } from '../../lib/shapes.ts';
import { timeChild, timeOurs } from '../measure-child.ts';
import type { BenchContext, BenchDriver, CsPeer, Variant } from '../types.ts';

export interface LayerSpec { id: string; parent: string | null; entries: SampleEntry[] }

/** Layer ids in each containers-storage peer, by our id. */
export type CsIds = Map<CsPeer, Map<string, string>>;

/** Write each layer's tar under ctx.dir/tars, then create + applyDiff it in every driver and peer (untimed). */
export async function buildChain(ctx: BenchContext, tag: string, layers: LayerSpec[]): Promise<{ tars: Map<string, string>; cs: CsIds }> {
  const tars = new Map<string, string>();
  const cs: CsIds = new Map(ctx.cs.map((c) => [c, new Map<string, string>()]));
  for (const l of layers) {
    const tar = join(ctx.dir, 'tars', `${tag}-${l.id}.tar`);
    await writeTar(l.entries, tar);
    tars.set(l.id, tar);
    for (const { driver } of ctx.drivers) {
      await driver.create(l.id, l.parent);
      await driver.applyDiff(l.id, l.parent, createReadStream(tar, { highWaterMark: 1 << 20 }));
    }
    for (const c of ctx.cs) {
      const ids = cs.get(c)!;
      ids.set(l.id, c.layer(l.parent === null ? null : ids.get(l.parent)!, tar));
    }
  }
  return { tars, cs };
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
