// Apply and export of a large layer: a generated tree shaped like real images
// (fixtures/big-tree.ts: log-normal file sizes, dirs, symlinks, hardlinks; 300 MB,
// 16 MB with --quick), packed once by GNU tar. Apply: strata's engine into a fresh
// dir, every driver's applyDiff into a fresh layer, GNU tar -x, containers-storage
// applydiff. Export: strata exportDir vs GNU tar -c (--xattrs, as ours reads them).
import { createReadStream, createWriteStream, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { applyLayer } from '../../../archive/apply.ts';
import { exportDir } from '../../../archive/export.ts';
import { generateTree, gnuTar } from '../../../fixtures/big-tree.ts';
import { timeChild, timeOurs } from '../measure-child.ts';
import type { BenchContext, Variant, Workload } from '../types.ts';
import { once, perCs, perDriver } from './common.ts';

const GNU_X = 'GNU tar -x';
const GNU_C = 'GNU tar -c';

/** The tree and its tar, made once per run (both workloads use them). */
const bigLayer = (ctx: BenchContext) => once(ctx, 'big-layer', async () => {
  const tree = join(ctx.dir, 'big-tree');
  const tar = join(ctx.dir, 'tars', 'big-layer.tar');
  generateTree(tree, { totalBytes: ctx.quick ? 16e6 : 300e6, seed: 0xb16 });
  gnuTar(tree, tar);
  return { tree, tar };
});

export const tarWorkloads: Workload[] = [
  {
    name: 'ApplyLargeLayer', group: 'tar', reference: GNU_X,
    description: 'apply a generated image-shaped layer (300 MB; 16 MB with --quick) into a fresh dir / fresh layer',
    setup: async (ctx) => {
      const { tar } = await bigLayer(ctx);
      const target = join(ctx.dir, 'apply-target');
      const fresh = { before: () => mkdirSync(target), after: () => rmSync(target, { recursive: true, force: true }) };
      let n = 0;
      let csChild = '';
      const child = () => `big-${n}`;
      const read = () => createReadStream(tar, { highWaterMark: 1 << 20 });
      return [
        { name: 'strata engine', kind: 'strata', ...fresh, run: () => timeOurs(() => applyLayer(read(), target, { whiteouts: 'none' })) },
        { name: GNU_X, kind: 'peer', ...fresh, run: async () => timeChild(['tar', '-xf', tar, '-C', target]) },
        ...perDriver(ctx, (d) => ({
          before: async () => { n++; await d.driver.create(child(), null); },
          op: () => d.driver.applyDiff(child(), null, read()),
          after: () => d.driver.remove(child()),
        })),
        ...perCs(ctx, new Map(), (c) => ({
          before: () => { csChild = c.layer(null); },
          argv: () => c.argv('applydiff', '-f', tar, csChild),
          after: () => void c.call('delete-layer', csChild),
        })),
      ] satisfies Variant[];
    },
  },
  {
    name: 'ExportLayer', group: 'tar', reference: GNU_C,
    description: 'export the same generated tree to a tar file (xattrs read by both)',
    setup: async (ctx) => {
      const { tree } = await bigLayer(ctx);
      const out = join(ctx.dir, 'export.tar');
      const clean = { after: () => rmSync(out, { force: true }) };
      return [
        { name: 'strata engine', kind: 'strata', ...clean, run: () => timeOurs(() => pipeline(exportDir(tree, { whiteouts: 'none' }), createWriteStream(out))) },
        { name: GNU_C, kind: 'peer', ...clean, run: async () => timeChild(['tar', '--xattrs', '--xattrs-include=*', '-cf', out, '-C', tree, '.']) },
      ];
    },
  },
];
