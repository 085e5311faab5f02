// What a killed strata process leaves in a driver home is recovered by the
// next command: mount references of a `layer apply` killed while it held the
// mount are reclaimed (and the mount goes), probe scratch dirs of a killed
// probe are removed (their test mounts detached first); while a reference
// `strata layer mount` leaves on purpose, and a mount we did not make, stay.
import * as fs from 'node:fs';
import * as path from 'node:path';
import '../drivers/all.ts';
import { selfTag } from '../drivers/holder.ts';
import { getDriver } from '../drivers/registry.ts';
import { refsDirFor } from '../drivers/refcount.ts';
import { isMountPoint, parseMountPoints } from '../sys/mountinfo.ts';
import * as sys from '../sys/syscalls.ts';
import { LineChild, repo } from './helpers/line-child.ts';
import { asRoot } from './helpers/require.ts';
import { strata, strataSpawn } from './helpers/strata-cli.ts';
import { header, rawTar, tempDir } from './helpers/tar.ts';

const serial = asRoot({ serial: true });

/** An overlay2 home under a temp root with layers base and child (child mounts: it has a lower). */
async function overlay2Home(t: { teardown: (fn: () => void) => void }): Promise<{ root: string; home: string; merged: string }> {
  const { dir: root, cleanup } = tempDir('strata-recovery-');
  const home = path.join(root, 'overlay2');
  t.teardown(() => {
    const mounts = parseMountPoints(fs.readFileSync('/proc/self/mountinfo', 'latin1')).filter((m) => m.startsWith(root + '/'));
    for (const m of mounts.sort((a, b) => b.length - a.length)) sys.umount2(m, sys.MNT_DETACH);
    fs.rmSync(refsDirFor(home), { recursive: true, force: true });
    cleanup();
  });
  const d = await getDriver('overlay2', root);
  await d.create('base', null);
  await d.create('child', 'base');
  return { root, home, merged: path.join(home, 'child', 'merged') };
}

const layer = (home: string, ...args: string[]) => strata(['layer', ...args, '--driver', 'overlay2', '--home', home]);

serial('a `strata layer apply` killed while it holds the mount: the next command (layer ls) unmounts and drops its reference', async (t) => {
  t.timeout(30_000);
  const { home, merged } = await overlay2Home(t);
  // no --parent: not the direct parent, so the naive apply mounts the layer and untars into the mount
  const apply = strataSpawn(['layer', 'apply', 'child', '--driver', 'overlay2', '--home', home]);
  const exited = new Promise((r) => apply.once('exit', r));
  // a 64 MiB entry, of which 1 MiB is sent: once the pipe took it all, the child is
  // reading the tar, which it does only after get() has mounted the layer
  const head = rawTar([header('big', { size: 64 << 20 })]).subarray(0, 512);
  await new Promise<void>((resolve, reject) => apply.stdin!.write(Buffer.concat([head, Buffer.alloc(1 << 20)]), (e) => (e ? reject(e) : resolve())));
  t.true(isMountPoint(merged), 'the apply holds the mount');
  apply.kill('SIGKILL');
  await exited;
  t.true(isMountPoint(merged), 'killed: the mount stays behind');
  t.is(layer(home, 'ls').code, 0);
  t.false(isMountPoint(merged), 'reclaimed by the next command');
  t.false(fs.existsSync(refsDirFor(home)), 'and its reference record is gone');
});

serial('`strata layer mount` keeps its mount past its exit and past other commands; `layer umount` in a later run releases it', async (t) => {
  const { home, merged } = await overlay2Home(t);
  t.is(layer(home, 'mount', 'child').stdout.trim(), merged);
  t.true(isMountPoint(merged));
  t.is(layer(home, 'ls').code, 0);
  t.true(isMountPoint(merged), 'a persistent reference is not reclaimed');
  t.is(layer(home, 'mount', 'child').code, 0);
  t.is(layer(home, 'umount', 'child').code, 0);
  t.true(isMountPoint(merged), 'two mounts, one umount: still mounted');
  t.is(layer(home, 'umount', 'child').code, 0);
  t.false(isMountPoint(merged));
});

serial('a mount we did not make (by hand, by dockerd) is never unmounted by strata: not by ls, not by umount', async (t) => {
  const { home, merged } = await overlay2Home(t);
  fs.mkdirSync(merged);
  sys.mount('tmpfs', merged, 'tmpfs', 0, 'size=1m');
  t.is(layer(home, 'ls').code, 0);
  t.is(layer(home, 'umount', 'child').code, 0);
  t.true(isMountPoint(merged), 'an unbalanced umount leaves a foreign mount alone');
  t.is(layer(home, 'mount', 'child').stdout.trim(), merged);
  t.is(layer(home, 'umount', 'child').code, 0);
  t.is(layer(home, 'umount', 'child').code, 0);
  t.true(isMountPoint(merged));
});

