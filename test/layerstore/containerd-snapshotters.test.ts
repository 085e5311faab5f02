// The snapshotter facts and continuity's usage rules on trees made here
// (the real snapshotters' figures are checked against ctr in
// test/containerd-{native,btrfs}.test.ts): what fs.DiffUsage counts — a
// modified or added entry, each inode once, a directory only for its own
// stat, a same-second file by its content — and where each kind's tree is.
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { diffUsage, treeUsage } from '../../layerstore/containerd/snapshotter.ts';
import { btrfs } from '../../layerstore/containerd/snapshotters/btrfs.ts';
import { native } from '../../layerstore/containerd/snapshotters/native.ts';
import { overlayfs } from '../../layerstore/containerd/snapshotters/overlayfs.ts';
import type { BackendSnapshot } from '../../layerstore/containerd/snapshotters/meta-store.ts';

function tmp(t: { teardown: (f: () => void) => void }): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-ctr-usage-'));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

/** The same small tree twice, times kept (a snapshot of it, as btrfs makes one). */
function twoTrees(dir: string): [string, string] {
  const trees = ['lower', 'upper'].map((n) => path.join(dir, n));
  const when = new Date(1_700_000_000_000);
  for (const root of trees) {
    fs.mkdirSync(path.join(root, 'etc/sub'), { recursive: true });
    fs.writeFileSync(path.join(root, 'etc/a.txt'), 'aaaa');
    fs.writeFileSync(path.join(root, 'etc/same.txt'), 'same');
    fs.writeFileSync(path.join(root, 'etc/sub/s.txt'), 'sub');
    for (const p of ['etc/a.txt', 'etc/same.txt', 'etc/sub/s.txt', 'etc/sub', 'etc']) fs.utimesSync(path.join(root, p), when, when);
  }
  return [trees[0], trees[1]];
}

test('diffUsage: identical trees (other inodes, same stat and content) count nothing', (t) => {
  const [lower, upper] = twoTrees(tmp(t));
  t.deepEqual(diffUsage(lower, upper), { size: 0, inodes: 0 });
});

test('diffUsage: a same-size, same-second file is compared by content; a parent with changes below is not counted', (t) => {
  const [lower, upper] = twoTrees(tmp(t));
  fs.writeFileSync(path.join(upper, 'etc/a.txt'), 'bbbb');
  const when = new Date(1_700_000_000_000);
  fs.utimesSync(path.join(upper, 'etc/a.txt'), when, when);
  fs.utimesSync(path.join(upper, 'etc'), new Date(), new Date());
  const st = fs.lstatSync(path.join(upper, 'etc/a.txt'));
  t.deepEqual(diffUsage(lower, upper), { size: st.blocks * 512, inodes: 1 });
});

test('diffUsage: added trees count every entry, hard links once; a directory counts for its mode; deletions count nothing', (t) => {
  const [lower, upper] = twoTrees(tmp(t));
  fs.mkdirSync(path.join(upper, 'new/deep'), { recursive: true });
  fs.writeFileSync(path.join(upper, 'new/deep/f'), 'x'.repeat(5000));
  fs.linkSync(path.join(upper, 'new/deep/f'), path.join(upper, 'new/g'));
  fs.chmodSync(path.join(upper, 'etc/sub'), 0o700);
  fs.rmSync(path.join(upper, 'etc/same.txt'));
  const blocks = ['new', 'new/deep', 'new/deep/f', 'etc/sub'].reduce((s, p) => s + fs.lstatSync(path.join(upper, p)).blocks * 512, 0);
  t.deepEqual(diffUsage(lower, upper), { size: blocks, inodes: 4 });
});

test('diffUsage: a directory replacing a file counts with all it holds', (t) => {
  const [lower, upper] = twoTrees(tmp(t));
  fs.rmSync(path.join(upper, 'etc/a.txt'));
  fs.mkdirSync(path.join(upper, 'etc/a.txt'));
  fs.writeFileSync(path.join(upper, 'etc/a.txt/in'), 'in');
  t.is(diffUsage(lower, upper).inodes, 2);
});

test('treeUsage: every inode of the tree once, the root included', (t) => {
  const [, upper] = twoTrees(tmp(t));
  fs.linkSync(path.join(upper, 'etc/a.txt'), path.join(upper, 'etc/a2'));
  t.is(treeUsage(upper).inodes, 6);
});

const snap = (kind: BackendSnapshot['kind'], parent: string | null): BackendSnapshot => ({
  name: 'k', id: '7', kind, parent, size: null, inodes: null, createdAt: null, labels: {},
});

test('facts: where each snapshotter keeps each kind of snapshot', (t) => {
  t.is(overlayfs.tree(snap('Active', 'p'), () => 'snapshots/3/fs'), 'snapshots/7/fs');
  t.deepEqual(overlayfs.extraDirs!('/h', snap('Active', 'p')), { WorkDir: '/h/snapshots/7/work' });
  t.is(native.tree(snap('Active', 'p'), () => 'snapshots/3'), 'snapshots/7');
  t.is(native.tree(snap('View', 'p'), () => 'snapshots/3'), 'snapshots/3', 'a native view bind-mounts its parent');
  t.is(native.ownDir(snap('View', 'p')), null);
  t.is(native.tree(snap('View', null), () => null), 'snapshots/7');
  t.deepEqual(['Active', 'View', 'Committed'].map((k) => btrfs.tree(snap(k as BackendSnapshot['kind'], 'p'), () => null)), ['active/7', 'view/7', 'snapshots/7']);
  t.is(btrfs.tree(snap('Unknown', 'p'), () => null), null);
});
