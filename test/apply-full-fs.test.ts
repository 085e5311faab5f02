// Issue 8: apply onto a file system that fills up — out of blocks (ENOSPC) or
// out of inodes — on a tiny loop-mounted ext4. The apply must fail with one
// clean line naming the entry, close every fd it opened, and remove its aufs
// plnk temp files (the tar makes one before the disk fills: an O_TMPFILE,
// or a temp dir where the file system has none).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { applyLayer, ApplyError } from '../archive/apply.ts';
import { when } from './helpers/require.ts';
import { packTar, type Entry } from './helpers/tar.ts';
import { tinyExt4, tinyFsMissing } from './helpers/tiny-fs.ts';

const missing = tinyFsMissing();
const test = when(missing === null, missing ?? '', { serial: true });
/**
 * This process's fds on anything under `dir` (the tiny file system): what an
 * apply that leaks would leave. Counting every fd of the process would race
 * with whatever else the worker opens or closes meanwhile.
 */
const fdsUnder = (dir: string) => fs.readdirSync('/proc/self/fd').filter((fd) => {
  try {
    return fs.readlinkSync(`/proc/self/fd/${fd}`).startsWith(dir + '/');
  } catch {
    return false; // closed since the listing (the listing's own fd among them)
  }
});

/** A fresh ext4 of `sizeMiB` with `inodes` inodes and no journal; its `layer` dir is returned, all removed at teardown. */
function tinyLayerFs(t: { teardown(fn: () => void): void }, sizeMiB: number, inodes: number): string {
  const fs4 = tinyExt4(sizeMiB, inodes, { journal: false });
  t.teardown(() => fs4.cleanup());
  const layer = path.join(fs4.dir, 'layer');
  fs.mkdirSync(layer);
  return layer;
}

const plnkFirst: Entry[] = [
  { name: '.wh..wh.plnk/7', content: 'shared' }, // makes the temp plnk dir
  { name: 'copy', type: 'link', linkname: '.wh..wh.plnk/7' },
];

for (const format of ['aufs', 'overlay'] as const) {
  for (const kind of ['inodes', 'blocks'] as const) {
    test(`apply out of ${kind} (${format}): one clean line naming the entry, no fd left, no plnk dir left`, async (t) => {
      const layer = kind === 'inodes' ? tinyLayerFs(t, 8, 64) : tinyLayerFs(t, 3, 256);
      const entries: Entry[] = [...plnkFirst, { name: 'd/', type: 'directory' }];
      if (kind === 'inodes') for (let i = 0; i < 200; i++) entries.push({ name: `d/f${i}`, content: 'x' });
      else entries.push({ name: 'd/big', content: Buffer.alloc(8 << 20, 0x61) });
      const tar = await packTar(entries);
      const e = await t.throwsAsync(applyLayer(tar, layer, { whiteouts: format }));
      t.true(e instanceof ApplyError, String(e));
      t.false(e!.message.includes('\n'), 'one line');
      t.regex(e!.message, kind === 'inodes' ? /^tar entry "d\/f\d+": ENOSPC/ : /^tar entry "d\/big": ENOSPC/);
      t.regex(e!.message, /\(layer partially applied: \d+ entries written before it\)$/);
      t.deepEqual(fdsUnder(path.dirname(layer)), [], 'every fd the apply opened is closed');
      t.deepEqual(fs.readdirSync(layer).filter((n) => n.startsWith('.strata-plnk-')), [], 'the plnk temp dir is removed');
      t.is(fs.readFileSync(path.join(layer, 'copy'), 'utf8'), 'shared', 'what was applied before stays');
    });
  }
}
