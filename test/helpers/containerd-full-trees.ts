// The scenario for containerd's snapshotters whose trees are whole file
// systems (native: copies; btrfs: subvolume snapshots), against a real
// containerd: the two archives imported and unpacked with that snapshotter,
// a container snapshot changed through its mount as a runtime would (a file
// modified, one deleted, a directory's mode changed, files and a hard link
// added), a view and a parentless active snapshot; the docker archive also
// unpacked by overlayfs in another namespace, so the root holds two
// snapshotters' stores and each namespace's images are read from its own
// (containerd's GC held off: the view is held by nothing); ctr's listings taken
// while containerd runs, strata reads the root after it stopped. Each test
// file calls fullTreeSnapshotterTests with its snapshotter and where the root lives.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { applyLayer } from '../../archive/apply.ts';
import { changeLetter } from '../../archive/types.ts';
import { containerdDiskUsage } from '../../inspect/containerd-df.ts';
import { containerdChanges } from '../../inspect/containerd-diff.ts';
import { manifestDiff, treeManifest } from '../../archive/digest.ts';
import { backendOf, primaryStore, readContainerdStore, type ContainerdModel } from '../../layerstore/containerd/store.ts';
import { chainIds, sha256Digest } from '../../layerstore/digests.ts';
import { archiveLayers, writeArchives } from './containerd-archive.ts';
import { when } from './require.ts';
import { strata } from './strata-cli.ts';
import { startContainerd, type Containerd } from '../../fixtures/containerd.ts';

export interface RootPlace {
  /** a directory for the containerd root (it must not exist yet) */
  root: string;
  cleanup(): void;
}

interface Setup {
  c: Containerd;
  out: Record<'snapshots' | 'usage', string>;
  model: ContainerdModel;
  chains: string[];
}

const rows = (text: string) => text.trim().split('\n').slice(1);