// A child that makes a probe scratch dir the way the probes do, mounts a tmpfs in
// it as a probe's test mount would be, says so, and blocks there until killed.
const PROBER = `
import * as fs from 'node:fs';
const { withScratch } = await import(${JSON.stringify(path.join(repo, 'drivers/scratch.ts'))});
const sys = await import(${JSON.stringify(path.join(repo, 'sys/syscalls.ts'))});
withScratch(process.env.HOME_DIR, 'check-overlayfs-support', (d) => {
  fs.mkdirSync(d + '/merged');
  sys.mount('tmpfs', d + '/merged', 'tmpfs', 0, 'size=1m');
  fs.writeSync(1, 'ok ' + d + '\\n');
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
});
`;

serial('probe scratch dirs of killed processes are removed at the next init (their test mounts first); a live holder\'s stay', async (t) => {
  t.timeout(30_000);
  const { home } = await overlay2Home(t);
  const prober = new LineChild(PROBER, { HOME_DIR: home });
  const scratch = (await prober.line()).slice(3);
  t.true(isMountPoint(path.join(scratch, 'merged')));
  await prober.kill9();
  const mine = path.join(home, `userxattr-check-${selfTag()}-live`); // held by this (live) test process
  fs.mkdirSync(mine);
  const mobyOld = path.join(home, 'opaque-bug-check123456'); // moby's naming: no holder, a minute old
  fs.mkdirSync(mobyOld);
  fs.utimesSync(mobyOld, new Date(Date.now() - 120_000), new Date(Date.now() - 120_000));
  const mobyNew = path.join(home, 'check-overlayfs-support987654'); // no holder, just made: maybe in use
  fs.mkdirSync(mobyNew);
  t.is(layer(home, 'ls').code, 0);
  t.false(fs.existsSync(scratch), 'the killed prober\'s dir is gone');
  t.false(isMountPoint(path.join(scratch, 'merged')), 'its test mount detached first');
  t.false(fs.existsSync(mobyOld));
  t.true(fs.existsSync(mine));
  t.true(fs.existsSync(mobyNew));
  t.deepEqual(fs.readdirSync(path.join(home, 'base', 'diff')), [], 'nothing else touched');
});

// A child applying a layer on overlay (v1) over a parent with root/: the tar is first
// read once the hardlink copy of the parent is made; it says so then, and waits.
const OVERLAY_APPLIER = `
import * as fs from 'node:fs';
await import(${JSON.stringify(path.join(repo, 'drivers/all.ts'))});
const { getDriver } = await import(${JSON.stringify(path.join(repo, 'drivers/registry.ts'))});
const d = await getDriver('overlay', process.env.ROOT_DIR, [], { mode: 'manage' });
async function* tar() {
  fs.writeSync(1, 'ok copied\\n');
  await new Promise(() => {});
}
await d.applyDiff('child', 'base', tar());
`;

serial('overlay: the hardlink copy of an apply killed midway is removed at the next init', async (t) => {
  t.timeout(30_000);
  const { dir: root, cleanup } = tempDir('strata-recovery-');
  t.teardown(cleanup);
  const home = path.join(root, 'overlay');
  const d = await getDriver('overlay', root);
  await d.create('base', null);
  fs.writeFileSync(path.join(home, 'base', 'root', 'f'), 'data');
  await d.create('child', 'base');
  const applier = new LineChild(OVERLAY_APPLIER, { ROOT_DIR: root });
  t.is(await applier.line(), 'ok copied');
  const copies = () => fs.readdirSync(path.join(home, 'child')).filter((n) => n.startsWith('tmproot'));
  t.is(copies().length, 1, 'the killed apply\'s copy');
  await applier.kill9();
  t.is(strata(['layer', 'ls', '--driver', 'overlay', '--home', home]).code, 0);
  t.deepEqual(copies(), [], 'removed by the next command');
  t.is(fs.readFileSync(path.join(home, 'base', 'root', 'f'), 'utf8'), 'data', 'the parent\'s files (hardlinked into the copy) are intact');
});

// A layer holding a path deeper than PATH_MAX (any tar can make one: apply
// creates one component at a time) must still go with `layer rm`.
const DEEP = Array.from({ length: 20 }, (_, i) => String(i).padStart(250, 'd')).join('/');
for (const name of ['vfs', 'overlay2', 'overlay'] as const) {
  asRoot()(`${name}: a layer with a path deeper than PATH_MAX is removed`, async (t) => {
    const { dir: root, cleanup } = tempDir('strata-deep-rm-');
    t.teardown(cleanup);
    const d = await getDriver(name, root);
    await d.create('deep', null);
    t.is(await d.applyDiff('deep', null, rawTar([header(`top/${DEEP}/`, { type: 'dir', mode: 0o755 }), { ...header(`top/${DEEP}/f`, { size: 3 }), body: Buffer.from('abc') }])), 3);
    const content = { vfs: 'dir/deep', overlay2: 'deep/diff', overlay: 'deep/root' }[name]!;
    t.true(fs.existsSync(path.join(root, name, content, 'top', ...DEEP.split('/').slice(0, 7))), 'the deep tree was made');
    await d.remove('deep');
    t.false(fs.existsSync(path.join(root, name, 'deep')));
  });
}
