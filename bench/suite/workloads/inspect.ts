// Inspect on a 1,000-image store: `strata images`, `df` and `history` as the
// CLI runs them (open the store, compute the rows, render the table), through
// the inspect library in this process. The store is generated once per run in
// the work dir (fixtures/synthetic-store.ts: 100 base images shared by 900
// application images, as on a build host; 5,000 layers, 1,200 with --quick)
// and read offline. No peer: offline there is none, and a running dockerd
// would answer for its own store, not this one.
import { join } from 'node:path';
import { writeSyntheticStore } from '../../../fixtures/synthetic-store.ts';
import { diskUsage, renderDf } from '../../../inspect/df.ts';
import { imageHistory, renderHistory } from '../../../inspect/history.ts';
import { imageRows, renderImages } from '../../../inspect/images.ts';
import { openStore } from '../../../layerstore/store.ts';
import { timeOurs } from '../measure-child.ts';
import type { BenchContext, Variant, Workload } from '../types.ts';
import { once } from './common.ts';

const IMAGES = 1000;
const layers = (ctx: BenchContext) => (ctx.quick ? 1200 : 5000);

/** The store's root and the image whose history is timed (an application image: its base's history comes first). */
const store = (ctx: BenchContext) => once(ctx, 'inspect-store', async () => {
  const root = join(ctx.dir, 'inspect-store');
  const info = await writeSyntheticStore(root, undefined, { images: IMAGES, layers: layers(ctx) });
  return { root, historyOf: info.images.get('app0')!.id };
});

function inspectWorkload(name: string, what: string, op: (root: string, image: string) => Promise<unknown>): Workload {
  return {
    name, group: 'inspect', reference: null,
    description: `${what} on a ${IMAGES}-image store (5,000 layers; 1,200 with --quick), read offline through the inspect library as the CLI calls it (no peer)`,
    setup: async (ctx): Promise<Variant[]> => {
      const { root, historyOf } = await store(ctx);
      return [{ name: 'strata', kind: 'strata', run: () => timeOurs(() => op(root, historyOf)) }];
    },
  };
}

export const inspectWorkloads: Workload[] = [
  inspectWorkload('InspectImages', '`strata images`: open the store, image rows, the table', async (root) => {
    const m = await openStore(root);
    renderImages(m, imageRows(m));
  }),
  inspectWorkload('InspectDf', '`strata df`: open the store, disk usage of every driver dir, the table', async (root) => {
    const m = await openStore(root);
    renderDf(await diskUsage(m), false);
  }),
  inspectWorkload('InspectHistory', '`strata history` of an application image: open the store, its history rows, the table', async (root, image) => {
    const m = await openStore(root);
    renderHistory(m, imageHistory(m, image));
  }),
];
