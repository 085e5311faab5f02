// Workloads shaped like a container's life over a large base: the changes of a
// container layer with N modified files, and the copy-up cost of modifying a
// large lower file (get the child, append to the file, put; the layer reset untimed).
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from '../../../fixtures/sample-image.ts';
import { changeManyFiles, fileEntry, T_LOWER, T_UPPER } from '../../lib/shapes.ts';
import type { Workload } from '../types.ts';
import { buildChain, manyCount, manyLower, perCs, perDriver } from './common.ts';

const PEER = 'containers-storage overlay';

export const realistic: Workload[] = [
  {
    name: 'ChangesModified', group: 'container', reference: PEER,
    description: 'changes(container, base): base addManyFiles(N), container rewrites / adds / deletes a third each (N = 10000, 1000 with --quick)',
    setup: async (ctx) => {
      const base = manyLower(ctx);
      const { cs } = await buildChain(ctx, [base, { id: 'changes-top', parent: base.id, entries: changeManyFiles(manyCount(ctx), 6, T_UPPER) }]);
      return [
        ...perDriver(ctx, (d) => ({ op: () => d.driver.changes('changes-top', base.id) })),
        ...perCs(ctx, cs, (c, id) => ({ argv: () => c.argv('changes', id('changes-top')) })),
      ];
    },
  },
  {
    name: 'CopyUpLargeFile', group: 'container', reference: 'vfs',
    description: 'get(child) + append 1 byte to a 64 MB lower file (16 MB with --quick) + put: the copy-up (vfs copied it at create)',
    setup: async (ctx) => {
      const size = ctx.quick ? 16 << 20 : 64 << 20;
      await buildChain(ctx, [{ id: 'copyup-base', parent: null, entries: [fileEntry('big.bin', randomBytes(77, size), T_LOWER)] }]);
      let k = 0;
      const child = () => `copyup-child-${k}`;
      return perDriver(ctx, (d) => ({
        before: async () => { k++; await d.driver.create(child(), 'copyup-base'); },
        op: async () => {
          const p = await d.driver.get(child());
          try {
            appendFileSync(join(p, 'big.bin'), 'x');
          } finally {
            await d.driver.put(child());
          }
        },
        after: () => d.driver.remove(child()),
      }));
    },
  },
];
