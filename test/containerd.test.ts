// The containerd source against a real containerd: images imported with
// `ctr images import` (a docker-archive and an OCI index over two platforms),
// unpacked by the overlayfs snapshotter, a container with changes written
// through its mounted snapshot; ctr's listings are taken while containerd runs,
// strata reads the same root after it stopped.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { applyLayer } from '../archive/apply.ts';
import { manifestDiff, treeManifest } from '../archive/digest.ts';
import { readContainerdStore, backendOf, primaryStore, type ContainerdModel } from '../layerstore/containerd/store.ts';
import { chainIds, sha256Digest } from '../layerstore/digests.ts';
import { humanSize } from '../inspect/docker-units.ts';
import { busyboxAvailable } from '../fixtures/busybox-rootfs.ts';
import { archiveLayers, writeArchives, type Archives } from './helpers/containerd-archive.ts';
import { hasTool, isRoot, when } from './helpers/require.ts';
import { ctrBin, startContainerd, type Containerd } from '../fixtures/containerd.ts';
import { strata } from './helpers/strata-cli.ts';

const ok = isRoot && fs.existsSync('/usr/bin/containerd') && hasTool('ctr') && busyboxAvailable();
const need = 'root, containerd + ctr (apt: containerd) and busybox-static';
const GARBAGE = 'a blob no image references\n';

interface Setup {
  c: Containerd;
  archives: Archives;
  out: Record<'images' | 'content' | 'snapshots' | 'usage' | 'leases' | 'containers', string>;
  model: ContainerdModel;
}

let setup: Promise<Setup> | undefined;
let started: Containerd | undefined;
let mounted: string | undefined;

async function build(): Promise<Setup> {
  // collector off: the garbage blob below must outlive the setup (a collection runs when containerd pleases)
  const c = await startContainerd({ gc: false });
  started = c;
  const archives = await writeArchives(c.dir);
  const moby = (...a: string[]) => c.ctr('--namespace', 'moby', ...a);
  moby('images', 'import', archives.docker);
  moby('images', 'import', archives.oci);
  moby('images', 'tag', 'docker.io/strata/busybox:1', 'docker.io/library/alias:latest');
  c.ctr('--namespace', 'other', 'images', 'import', archives.docker);
  moby('containers', 'create', 'docker.io/strata/busybox:1', 'c1');
  // the container's changes, written through its overlay mount as a runtime would
  const mnt = path.join(c.dir, 'mnt');
  fs.mkdirSync(mnt);
  const mountCmd = moby('snapshots', 'mounts', mnt, 'c1').trim();
  execFileSync('sh', ['-c', mountCmd]);
  mounted = mnt;
  fs.appendFileSync(path.join(mnt, 'etc/base.txt'), 'changed by c1\n');
  fs.rmSync(path.join(mnt, 'data/keep/k.txt'));
  fs.writeFileSync(path.join(mnt, 'new.txt'), 'made by c1\n');
  execFileSync('umount', [mnt]);
  mounted = undefined;
  // one collection, now (the collector is off otherwise): what the imports left unreferenced goes
  moby('leases', 'create', '--id', 'collect-now');
  moby('leases', 'delete', '--sync', 'collect-now');
  moby('leases', 'create', '--id', 'lease1');
  // a blob nothing references: garbage until containerd's next collection, which does not come
  execFileSync(ctrBin, ['--address', c.address, '--namespace', 'moby', 'content', 'ingest', 'garbage-ref'], { input: GARBAGE });
  const out = {
    images: moby('images', 'ls'), content: moby('content', 'ls'), snapshots: moby('snapshots', 'ls'),
    usage: moby('snapshots', 'usage'), leases: moby('leases', 'ls'), containers: moby('containers', 'ls'),
  };
  await c.stop();
  return { c, archives, out, model: readContainerdStore(c.root) };
}

test.after.always(async () => {
  if (mounted) execFileSync('umount', [mounted]);
  await started?.cleanup();
});

const get = () => (setup ??= build());
const rows = (text: string) => text.trim().split('\n').slice(1);

