// The `read-only` open mode (drivers/driver.ts OpenMode, drivers/read-only.ts):
// a driver over a populated home reads it (layers, metadata, changes, diffSize)
// and changes nothing in it, times included; every layer write is refused
// with one line naming the home.
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import '../drivers/all.ts';
import { getDriver, openReadOnly } from '../drivers/registry.ts';
import { ChangeKind } from '../archive/types.ts';
import { treeManifest } from '../archive/digest.ts';
import { asRoot } from './helpers/require.ts';
import { packTar, tempDir } from './helpers/tar.ts';

/** A home of `name` with a base layer and a read-write child that adds one file and deletes one. */
async function populated(name: string, root: string): Promise<string> {
  const d = await getDriver(name, root);
  try {
    await d.create('base', null);
    await d.applyDiff('base', null, await packTar([{ name: 'a', content: 'a' }, { name: 'gone', content: 'g' }]));
    await d.createReadWrite('ctr', 'base');
    await d.applyDiff('ctr', 'base', await packTar([{ name: 'b', content: 'bb' }, { name: '.wh.gone', content: '' }]));
  } finally {
    await d.cleanup();
  }
  return path.join(root, name);
}

for (const name of ['vfs', 'overlay2', 'overlay']) {
  asRoot({ serial: true })(`${name}: a read-only open reads a populated home, changes nothing in it and refuses writes`, async (t) => {
    const { dir: root, cleanup } = tempDir('strata-ro-');
    t.teardown(cleanup);
    const home = await populated(name, root);
    const before = await treeManifest(home);
    const d = await openReadOnly(name, home);
    t.true(d.exists('base') && d.exists('ctr'));
    t.is(typeof d.metadata('ctr'), 'object');
    if (name !== 'overlay') {
      // vfs through get() (no mount), overlay2 on its native path: the container layer against its parent
      const changes = await d.changes('ctr', 'base');
      t.deepEqual(changes.map((c) => [c.path, c.kind]), [['/b', ChangeKind.Add], ['/gone', ChangeKind.Delete]]);
      t.is(await d.diffSize('ctr', 'base'), 2);
    }
    for (const [what, op] of [
      ['create', () => d.create('new', null)],
      ['createReadWrite', () => d.createReadWrite('new', 'base')],
      ['remove', () => d.remove('base')],
      ['applyDiff', async () => d.applyDiff('base', null, await packTar([{ name: 'x', content: 'x' }]))],
    ] as const) {
      const e = await t.throwsAsync(op());
      t.is(e?.message, `${name}: ${home} is open read-only: ${what} ${what === 'createReadWrite' || what === 'create' ? 'new' : 'base'} refused`);
    }
    if (name !== 'vfs') await t.throwsAsync(d.get('ctr'), { message: /is open read-only: get ctr \(its mount would write merged\/ into the home\) refused/ });
    await d.cleanup();
    t.deepEqual(await treeManifest(home), before);
  });
}

test('a read-only open of a missing home creates nothing and names it', async (t) => {
  const { dir: root, cleanup } = tempDir('strata-ro-');
  t.teardown(cleanup);
  for (const name of ['vfs', 'overlay2', 'overlay']) {
    const home = path.join(root, name);
    await t.throwsAsync(openReadOnly(name, home), { message: `${name}: ${home}: no such driver home` });
    t.false(fs.existsSync(home));
  }
});

for (const name of ['vfs', 'overlay2']) {
  asRoot({ serial: true })(`${name}: a read-only open follows no layer dir swapped for a symlink out of the home`, async (t) => {
    const { dir: root, cleanup } = tempDir('strata-ro-');
    t.teardown(cleanup);
    const home = await populated(name, root);
    const layerDir = name === 'vfs' ? path.join(home, 'dir', 'ctr') : path.join(home, 'ctr');
    const outside = path.join(root, 'outside');
    fs.renameSync(layerDir, outside);
    // what a reader following the link would report
    fs.writeFileSync(path.join(outside, name === 'vfs' ? 'OUTSIDE' : 'diff/OUTSIDE'), 'x');
    fs.symlinkSync(outside, layerDir);
    const d = await openReadOnly(name, home);
    t.false(d.exists('ctr'), 'a symlinked layer dir is no layer of the home');
    await t.throwsAsync(d.changes('ctr', 'base'), { message: /ctr does not exist/ });
    await t.throwsAsync(d.diffSize('ctr', 'base'), { message: /ctr does not exist/ });
    await d.cleanup();
  });
}
