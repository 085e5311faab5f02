// Deep chains (moby's DeepLayerRead idea, swept): chains of 1 → 128 layers
// (1, 8, 32, 128; 1 and 8 with --quick), the same chain DeepLayerDiff/Read use.
// Per depth, the mount time (get of the top, put untimed) and the first-read
// latency (read the base layer's testfile.txt right after the mount and one
// read outside it: the union's lookup through every lower). Peers: containers-storage `mount` (a
// whole process) and the same first read, in this process, through its mount.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deepId } from '../../lib/shapes.ts';
import { timeChild, timeOurs } from '../measure-child.ts';
import type { BenchContext, Variant, Workload } from '../types.ts';
import { deepChain } from './common.ts';

const PEER = 'containers-storage overlay';
const FILE = 'testfile.txt';
export const depths = (ctx: BenchContext) => (ctx.quick ? [1, 8] : [1, 8, 32, 128]);

/** One variant per (driver or peer) × depth, over the chain's layer `depth - 1`. */
async function sweep(ctx: BenchContext, make: (depth: number, top: string, csId: (c: BenchContext['cs'][number]) => string) => Variant[]): Promise<Variant[]> {
  const ds = depths(ctx);
  const { cs } = await deepChain(ctx, Math.max(...ds) - 1);
  return ds.flatMap((depth) => {
    const top = deepId(depth - 1);
    return make(depth, top, (c) => cs.get(c)!.get(top)!);
  });
}

/**
 * Read a small file outside every union once, right before the timed read. A read
 * just after a child process returned (the peers' mount) costs ~0.15 ms more than
 * one after another read, whatever it reads: the process's own read path is cold.
 * Every variant does this one, so the timed read measures the union's lookup only.
 */
function warmRead(ctx: BenchContext): () => void {
  const file = join(ctx.dir, 'first-read-warm');
  writeFileSync(file, 'warm');
  return () => void readFileSync(file);
}

const point = (series: string, depth: number) => ({ name: `${series} @${depth}`, series, at: depth });

export const deepChains: Workload[] = [
  {
    name: 'DeepChainMount', group: 'deep chains', reference: PEER, sweep: 'layers',
    description: 'get(top) of a chain of N layers, put untimed (peer: a `containers-storage mount` process, unmount untimed)',
    setup: (ctx) => sweep(ctx, (depth, top, csId) => [
      ...ctx.drivers.map((d): Variant => ({
        ...point(d.name, depth), kind: 'strata',
        run: () => timeOurs(() => d.driver.get(top)),
        after: () => d.driver.put(top),
      })),
      ...ctx.cs.map((c): Variant => ({
        ...point(c.name, depth), kind: 'peer',
        run: async () => timeChild(c.argv('mount', csId(c))),
        after: () => void c.call('unmount', csId(c)),
      })),
    ]),
  },
  {
    name: 'DeepChainFirstRead', group: 'deep chains', reference: PEER, sweep: 'layers',
    description: `first read of the base layer's ${FILE} right after mounting the top of a chain of N layers (mount and unmount untimed; peer: the same read through its mount)`,
    setup: (ctx) => sweep(ctx, (depth, top, csId) => {
      let mnt = '';
      const warm = warmRead(ctx);
      return [
        ...ctx.drivers.map((d): Variant => ({
          ...point(d.name, depth), kind: 'strata',
          before: async () => { mnt = await d.driver.get(top); warm(); },
          run: () => timeOurs(async () => readFileSync(join(mnt, FILE))),
          after: () => d.driver.put(top),
        })),
        ...ctx.cs.map((c): Variant => ({
          ...point(c.name, depth), kind: 'peer',
          before: () => { mnt = c.call('mount', csId(c)).trim(); warm(); },
          run: () => timeOurs(async () => readFileSync(join(mnt, FILE))),
          after: () => void c.call('unmount', csId(c)),
        })),
      ];
    }),
  },
];
