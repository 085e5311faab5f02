// The layout table (drivers/all.ts) and the layouts of the drivers strata
// drives: what a layout says about a home agrees with what the driver that
// wrote it says, and reading the table loads no driver and no FFI.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { homesIn, knownLayouts, layoutFor } from '../drivers/all.ts';
import { holdsData } from '../drivers/layout.ts';
import { getDriver, registeredDrivers } from '../drivers/registry.ts';
import { asRoot } from './helpers/require.ts';
import { packTar, tempDir } from './helpers/tar.ts';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

test('one layout per folder: the drivers, the layout-only formats and docker 0.6\'s graph/', (t) => {
  t.deepEqual(knownLayouts().map((l) => l.name), ['overlay2', 'fuse-overlayfs', 'aufs', 'overlay', 'btrfs', 'devicemapper', 'vfs', 'zfs', 'graph']);
  t.deepEqual(registeredDrivers(), ['aufs', 'btrfs', 'devicemapper', 'overlay', 'overlay2', 'vfs'], 'the folders with a driver register it');
  for (const l of knownLayouts()) if (l.offlineDiff === 'driver') t.true(registeredDrivers().includes(l.name), `${l.name}: offline diffs through a registered driver`);
  t.deepEqual(knownLayouts().filter((l) => !l.graphdriver).map((l) => l.name), ['graph']);
  t.is(layoutFor('nosuch'), undefined);
  for (const l of knownLayouts()) t.is(l.holds === 'diffs', l.diffFormat !== null, `${l.name}: a diff format exactly when it holds diffs`);
});

test('holdsData is the one non-empty-home rule; homesIn lists the graphdriver homes with data, in table order', (t) => {
  const { dir: root, cleanup } = tempDir('strata-layouts-');
  t.teardown(cleanup);
  t.false(holdsData(path.join(root, 'missing')));
  fs.mkdirSync(path.join(root, 'vfs'));
  t.false(holdsData(path.join(root, 'vfs')), 'an empty directory');
  fs.writeFileSync(path.join(root, 'overlay2'), 'x');
  t.false(holdsData(path.join(root, 'overlay2')), 'a file');
  fs.mkdirSync(path.join(root, 'vfs', 'dir'));
  fs.mkdirSync(path.join(root, 'aufs', 'diff'), { recursive: true });
  fs.mkdirSync(path.join(root, 'graph', 'abc'), { recursive: true });
  t.true(holdsData(path.join(root, 'vfs')));
  t.deepEqual(homesIn(root), ['aufs', 'vfs'], 'graph/ is metadata of later dockers, never a driver home');
});

test('the layout table loads no driver and no FFI binding', (t) => {
  const probe = `
    await import(${JSON.stringify(path.join(repo, 'drivers/all.ts'))});
    await import(${JSON.stringify(path.join(repo, 'inspect/driver-dirs.ts'))});
    const { createRequire } = await import('node:module');
    const cache = Object.keys(createRequire(import.meta.url).cache);
    console.log(JSON.stringify(cache.filter((k) => k.includes('ffi-rs'))));`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', probe], { encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
  t.deepEqual(JSON.parse(r.stdout.trim().split('\n').pop()!), []);
});

for (const name of ['vfs', 'overlay2', 'overlay']) {
  asRoot({ serial: true })(`${name}: its layout finds what the driver wrote (files, parents, inventory)`, async (t) => {
    const { dir: root, cleanup } = tempDir('strata-layouts-');
    t.teardown(cleanup);
    const d = await getDriver(name, root);
    t.teardown(() => d.cleanup());
    await d.create('base', null);
    await d.applyDiff('base', null, await packTar([{ name: 'a', content: 'a' }]));
    await d.create('child', 'base');
    await d.applyDiff('child', 'base', await packTar([{ name: 'b', content: 'b' }]));
    const L = layoutFor(name)!;
    const home = L.homeIn(root);
    t.is(home, d.home);
    const files = L.filesDir(home, 'child');
    t.not(files.dir, null);
    // a diff layout holds the child's own file only; a tree layout the parent's too
    t.deepEqual(fs.readdirSync(files.dir!).sort(), L.holds === 'diffs' ? ['b'] : ['a', 'b']);
    t.deepEqual(L.recordedLowers(home, 'child'), L.recordsLowers ? ['base'] : null);
    t.deepEqual(L.inventory(home).units.map((u) => u.id), ['base', 'child']);
    t.deepEqual(L.inventory(home).danglingLinks, []);
    for (const u of L.inventory(home).units) t.deepEqual(L.pathsOf(home, u.id), u.paths, `pathsOf ${u.id} is its inventory unit`);
    t.deepEqual(L.pathsOf(home, 'nosuch'), []);
    t.is(L.filesDir(home, 'nosuch').dir, null);
  });
}

