// moby's graphbench set under its names (daemon/graphdriver/graphtest/graphbench_unix.go),
// the same shapes (addFiles seed 50, addManyFiles, addLayerFiles), with sizes cut by --quick.
// Diffs here are against the layer's parent (moby's DiffN diff against '', the naive path:
// DiffBase and DeepLayerDiff keep that). Peers: containers-storage on each of its drivers, one process per call.
import { createReadStream } from 'node:fs';
import { fileEntry, manyFiles, T_LOWER, T_UPPER } from '../../lib/shapes.ts';
import { randomBytes, type SampleEntry } from '../../../fixtures/sample-image.ts';
import { timeChildren } from '../measure-child.ts';
import type { BenchContext, Variant, Workload } from '../types.ts';
import { buildChain, deepChain, drain, manyCount, manyLower, perCs, perDriver, readThrough, type LayerSpec } from './common.ts';

const PEER = 'containers-storage overlay';
/** the top of DeepLayerDiff/Read's chain: moby's 50 layers over the base, 7 (an 8-layer chain, the quick sweep's) with --quick */
const deepTop = (ctx: BenchContext) => (ctx.quick ? 7 : 50);
const addFiles = (mtime: number) => [
  fileEntry('file-a', randomBytes(50, 64), mtime), fileEntry('file-c', randomBytes(52, 16384), mtime), fileEntry('testfile.txt', 'test content', mtime),
];

/** diff(upper, parent) drained, in every driver and peer, over a two-layer chain. */
// what a diff against a parent costs on the naive path, said where those numbers are shown
const NAIVE_WAIT = "; a naive diff (moby's NaiveDiffDriver: vfs, overlay) ends no sooner than the next whole second after it started, as moby's does, so back-to-back samples of it mostly measure that wait";

function diffWorkload(name: string, description: string, lower: (ctx: BenchContext) => LayerSpec, upper: (ctx: BenchContext) => SampleEntry[]): Workload {
  return {
    name, group: 'graphbench', description: description + NAIVE_WAIT, reference: PEER,
    setup: async (ctx) => {
      const base = lower(ctx);
      const top = `${name.toLowerCase()}-upper`;
      const { cs } = await buildChain(ctx, [base, { id: top, parent: base.id, entries: upper(ctx) }]);
      return [
        ...perDriver(ctx, (d) => ({ op: () => drain(d.driver.diff(top, base.id)) })),
        ...perCs(ctx, cs, (c, id) => ({ argv: () => c.argv('diff', '-u', id(top)) })),
      ];
    },
  };
}
const own = (id: string, entries: (ctx: BenchContext) => SampleEntry[]) => (ctx: BenchContext): LayerSpec => ({ id, parent: null, entries: entries(ctx) });