/** containerd's progress.Bytes ("1.9 MiB"): binary units, one decimal. */
export function ctrBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(1)} ${units[i]}`;
}

export function fullTreeSnapshotterTests(sn: 'native' | 'btrfs', prereq: { ok: boolean; need: string; place?: () => RootPlace; du: string[] }): void {
  let setup: Promise<Setup> | undefined;
  let started: Containerd | undefined;
  let place: RootPlace | undefined;
  let mounted: string | undefined;

  async function build(): Promise<Setup> {
    place = prereq.place?.();
    const c = await startContainerd({ root: place?.root, gc: false });
    started = c;
    const plugins = c.ctr('plugins', 'ls');
    if (!new RegExp(`io\\.containerd\\.snapshotter\\.v1 +${sn} .* ok`).test(plugins)) throw new Error(`containerd's ${sn} snapshotter did not load:\n${plugins}`);
    const archives = await writeArchives(c.dir);
    const moby = (...a: string[]) => c.ctr('--namespace', 'moby', ...a);
    const snaps = (...a: string[]) => moby('snapshots', '--snapshotter', sn, ...a);
    moby('images', 'import', '--snapshotter', sn, archives.docker);
    moby('images', 'import', '--snapshotter', sn, archives.oci);
    c.ctr('--namespace', 'other', 'images', 'import', archives.docker);
    const { base, edit } = await archiveLayers();
    const chains = chainIds([sha256Digest(base), sha256Digest(edit)]);
    moby('containers', 'create', '--snapshotter', sn, 'docker.io/strata/busybox:1', 'c1');
    const mnt = path.join(c.dir, 'mnt');
    fs.mkdirSync(mnt);
    execFileSync('sh', ['-c', snaps('mounts', mnt, 'c1').trim()]);
    mounted = mnt;
    fs.appendFileSync(path.join(mnt, 'etc/base.txt'), 'changed by c1\n');
    fs.rmSync(path.join(mnt, 'data/keep/k.txt'));
    fs.chmodSync(path.join(mnt, 'data/keep'), 0o700);
    fs.writeFileSync(path.join(mnt, 'new.txt'), 'made by c1\n');
    fs.mkdirSync(path.join(mnt, 'newdir'));
    fs.writeFileSync(path.join(mnt, 'newdir/a'), 'x'.repeat(10_000));
    fs.linkSync(path.join(mnt, 'newdir/a'), path.join(mnt, 'newdir/b'));
    execFileSync('umount', [mnt]);
    mounted = undefined;
    snaps('view', 'v1', chains[1]);
    snaps('prepare', 'empty1');
    const out = { snapshots: snaps('ls'), usage: snaps('usage') };
    await c.stop();
    return { c, out, model: readContainerdStore(c.root), chains };
  }

  test.after.always(async () => {
    if (mounted) execFileSync('umount', [mounted]);
    await started?.cleanup();
    place?.cleanup();
  });

  const get = () => (setup ??= build());
  const t0 = when(prereq.ok, prereq.need);

  t0(`${sn}: the root's snapshotter is found by what it holds; keys, parents and kinds as ctr snapshots ls shows them`, async (t) => {
    const { out, model } = await get();
    const d = model.containerd;
    t.is(d.snapshotter, sn);
    t.is(model.driver, sn);
    t.deepEqual([...d.snapshotters.keys()], ['overlayfs', sn], 'the other snapshotters never stored anything');
    t.deepEqual([...d.ns.snapshots.keys()], [sn], 'namespace moby has no overlayfs snapshot');
    const ls = rows(out.snapshots).map((l) => l.trim().split(/\s+/)).map((w) => (w.length === 2 ? [w[0], '', w[1]] : w));
    const ours = [...d.ns.snapshots.get(sn)!.values()].map((s) => [s.key, s.parent ?? '', backendOf(d, s.key)!.kind]);
    t.deepEqual(ours, ls);
    t.deepEqual(ours.map((o) => o[2]).sort(), ['Active', 'Active', 'Committed', 'Committed', 'View']);
    t.deepEqual(model.problems.list, []);
  });

  t0(`${sn}: df --json gives every snapshot's usage as ctr snapshots usage does; df -v lists them; the root on disk like du`, async (t) => {
    const { c, out } = await get();
    const r = strata(['df', '--root', c.root, '--json']);
    t.is(r.code, 0, r.stderr);
    const df = JSON.parse(r.stdout) as { snapshots: { snapshotter: string; key: string; size: number; inodes: number; heldBy: string[] }[]; total: { disk: number }; orphanDirs: unknown[] };
    const usage = rows(out.usage).map((l) => l.trim().split(/\s+/)).map(([k, n, u, inodes]) => [k, `${n} ${u}`, inodes]);
    t.log(out.usage);
    t.deepEqual(df.snapshots.map((s) => [s.key, ctrBytes(s.size), String(s.inodes)]), usage);
    t.true(df.snapshots.every((s) => s.snapshotter === sn));
    t.deepEqual(df.snapshots.find((s) => s.key === 'c1')!.heldBy, ['container c1']);
    t.deepEqual(df.snapshots.find((s) => s.key === 'v1')!.heldBy, [], 'a view nothing holds is garbage');
    t.deepEqual(df.orphanDirs, []);
    const du = Number(execFileSync('du', [...prereq.du, '--block-size=1', c.root], { encoding: 'utf8' }).split('\t')[0]);
    t.is(df.total.disk, du);
    const v = strata(['df', '-v', '--root', c.root]);
    t.regex(v.stdout, new RegExp(`\\nc1 +${sn} +\\d+ +Active +`));
  });

  t0(`${sn}: images sizes are content plus the committed snapshots' usage; inspect names the snapshotter and the tree`, async (t) => {
    const { c, model, chains } = await get();
    const r = strata(['images', '--root', c.root, '--json']);
    t.is(r.code, 0, r.stderr);
    const list = JSON.parse(r.stdout) as { repository: string; size: number; layers: string[] }[];
    t.deepEqual(list.map((x) => x.repository).sort(), ['strata/busybox', 'strata/multi']);
    const unpacked = chains.reduce((s, ch) => s + backendOf(model.containerd, ch)!.size!, 0);
    t.true(unpacked > 0);
    for (const row of list) {
      t.deepEqual(row.layers, chains);
      t.is(row.size, model.containerd.resolved.get(`docker.io/${row.repository}:1`)!.contentSize + unpacked);
    }
    const i = strata(['inspect', '--root', c.root, 'c1']);
    t.is(i.code, 0, i.stderr);
    const [ctr] = JSON.parse(i.stdout) as { GraphDriver: { Name: string; Data: Record<string, string> } }[];
    t.is(ctr.GraphDriver.Name, sn);
    t.is(ctr.GraphDriver.Data.Kind, 'Active');
    t.true(fs.existsSync(path.join(ctr.GraphDriver.Data.Dir, 'newdir/b')));
  });

  t0(`${sn}: a namespace whose images overlayfs unpacked is read through overlayfs, from the same root`, async (t) => {
    const { c, chains } = await get();
    const other = readContainerdStore(c.root, { namespace: 'other' });
    t.is(other.containerd.snapshotter, 'overlayfs');
    const img = [...other.images.values()][0];
    t.deepEqual(img.layers, chains);
    t.true(img.layers.every((l) => backendOf(other.containerd, l)?.kind === 'Committed'));
    t.is(img.size, other.containerd.resolved.get('docker.io/strata/busybox:1')!.contentSize + chains.reduce((s, ch) => s + backendOf(other.containerd, ch)!.size!, 0));
    const df = containerdDiskUsage(other);
    t.deepEqual(df.snapshots.map((s) => s.snapshotter), ['overlayfs', 'overlayfs']);
    t.deepEqual(df.orphanDirs, [], 'the moby namespace\'s snapshots own their dirs, whatever namespace is read');
  });

  t0(`${sn}: each committed snapshot's tree is its image's layers applied, in order`, async (t) => {
    const { c, model, chains } = await get();
    const { base, edit } = await archiveLayers();
    const ref = fs.mkdtempSync(path.join(c.dir, 'ref-'));
    const store = primaryStore(model.containerd)!;
    // native copies the parent's tree with continuity's CopyDir, which sets a
    // directory's times before filling it: above the first layer, only the
    // directories the layer itself holds (or empty ones) keep their mtimes
    const opts = (i: number) => ({ rootMetadata: false, dirMtimes: sn !== 'native' || i === 0 });
    for (const [i, tar] of [base, edit].entries()) {
      await applyLayer(tar, ref, { whiteouts: 'none' });
      const tree = store.tree(backendOf(model.containerd, chains[i])!)!;
      const [a, b] = [await treeManifest(tree, opts(i)), await treeManifest(ref, opts(i))];
      t.deepEqual(a, b, `layer ${i}: ${manifestDiff(a, b)}`);
      t.true(a.length > 40);
    }
    // a view reads its parent's tree (native: the same directory; btrfs: a snapshot of it)
    const view = backendOf(model.containerd, 'v1')!;
    t.deepEqual(await treeManifest(store.tree(view)!, opts(1)), await treeManifest(ref, opts(1)));
  });

  t0(`${sn}: diff c1 is the container snapshot against its parent's tree`, async (t) => {
    const { c, model, chains } = await get();
    const r = strata(['diff', '--root', c.root, 'c1']);
    t.is(r.code, 0, r.stderr);
    t.deepEqual(r.stdout.trim().split('\n'), [
      'C /data', 'C /data/keep', 'D /data/keep/k.txt', 'C /etc', 'C /etc/base.txt', 'A /new.txt', 'A /newdir', 'A /newdir/a', 'A /newdir/b',
    ]);
    // a committed snapshot's key works too (through the library: one CLI start is enough per test)
    const top = containerdChanges(model, chains[1]).map((x) => `${changeLetter[x.kind]} ${x.path}`);
    t.deepEqual(top, ['C /data', 'D /data/delme.txt', 'C /etc', 'A /etc/edited.txt']);
  });

  t0(`${sn}: verify: the pristine root is ok; a missing committed tree is named; df lists a leftover per-id dir and names an active snapshot it cannot measure`, async (t) => {
    const { c, model, chains } = await get();
    const good = strata(['verify', '--root', c.root]);
    t.is(good.code, 0, good.stderr);
    t.regex(good.stdout, new RegExp(`: containerd \\(namespace moby\\) \\(${sn}\\): 2 images, 2 layers \\(4 layer blobs uncompressed and hashed, \\d+ bytes\\), 1 containers, 2 references\\nok\\n`));
    const copy = path.join(fs.mkdtempSync(path.join(c.dir, 'damaged-')), 'root');
    execFileSync('cp', ['-a', c.root, copy]);
    const rel = path.relative(c.root, primaryStore(model.containerd)!.tree(backendOf(model.containerd, chains[0])!)!);
    fs.rmSync(path.join(copy, rel), { recursive: true });
    // what an interrupted Remove leaves (native renames to snapshots/rm-<id>, btrfs snapshots to <kind>/rm-<id>)
    const leftover = path.join(copy, `io.containerd.snapshotter.v1.${sn}`, sn === 'btrfs' ? 'active' : 'snapshots', 'rm-99');
    fs.mkdirSync(leftover);
    fs.writeFileSync(path.join(leftover, 'f'), 'left');
    const c1 = primaryStore(model.containerd)!.tree(backendOf(model.containerd, 'c1')!)!;
    fs.renameSync(path.join(copy, path.relative(c.root, c1)), path.join(copy, path.relative(c.root, c1)) + '-moved');
    const dfr = strata(['df', '--root', copy, '--json']);
    const df = JSON.parse(dfr.stdout) as { orphanDirs: { path: string }[]; snapshots: { key: string; size: number }[] };
    t.deepEqual(df.orphanDirs.map((o) => o.path).sort(), [leftover, path.join(copy, path.relative(c.root, c1)) + '-moved'].sort());
    t.is(df.snapshots.find((x) => x.key === 'c1')!.size, 0);
    t.regex(dfr.stderr, new RegExp(`strata: error: ${path.join(copy, path.relative(c.root, c1))}: snapshot \\S+ \\(${sn}\\): its tree is missing, usage not measured\n`));
    t.notRegex(dfr.stderr, /\n\s+at /);
    const bad = strata(['verify', '--root', copy]);
    t.is(bad.code, 1);
    t.regex(bad.stderr, new RegExp(`strata: error: ${path.join(copy, rel)}: snapshot ${chains[0]} \\(${sn}\\): its tree directory is missing`));
    // cp -a made plain directories of btrfs's subvolumes: readable, but not what containerd left
    if (sn === 'btrfs') t.regex(bad.stderr, new RegExp(`strata: warning: ${path.join(copy, 'io.containerd.snapshotter.v1.btrfs/view')}/\\d+: snapshot v1 \\(btrfs\\): its tree is not a btrfs subvolume`));
    t.notRegex(bad.stderr, /\n\s+at /);
  });
}
