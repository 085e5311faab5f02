// A child for the concurrent-writer test: opens the FIFO the parent holds
// open, says "ready", and blocks reading it until the parent closes it (the
// barrier: every child is released by the same close), then commits `count` layers, a chain
// whose metadata every child derives alike, into the store under `root`.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { chainIdOf } from '../../layerstore/digests.ts';
import { StoreWriter } from '../../layerstore/writer.ts';

const [root, barrier, countText] = process.argv.slice(2) as [string, string, string];
const hex = (s: string) => createHash('sha256').update(s).digest('hex');
const w = StoreWriter.open(root, 'vfs');
const fd = fs.openSync(barrier, 'r');
process.stdout.write('ready\n');
fs.readSync(fd, Buffer.alloc(1)); // EOF once the parent, the one writer, closes its end
fs.closeSync(fd);
let parent: string | null = null;
for (let i = 0; i < Number(countText); i++) {
  const diffId = `sha256:${hex(`diff ${i}`)}`;
  const got = w.commitLayer({ diffId, parent, cacheId: hex(`cache ${i}`), size: i, tarSplit: Buffer.from(`split ${i}`) });
  if (got !== chainIdOf(parent, diffId)) throw new Error(`layer ${i}: chain id ${got}`);
  parent = got;
}