test('a hostile layer id (from a store\'s cache-id, mount-id or init-id) names nothing of any layout, inside the home or out', (t) => {
  // every directory an escaping id could land on exists, so only the id check can keep a layout from naming it
  const { dir: tmp, cleanup } = tempDir('strata-layouts-');
  t.teardown(cleanup);
  const root = path.join(tmp, 'root');
  for (const d of ['diff', 'dir', 'x/diff', 'root/x/diff', 'root/diff']) fs.mkdirSync(path.join(tmp, d), { recursive: true });
  for (const l of knownLayouts()) {
    const home = l.homeIn(root);
    for (const s of ['', 'diff', 'dir', 'layers', 'mnt', 'subvolumes', 'l', 'x/diff']) fs.mkdirSync(path.join(home, s), { recursive: true });
    for (const id of ['', '.', '..', '../x', '../../x', '/', tmp, 'a/b', 'a\0b']) {
      const what = `${l.name} ${JSON.stringify(id)}`;
      t.is(l.filesDir(home, id).dir, null, `${what}: filesDir`);
      t.deepEqual(l.pathsOf(home, id), [], `${what}: pathsOf`);
      t.is(l.recordedLowers(home, id), null, `${what}: recordedLowers`);
      t.deepEqual(l.metadata(home, id), {}, `${what}: metadata`);
      if (l.rebuilt) t.false(l.rebuilt.has(home, id), `${what}: rebuilt.has`);
    }
  }
});

test('a layout follows no symlink out of the home: a layer\'s dir, or a directory of the home on the way to it, replaced by a symlink names nothing', (t) => {
  const { dir: tmp, cleanup } = tempDir('strata-layouts-');
  t.teardown(cleanup);
  const root = path.join(tmp, 'root');
  const out = path.join(tmp, 'outside');
  // outside holds every shape a layout looks for, so only the lstat of each step can refuse it
  for (const d of ['id/diff', 'id/layer', 'id/root', 'id/upper', 'id/rootfs', 'diff', 'root', 'upper', 'layer', 'rootfs']) fs.mkdirSync(path.join(out, d), { recursive: true });
  fs.writeFileSync(path.join(out, 'id', 'x'), 'x');
  for (const l of knownLayouts()) {
    const home = l.homeIn(root);
    fs.mkdirSync(home, { recursive: true });
    // each directory of the home an id is looked up in, as a symlink to outside/
    for (const sub of ['dir', 'diff', 'layers', 'mnt', 'subvolumes', 'graph']) fs.symlinkSync(out, path.join(home, sub));
    fs.symlinkSync(path.join(out, 'id'), path.join(home, 'id'));
    for (const id of ['id', 'x']) {
      const what = `${l.name} ${id}`;
      t.is(l.filesDir(home, id).dir, null, `${what}: filesDir`);
      t.deepEqual(l.pathsOf(home, id), [], `${what}: pathsOf`);
      t.deepEqual(l.inventory(home).units, [], `${what}: inventory`);
    }
  }
  fs.mkdirSync(path.join(root, 'containers'));
  fs.symlinkSync(path.join(out, 'id'), path.join(root, 'containers', 'c'));
  t.is(layoutFor('graph')!.filesDir(path.join(root, 'graph'), 'c').dir, null, 'graph: a container rw through a symlinked containers/<id>');
});

asRoot({ serial: true })('vfs: a read-only open whose dir/ is a symlink out of the home reads nothing through it', async (t) => {
  const { dir: tmp, cleanup } = tempDir('strata-layouts-');
  t.teardown(cleanup);
  const d = await getDriver('vfs', path.join(tmp, 'root'));
  await d.create('base', null);
  await d.applyDiff('base', null, await packTar([{ name: 'a', content: 'a' }]));
  await d.cleanup();
  const home = path.join(tmp, 'root', 'vfs');
  fs.renameSync(path.join(home, 'dir'), path.join(tmp, 'elsewhere'));
  fs.symlinkSync(path.join(tmp, 'elsewhere'), path.join(home, 'dir'));
  const { openReadOnly } = await import('../drivers/registry.ts');
  await t.throwsAsync(openReadOnly('vfs', home), { message: `vfs: ${path.join(home, 'dir')} is a symlink, not the directory of layers (not followed out of the home)` });
});
