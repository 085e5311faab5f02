// Issue 8: apply onto a file system that fills up — out of blocks (ENOSPC) or
// out of inodes — on a tiny loop-mounted ext4. The apply must fail with one
// clean line naming the entry, close every fd it opened, and remove its aufs
// plnk temp files (the tar makes one before the disk fills: an O_TMPFILE,
// or a temp dir where the file system has none).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { applyLayer, ApplyError } from '../archive/apply.ts';
import { detachLoop, loopMount } from '../sys/loop.ts';
import { hasTool, isRoot, when } from './helpers/require.ts';
import { packTar, tempDir, type Entry } from './helpers/tar.ts';

const ready = isRoot && hasTool('mkfs.ext4') && hasTool('losetup') && fs.existsSync('/dev/loop-control');
const test = when(ready, 'root, mkfs.ext4 (e2fsprogs), losetup and /dev/loop-control', { serial: true });
const openFds = () => fs.readdirSync('/proc/self/fd').length;

/** A fresh ext4 of `size` with `inodes` inodes, mounted in a temp dir; removed at teardown. */
function tinyExt4(t: { teardown(fn: () => void): void }, size: string, inodes: number): string {
  const { dir, cleanup } = tempDir('strata-full-fs-');
  const img = path.join(dir, 'fs.img');
  const mnt = path.join(dir, 'mnt');
  fs.mkdirSync(mnt);
  execFileSync('truncate', ['-s', size, img]);
  execFileSync('mkfs.ext4', ['-q', '-F', '-b', '1024', '-N', String(inodes), '-O', '^has_journal', '-m', '0', img]);
  const m = loopMount(img, mnt, { type: 'ext4' });
  t.teardown(() => {
    try {
      m.unmount();
    } catch {
      // busy (a failing apply that leaked an fd): detach lazily so no mount or loop device outlives the test
      execFileSync('umount', ['-l', mnt]);
      detachLoop(m.device, img, { wait: false });
    }
    cleanup();
  });
  const layer = path.join(mnt, 'layer');
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
      const layer = kind === 'inodes' ? tinyExt4(t, '8M', 64) : tinyExt4(t, '3M', 256);
      const entries: Entry[] = [...plnkFirst, { name: 'd/', type: 'directory' }];
      if (kind === 'inodes') for (let i = 0; i < 200; i++) entries.push({ name: `d/f${i}`, content: 'x' });
      else entries.push({ name: 'd/big', content: Buffer.alloc(8 << 20, 0x61) });
      const tar = await packTar(entries);
      const fds = openFds();
      const e = await t.throwsAsync(applyLayer(tar, layer, { whiteouts: format }));
      t.true(e instanceof ApplyError, String(e));
      t.false(e!.message.includes('\n'), 'one line');
      t.regex(e!.message, kind === 'inodes' ? /^tar entry "d\/f\d+": ENOSPC/ : /^tar entry "d\/big": ENOSPC/);
      t.regex(e!.message, /\(layer partially applied: \d+ entries written before it\)$/);
      t.is(openFds(), fds, 'every fd the apply opened is closed');
      t.deepEqual(fs.readdirSync(layer).filter((n) => n.startsWith('.strata-plnk-')), [], 'the plnk temp dir is removed');
      t.is(fs.readFileSync(path.join(layer, 'copy'), 'utf8'), 'shared', 'what was applied before stays');
    });
  }
}