/** containerd's progress.Bytes ("1.9 MiB"): binary units, one decimal. */
function ctrBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(1)} ${units[i]}`;
}

when(ok, need)('images: names, targets, media types, content sizes and platforms as ctr images ls shows them', async (t) => {
  const { out, model } = await get();
  const ctr = rows(out.images).map((l) => {
    const m = /^(\S+)\s+(\S+)\s+(sha256:\S+)\s+(\S+ \S+)\s+(\S+)\s/.exec(l)!;
    return { ref: m[1], type: m[2], digest: m[3], size: m[4], platforms: m[5] };
  });
  const ours = model.containerd.ns.images.map((i) => {
    const r = model.containerd.resolved.get(i.name)!;
    return { ref: i.name, type: i.target.mediaType, digest: i.target.digest, size: ctrBytes(r.contentSize), platforms: r.platforms.join(',') };
  });
  t.deepEqual(ours, ctr);
  t.is(ctr.length, 3);
  t.true(ctr.some((r) => r.platforms === 'linux/amd64,linux/arm64'));
  // the arm64 manifest was not imported (not this platform): its absence is not a problem, only the warning-free resolution
  t.deepEqual(model.problems.errors, []);
});

when(ok, need)('strata images / history / inspect on the stopped root', async (t) => {
  const { c, archives, model } = await get();
  const r = strata(['images', '--root', c.root, '--json']);
  t.is(r.code, 0, r.stderr);
  const list = JSON.parse(r.stdout) as { repository: string; tag: string; id: string; size: number; layers: string[] }[];
  t.deepEqual(list.map((x) => `${x.repository}:${x.tag}`).sort(), ['alias:latest', 'strata/busybox:1', 'strata/multi:1']);
  const { base, edit } = await archiveLayers();
  const chains = chainIds([sha256Digest(base), sha256Digest(edit)]);
  for (const row of list) {
    t.deepEqual(row.layers, chains);
    const name = row.repository === 'strata/multi' ? 'docker.io/strata/multi:1' : 'docker.io/strata/busybox:1';
    const snapshots = chains.reduce((s, ch) => s + backendOf(model.containerd, ch)!.size!, 0);
    t.is(row.size, model.containerd.resolved.get(name)!.contentSize + snapshots);
  }
  t.is(list.find((x) => x.repository === 'strata/multi')!.id, archives.index);
  const table = strata(['images', '--root', c.root]);
  t.regex(table.stdout, /^REPOSITORY +TAG +IMAGE ID +CREATED +SIZE\n/);
  t.regex(table.stdout, new RegExp(`strata/multi +1 +${archives.index.slice(7, 19)} `));

  const h = strata(['history', '--root', c.root, '--json', 'strata/busybox:1']);
  t.is(h.code, 0, h.stderr);
  const hist = JSON.parse(h.stdout) as { id: string; createdBy: string; size: number }[];
  t.deepEqual(hist.map((x) => x.createdBy), ['/bin/sh -c #(nop) CMD ["/bin/sh"]', '/bin/sh -c #(nop) layer 1', '/bin/sh -c #(nop) layer 0']);
  t.deepEqual(hist.map((x) => x.size), [0, backendOf(model.containerd, chains[1])!.size, backendOf(model.containerd, chains[0])!.size]);

  const i = strata(['inspect', '--root', c.root, 'c1', 'strata/multi:1']);
  const [ctr, img] = JSON.parse(i.stdout) as Record<string, any>[];
  t.is(ctr.Type, 'container');
  t.is(ctr.Image, model.images.get(model.containerd.ns.images.find((x) => x.name === 'docker.io/strata/busybox:1')!.target.digest)!.id);
  t.is(ctr.ParentLayer, chains[1]);
  t.is(ctr.GraphDriver.Data.Kind, 'Active');
  t.true(fs.existsSync(path.join(ctr.GraphDriver.Data.Dir, 'new.txt')));
  t.deepEqual(img.RootFS.Layers, [sha256Digest(base), sha256Digest(edit)]);
  t.deepEqual(img.RepoDigests, [`strata/multi@${archives.index}`]);
});

when(ok, need)('content: every blob, size and label as ctr content ls lists them', async (t) => {
  const { out, model } = await get();
  const ctr = rows(out.content).map((l) => {
    const [digest, size, , labels] = l.split('\t').filter((x) => x !== '');
    return { digest, size, labels: labels === '-' ? [] : labels.split(',').sort() };
  });
  const ours = [...model.containerd.ns.blobs.values()].map((b) => ({
    digest: b.digest, size: humanSize(b.size!), labels: Object.entries(b.labels).map(([k, v]) => `${k}=${v}`).sort(),
  }));
  t.deepEqual(ours, ctr);
  for (const b of model.containerd.ns.blobs.values()) {
    t.is(fs.statSync(path.join(model.root, 'io.containerd.content.v1.content/blobs/sha256', b.digest.slice(7))).size, b.size!);
  }
});

when(ok, need)('snapshots: keys, parents, kinds and usage as ctr snapshots ls / usage show them', async (t) => {
  const { out, model } = await get();
  const d = model.containerd;
  const ls = rows(out.snapshots).map((l) => l.trim().split(/\s+/)).map((w) => (w.length === 2 ? [w[0], '', w[1]] : w));
  const ours = [...d.ns.snapshots.get('overlayfs')!.values()].map((s) => [s.key, s.parent ?? '', backendOf(d, s.key)!.kind]);
  t.deepEqual(ours, ls);
  const usage = rows(out.usage).map((l) => l.trim().split(/\s+/)).map(([k, n, u, inodes]) => [k, `${n} ${u}`, inodes]);
  const ourUsage = [...d.ns.snapshots.get('overlayfs')!.values()].map((s) => {
    const u = primaryStore(d)!.usage(backendOf(d, s.key)!);
    return [s.key, ctrBytes(u.size), String(u.inodes)];
  });
  t.deepEqual(ourUsage, usage);
  t.deepEqual(d.ns.leases.map((l) => l.id), rows(out.leases).map((l) => l.split(/\s+/)[0]));
  t.deepEqual(d.ns.containers.map((c) => [c.id, c.image]), rows(out.containers).map((l) => l.split(/\s+/).slice(0, 2)));
});

when(ok, need)('the unpacked fs trees digest like each layer applied in overlay form', async (t) => {
  const { c, model } = await get();
  const { base, edit } = await archiveLayers();
  const chains = chainIds([sha256Digest(base), sha256Digest(edit)]);
  for (const [i, tar] of [base, edit].entries()) {
    const dir = fs.mkdtempSync(path.join(c.dir, 'ref-'));
    await applyLayer(tar, dir, { whiteouts: 'overlay' });
    const snap = primaryStore(model.containerd)!.tree(backendOf(model.containerd, chains[i])!)!;
    t.is(snap, path.join(model.root, 'io.containerd.snapshotter.v1.overlayfs/snapshots', backendOf(model.containerd, chains[i])!.id!, 'fs'));
    // containerd, like moby, leaves a whiteout device's mtime at the time of the unpack
    const norm = async (d: string) => (await treeManifest(d, { rootMetadata: false })).map((l) => (/\tchar mode=0000 .* rdev=0:0$/.test(l) ? l.replace(/ mtime=\S+/, '') : l));
    const [a, b] = [await norm(snap), await norm(dir)];
    t.deepEqual(a, b, `layer ${i}: ${manifestDiff(a, b)}`);
    t.true(a.length > (i ? 3 : 40));
  }
});

when(ok, need)('--namespace, the default namespace, and Docker 29 pairs of roots', async (t) => {
  const { c } = await get();
  const other = strata(['images', '--root', c.root, '--namespace', 'other', '--json']);
  t.deepEqual((JSON.parse(other.stdout) as { repository: string }[]).map((x) => x.repository), ['strata/busybox']);
  const none = strata(['images', '--root', c.root, '--namespace', 'nope']);
  t.is(none.code, 1);
  t.regex(none.stderr, /meta\.db: no namespace "nope" \(it has: moby, other\)/);
  t.notRegex(none.stderr, /\n\s+at /);
  // Docker 29 keeps containers/<id>/config.v2.json under its own root (format from moby's sources)
  const docker = fs.mkdtempSync(path.join(c.dir, 'docker-'));
  fs.mkdirSync(path.join(docker, 'containers', 'c1'), { recursive: true });
  fs.writeFileSync(path.join(docker, 'containers', 'c1', 'config.v2.json'), JSON.stringify({
    ID: 'c1', Name: '/web', Created: '2025-01-01T00:00:00Z', Path: '/bin/sh', Args: ['-c', 'sleep 1'],
    State: { Running: false, ExitCode: 3 }, Config: { Image: 'strata/busybox:1' }, Driver: 'overlayfs',
  }));
  const pair = strata(['inspect', '--root', docker, '--containerd-root', c.root, 'web']);
  t.is(pair.code, 0, pair.stderr);
  const [ctr] = JSON.parse(pair.stdout) as Record<string, unknown>[];
  t.is(ctr.Id, 'c1');
  t.is(ctr.Command, "/bin/sh -c 'sleep 1'");
});

when(ok, need)('diff: a container snapshot against its parents', async (t) => {
  const { c } = await get();
  const r = strata(['diff', '--root', c.root, 'c1']);
  t.is(r.code, 0, r.stderr);
  t.deepEqual(r.stdout.trim().split('\n'), ['C /data', 'C /data/keep', 'D /data/keep/k.txt', 'C /etc', 'C /etc/base.txt', 'A /new.txt']);
  const top = strata(['diff', '--root', c.root, '--json', chainIds([sha256Digest((await archiveLayers()).base), sha256Digest((await archiveLayers()).edit)])[1]]);
  t.deepEqual((JSON.parse(top.stdout) as { Path: string; kind: string }[]).map((x) => `${x.kind} ${x.Path}`), ['C /data', 'D /data/delme.txt', 'C /etc', 'A /etc/edited.txt']);
});

when(ok, need)('df -v: sizes, holders, garbage, and the root on disk like du', async (t) => {
  const { c, model } = await get();
  const r = strata(['df', '--root', c.root, '--json']);
  t.is(r.code, 0, r.stderr);
  const df = JSON.parse(r.stdout) as Record<string, any>;
  for (const i of df.images) t.is(i.size, model.images.get(i.id)!.size);
  const multi = df.images.find((i: any) => i.repository === 'strata/multi');
  t.is(multi.sharedSize, multi.unpackedSize, 'both of its snapshots are shared with strata/busybox');
  t.deepEqual(df.snapshots.find((s: any) => s.key === 'c1').heldBy, ['container c1']);
  t.deepEqual(df.content.garbage, [{ digest: sha256Digest(GARBAGE), size: GARBAGE.length }]);
  const du = Number(execFileSync('du', ['-sx', '--block-size=1', c.root], { encoding: 'utf8' }).split('\t')[0]);
  t.is(df.total.disk, du);
  const v = strata(['df', '-v', '--root', c.root]);
  t.regex(v.stdout, /\nSnapshots:\n\nKEY +SNAPSHOTTER +ID +KIND +SIZE +INODES +HELD BY\n/);
  t.regex(v.stdout, /Garbage \(no image, container or lease holds it\): 27B\n/);
});

when(ok, need)('verify: a pristine root is ok; a flipped blob byte and a missing snapshot tree are named', async (t) => {
  const { c, model } = await get();
  const good = strata(['verify', '--root', c.root]);
  t.is(good.code, 0, good.stderr);
  t.regex(good.stdout, /: 2 images, 2 layers \(4 layer blobs uncompressed and hashed, \d+ bytes\), 1 containers, 3 references\nok\n/);
  const copy = path.join(fs.mkdtempSync(path.join(c.dir, 'damaged-')), 'root');
  execFileSync('cp', ['-a', c.root, copy]);
  const gz = model.containerd.resolved.get('docker.io/strata/multi:1')!.layers[0].digest;
  const blob = path.join(copy, 'io.containerd.content.v1.content/blobs/sha256', gz.slice(7));
  const bytes = fs.readFileSync(blob);
  bytes[bytes.length - 5] ^= 0xff;
  fs.writeFileSync(blob, bytes);
  const edit = backendOf(model.containerd, model.images.get(model.containerd.ns.images[0].target.digest)!.layers[1])!;
  fs.rmSync(path.join(copy, 'io.containerd.snapshotter.v1.overlayfs/snapshots', edit.id!, 'fs'), { recursive: true });
  const bad = strata(['verify', '--root', copy]);
  t.is(bad.code, 1);
  t.regex(bad.stderr, new RegExp(`strata: error: ${blob}: blob content digests to sha256:`));
  t.regex(bad.stderr, new RegExp(`${blob}: image docker.io/strata/multi:1: layer 0 (is not valid gzip|uncompresses to)`));
  t.regex(bad.stderr, new RegExp(`snapshots/${edit.id}/fs: snapshot sha256:[0-9a-f]{64} \\(overlayfs\\): its tree directory is missing`));
  t.notRegex(bad.stderr, /\n\s+at /);
});
