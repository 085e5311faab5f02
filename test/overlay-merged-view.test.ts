// overlay (v1)'s container layers read offline: a layer with upper/ is a diff
// over its lower-id's root/, and the layout reads its tree through a read-only
// overlay mount of the two. That tree must be what the driver's own mount
// shows, `docker diff` through it what the driver's changes() say, and the
// store must not change by a bit: no atime, no ctime, no xattr moves, nothing
// stays mounted or recorded.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { treeManifest } from '../archive/digest.ts';
import { changeLetter, type Change } from '../archive/types.ts';
import { layoutFor } from '../drivers/all.ts';
import { getDriver } from '../drivers/registry.ts';
import { DriverDirs } from '../inspect/driver-dirs.ts';
import { mountsUnder } from '../sys/mountinfo.ts';
import { asRoot } from './helpers/require.ts';
import { packTar, tempDir } from './helpers/tar.ts';

/** The lstat of each of `rels` under `dir`, atime and ctime in ns included (lstat alone: listing a dir would move its atime). */
function statTree(dir: string, rels: string[]): Map<string, string> {
  return new Map(rels.map((rel) => {
    const st = fs.lstatSync(path.join(dir, rel), { bigint: true });
    return [rel, `${st.mode} ${st.size} ${st.atimeNs} ${st.mtimeNs} ${st.ctimeNs} ${st.nlink}`];
  }));
}

const lines = (cs: Change[]) => cs.map((c) => `${changeLetter[c.kind]} ${c.path}`).sort();

asRoot({ serial: true })('overlay: a container layer\'s tree is read merged through a read-only mount, equal to the driver\'s, and the store is left as it was', async (t) => {
  const { dir: root, cleanup } = tempDir('strata-ovl-view-');
  t.teardown(cleanup);
  const run = path.join(root, 'run');
  process.env.STRATA_RUN_DIR = run;
  t.teardown(() => delete process.env.STRATA_RUN_DIR);
  const d = await getDriver('overlay', root);
  await d.create('base', null);
  await d.applyDiff('base', null, await packTar([
    { name: 'etc/', type: 'directory' }, { name: 'etc/keep', content: 'k' }, { name: 'etc/gone', content: 'g' },
    { name: 'opt/', type: 'directory' }, { name: 'opt/old', content: 'o' },
  ]));
  await d.createReadWrite('init', 'base');
  const initDir = await d.get('init');
  fs.writeFileSync(path.join(initDir, 'etc', 'hostname'), 'h\n');
  await d.put('init');
  await d.createReadWrite('rw', 'init');
  const rwDir = await d.get('rw');
  fs.rmSync(path.join(rwDir, 'etc', 'gone'));
  fs.rmSync(path.join(rwDir, 'opt'), { recursive: true });
  fs.mkdirSync(path.join(rwDir, 'opt'));
  fs.writeFileSync(path.join(rwDir, 'opt', 'new'), 'n');
  fs.appendFileSync(path.join(rwDir, 'etc', 'keep'), 'more');
  const driverTree = (await treeManifest(rwDir)).join('\n');
  await d.put('rw');
  const driverChanges = lines(await d.changes('rw', 'init'));
  await d.cleanup();
  t.true(driverChanges.includes('D /etc/gone') && driverChanges.includes('A /opt/new'), driverChanges.join(', '));

  const home = path.join(root, 'overlay');
  // atimes set back before every mtime (touch -a leaves mtimes to the ns), so that a relatime read would move them
  const rels = ['', ...fs.readdirSync(home, { recursive: true }) as string[]];
  execFileSync('touch', ['-a', '-h', '-d', '@978307200', ...rels.map((r) => path.join(home, r))]);
  const before = statTree(home, rels);
  const L = layoutFor('overlay')!;
  t.is(L.filesDir(home, 'rw').dir, null);
  t.true(L.rebuilt!.has(home, 'rw'));
  t.false(L.rebuilt!.has(home, 'base'), 'an image layer is a tree of its own');
  t.is(await L.rebuilt!.withFilesDir(home, 'rw', async (dir) => (await treeManifest(dir)).join('\n')), driverTree);
  t.deepEqual(statTree(home, rels), before, 'reading the merged view changed nothing of the store, atimes included');
  const dirs = new DriverDirs('overlay', root);
  t.deepEqual(lines(await dirs.changes('rw', 'init')), driverChanges);
  t.deepEqual(lines(await dirs.changes('init', 'base')), ['A /etc/hostname', 'C /etc']);
  // the change walkers list directories O_NOATIME (sys/read-dir.ts): not even a directory atime moves
  t.deepEqual(statTree(home, rels), before, 'docker diff through the views changed nothing of the store, atimes included');
  t.deepEqual(mountsUnder(root), []);
  t.false(fs.existsSync(path.join(run, 'overlay-views')) && fs.readdirSync(path.join(run, 'overlay-views')).some((h) => fs.readdirSync(path.join(run, 'overlay-views', h)).length > 0), 'no view left');
  t.deepEqual(L.metadata(home, 'rw'), { LowerDir: path.join(home, 'base', 'root'), UpperDir: path.join(home, 'rw', 'upper'), WorkDir: path.join(home, 'rw', 'work'), MergedDir: path.join(home, 'rw', 'merged') });
});
