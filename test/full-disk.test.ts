// A full backing filesystem must not lock the user out of a driver home: on a
// tiny loop-mounted ext4 run out of blocks (a big layer applied until ENOSPC)
// or out of inodes, `strata layer ls`, `umount` and `rm` work on overlay2,
// overlay and vfs homes; what needs a probe or space fails in one line naming
// the real reason; and once `rm` of the big layer has freed the space,
// `create` and `mount` work again.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import '../drivers/all.ts';
import { getDriver } from '../drivers/registry.ts';
import { refsDirFor } from '../drivers/refcount.ts';
import { isMountPoint, parseMountPoints } from '../sys/mountinfo.ts';
import * as sys from '../sys/syscalls.ts';
import { when } from './helpers/require.ts';
import { strata, type CliResult } from './helpers/strata-cli.ts';
import { packTar } from './helpers/tar.ts';
import { fillUp, tinyExt4, tinyFsMissing, type TinyFs } from './helpers/tiny-fs.ts';

const hasOverlay = fs.readFileSync('/proc/filesystems', 'utf8').includes('\toverlay');
const missing = tinyFsMissing() ?? (hasOverlay ? null : 'overlayfs in the kernel');
const serial = when(missing === null, missing ?? '', { serial: true });

/** exit 1 and exactly one stderr line matching `re` */
function failsInOneLine(t: { is: (a: unknown, b: unknown, m?: string) => void; regex: (s: string, re: RegExp) => void; deepEqual: (a: unknown, b: unknown, m?: string) => void }, r: CliResult, re: RegExp): void {
  t.is(r.code, 1, r.stderr);
  const lines = r.stderr.split('\n');
  t.deepEqual(lines.slice(1), [''], `one line: ${JSON.stringify(r.stderr)}`);
  t.regex(lines[0], re);
}

function ok(t: { is: (a: unknown, b: unknown, m?: string) => void }, r: CliResult): string {
  t.is(r.code, 0, r.stderr);
  return r.stdout;
}

const layer = (driver: string, root: string, ...args: string[]) =>
  strata(['layer', ...args, '--driver', driver, '--home', path.join(root, driver)]);

/** Homes on the tiny fs, made while it still has room: overlay2 (base, child mounted, big), vfs (v), overlay (o1, o2 mounted). */
async function makeHomes(root: string): Promise<void> {
  const o2 = await getDriver('overlay2', root);
  await o2.create('base', null);
  await o2.create('child', 'base');
  await o2.create('big', null);
  await o2.get('child');
  await o2.persist?.('child'); // as `strata layer mount` leaves it
  await (await getDriver('vfs', root)).create('v', null);
  const ov = await getDriver('overlay', root);
  await ov.create('o1', null);
  await ov.create('o2', 'o1');
  await ov.get('o2');
  await ov.persist?.('o2');
}

/** Mounts and counts of the homes go first, then the loop fs. */
function teardown(fsys: TinyFs): void {
  const mounts = parseMountPoints(fs.readFileSync('/proc/self/mountinfo', 'latin1'))
    .filter((m) => m.startsWith(fsys.dir + '/')).sort((a, b) => b.length - a.length);
  for (const m of mounts) sys.umount2(m, sys.MNT_DETACH);
  for (const d of ['overlay2', 'overlay', 'vfs']) fs.rmSync(refsDirFor(path.join(fsys.dir, d)), { recursive: true, force: true });
  fsys.cleanup();
}

const free = (dir: string) => fs.statfsSync(dir);