export const graphbench: Workload[] = [
  {
    name: 'Exists', group: 'graphbench', reference: PEER,
    description: 'exists(layer): one call (peer: a whole `containers-storage exists` process, start-up and store load included)',
    setup: async (ctx) => {
      const { cs } = await buildChain(ctx, [{ id: 'exists-base', parent: null, entries: addFiles(T_LOWER) }]);
      return [
        ...perDriver(ctx, (d) => ({ op: async () => d.driver.exists('exists-base') })),
        ...perCs(ctx, cs, (c, id) => ({ argv: () => c.argv('exists', id('exists-base')) })),
      ];
    },
  },
  {
    name: 'GetEmpty', group: 'graphbench', reference: PEER,
    description: 'get + put of an empty layer (peer: `mount` + `unmount` processes)',
    setup: async (ctx) => {
      const { cs } = await buildChain(ctx, [{ id: 'getempty', parent: null, entries: [] }]);
      return [
        ...perDriver(ctx, (d) => ({ op: async () => { await d.driver.get('getempty'); await d.driver.put('getempty'); } })),
        ...ctx.cs.map((c): Variant => {
          const id = cs.get(c)!.get('getempty')!;
          return { name: c.name, kind: 'peer', run: async () => timeChildren([c.argv('mount', id), c.argv('unmount', id)]) };
        }),
      ];
    },
  },
  {
    name: 'DiffBase', group: 'graphbench', reference: PEER,
    description: "diff(base, '') of a base layer (addFiles, seed 50), drained: the whole-layer export",
    setup: async (ctx) => {
      const { cs } = await buildChain(ctx, [{ id: 'diffbase', parent: null, entries: addFiles(T_UPPER) }]);
      return [
        ...perDriver(ctx, (d) => ({ op: () => drain(d.driver.diff('diffbase', '')) })),
        ...perCs(ctx, cs, (c, id) => ({ argv: () => c.argv('diff', '-u', id('diffbase')) })),
      ];
    },
  },
  diffWorkload('DiffSmallUpper', 'diff(upper, lower) drained: lower addManyFiles(N, 3), upper addManyFiles(10, 6)', manyLower, () => manyFiles(10, 6, T_UPPER)),
  diffWorkload('Diff10KFileUpper', 'diff(upper, lower) drained: lower addManyFiles(10, 3), upper addManyFiles(N, 6) (N = 10000, 1000 with --quick)', own('diff10kfileupper-lower', () => manyFiles(10, 3, T_LOWER)), (ctx) => manyFiles(manyCount(ctx), 6, T_UPPER)),
  diffWorkload('Diff10KFilesBottom', 'diff(upper, lower) drained: lower addManyFiles(N, 3), upper addManyFiles(10, 6) with its own names', manyLower, () => manyFiles(10, 6, T_UPPER).map((e) => ({ ...e, header: { ...e.header, name: `top-${e.header.name}` } }))),
  {
    name: 'DiffApply100', group: 'graphbench', reference: PEER,
    description: 'applyDiff of a 100-file layer into a fresh child of a base (create/remove untimed)',
    setup: async (ctx) => {
      const { tars, cs } = await buildChain(ctx, [
        { id: 'apply100-base', parent: null, entries: manyFiles(100, 3, T_LOWER) },
        { id: 'apply100-src', parent: 'apply100-base', entries: manyFiles(100, 6, T_UPPER) },
      ]);
      const tar = tars.get('apply100-src')!;
      let n = 0;
      const child = () => `apply100-child-${n}`;
      let csChild = '';
      return [
        ...perDriver(ctx, (d) => ({
          before: async () => { n++; await d.driver.create(child(), 'apply100-base'); },
          op: () => d.driver.applyDiff(child(), 'apply100-base', createReadStream(tar, { highWaterMark: 1 << 20 })),
          after: () => d.driver.remove(child()),
        })),
        ...perCs(ctx, cs, (c, id) => ({
          before: () => { csChild = c.layer(id('apply100-base')); },
          argv: () => c.argv('applydiff', '-f', tar, csChild),
          after: () => void c.call('delete-layer', csChild),
        })),
      ];
    },
  },
  {
    name: 'DeepLayerDiff', group: 'graphbench', reference: PEER,
    description: "diff(top, '') drained over 50 layers on a base (7 with --quick): the whole-tree path",
    setup: async (ctx) => {
      const { top, cs } = await deepChain(ctx, deepTop(ctx));
      return [
        ...perDriver(ctx, (d) => ({ op: () => drain(d.driver.diff(top, '')) })),
        ...perCs(ctx, cs, (c, id) => ({ argv: () => c.argv('diff', '-u', id(top)) })),
      ];
    },
  },
  {
    name: 'DeepLayerRead', group: 'graphbench', reference: PEER,
    description: "get(top) + read the base layer's testfile.txt + put, through 50 layers on a base (7 with --quick) (peer: mount + unmount)",
    setup: async (ctx) => {
      const { top, cs } = await deepChain(ctx, deepTop(ctx));
      return [
        ...perDriver(ctx, (d) => ({ op: readThrough(d, top, 'testfile.txt') })),
        ...ctx.cs.map((c): Variant => {
          const id = cs.get(c)!.get(top)!;
          return { name: c.name, kind: 'peer', run: async () => timeChildren([c.argv('mount', id), c.argv('unmount', id)]) };
        }),
      ];
    },
  },
];