/** The checks, on a full fs whose space the overlay2 layer `big` holds. */
function recovery(t: Parameters<typeof failsInOneLine>[0] & { true: (v: boolean, m?: string) => void; false: (v: boolean, m?: string) => void }, root: string, full: () => boolean, others = true): void {
  const probeFailed = /^strata: overlay2?: overlay mount probe in \S+ failed: ENOSPC: no space left on device, mkdtemp /;
  const childMerged = path.join(root, 'overlay2', 'child', 'merged');
  const o2Merged = path.join(root, 'overlay', 'o2', 'merged');
  // first what must fail, while nothing has freed a block or an inode (umount's rmdir of merged/ does)
  failsInOneLine(t, layer('overlay2', root, 'mount', 'child'), probeFailed);
  failsInOneLine(t, layer('overlay2', root, 'create', 'new'), probeFailed);
  if (others) {
    failsInOneLine(t, layer('overlay', root, 'mount', 'o2'), probeFailed);
    failsInOneLine(t, layer('vfs', root, 'create', 'v2'), /^strata: ENOSPC: no space left on device, mkdir '\S+v2'$/);
  }
  // listing and unmounting need no space
  t.regex(ok(t, layer('overlay2', root, 'ls')), /^base +\?\nbig +\?\nchild +base$/m);
  t.true(isMountPoint(childMerged));
  ok(t, layer('overlay2', root, 'umount', 'child'));
  t.false(isMountPoint(childMerged), 'umount on a full disk unmounts');
  if (others) {
    t.regex(ok(t, layer('vfs', root, 'ls')), /^v +\?$/m);
    t.regex(ok(t, layer('overlay', root, 'ls')), /^o1 +\?\no2 +\?$/m);
    t.true(isMountPoint(o2Merged));
    ok(t, layer('overlay', root, 'umount', 'o2'));
    t.false(isMountPoint(o2Merged));
  }
  t.true(full(), 'still full: the fs under test');
  if (others) {
    ok(t, layer('vfs', root, 'rm', 'v'));
    ok(t, layer('overlay', root, 'rm', 'o2'));
  }
  // rm of the layer that filled the disk frees it, and the home is usable again
  ok(t, layer('overlay2', root, 'rm', 'big'));
  t.false(full(), 'rm of the big layer freed the space');
  ok(t, layer('overlay2', root, 'create', 'new'));
  t.is(ok(t, layer('overlay2', root, 'mount', 'child')).trim(), childMerged);
  t.true(isMountPoint(childMerged));
  ok(t, layer('overlay2', root, 'umount', 'child'));
  t.false(isMountPoint(childMerged));
  t.deepEqual(fs.readdirSync(path.join(root, 'overlay2')).filter((n) => /check|userxattr|opaque/.test(n)), [], 'no probe dir left');
}

serial('out of blocks: layer ls, umount and rm work, create/mount say the probe\'s ENOSPC, and work again once rm freed the space', async (t) => {
  t.timeout(60_000);
  const fsys = tinyExt4(16);
  t.teardown(() => teardown(fsys));
  const root = fsys.dir;
  await makeHomes(root);
  const tarFile = path.join(root, '..', 'big.tar');
  fs.writeFileSync(tarFile, await packTar([{ name: 'big', content: randomBytes(20 << 20) }]));
  failsInOneLine(t, layer('overlay2', root, 'apply', 'big', '--file', tarFile), /^strata: tar entry "big": ENOSPC: no space left on device, write$/);
  fillUp(path.join(root, 'overlay2', 'big', 'diff', 'filler')); // what the apply's last write left
  const err = t.throws(() => fs.mkdtempSync(path.join(root, 'overlay2', 'x-')));
  t.is((err as NodeJS.ErrnoException).code, 'ENOSPC', 'the disk is full for root too');
  recovery(t, root, () => free(root).bavail < 8);
});

serial('out of inodes: the same for overlay2, on an ext4 whose inodes a layer of empty files used up', async (t) => {
  t.timeout(60_000);
  const fsys = tinyExt4(16, 128);
  t.teardown(() => teardown(fsys));
  const root = fsys.dir;
  await makeHomes(root);
  const tarFile = path.join(root, '..', 'many.tar');
  fs.writeFileSync(tarFile, await packTar(Array.from({ length: 400 }, (_, i) => ({ name: `f${i}`, content: '' }))));
  failsInOneLine(t, layer('overlay2', root, 'apply', 'big', '--file', tarFile), /^strata: tar entry "f\d+": ENOSPC: no space left on device, open/);
  t.is(free(root).ffree, 0, 'no inode left');
  const err = t.throws(() => fs.mkdtempSync(path.join(root, 'overlay2', 'x-')));
  t.is((err as NodeJS.ErrnoException).code, 'ENOSPC');
  recovery(t, root, () => free(root).ffree <= 1, false); // umount's rmdir of merged/ gave one back; overlay and vfs: as above
});
