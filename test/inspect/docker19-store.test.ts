// A Docker 1.9 root on aufs (fixtures/docker19-store.ts) — the store people
// find when aufs is gone from the kernel — read offline: docker 1.x columns,
// tar-data.json.gz reassembled from aufs/diff, docker diff through the aufs
// branches. Expected values come from the spec's layer entries, not the reader.
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeDocker19Store, type Docker19StoreInfo } from '../../fixtures/docker19-store.ts';
import { bodySize, type FixtureEntry } from '../../fixtures/layer-tar.ts';
import { sampleStoreSpec } from '../../fixtures/modern-store.ts';
import { diskUsage } from '../../inspect/df.ts';
import { containerChanges, diffImages } from '../../inspect/diff.ts';
import { imageHistory } from '../../inspect/history.ts';
import { imageRows, renderImages } from '../../inspect/images.ts';
import { findImage, openStore } from '../../layerstore/store.ts';
import { isRoot, when } from '../helpers/require.ts';
import { copyStore, duBytes } from '../helpers/store-copy.ts';
import { snapshotDiff, snapshotTree } from '../helpers/store-snapshot.ts';
import { strata } from '../helpers/strata-cli.ts';

const spec = sampleStoreSpec();
const NOW = '2023-11-20T00:00:00Z';

/** aufs ApplyDiff's size: directory.Size of the diff dir = files once + symlink target lengths. */
function layerSize(entries: FixtureEntry[]): number {
  let n = 0;
  for (const e of entries) {
    const base = e.name.split('/').filter(Boolean).pop()!;
    if ((e.type ?? 'file') === 'file' && !base.startsWith('.wh.')) n += bodySize(e);
    if (e.type === 'symlink') n += Buffer.byteLength(e.linkname ?? '');
  }
  return n;
}
function virtualSize(name: string): number {
  const img = spec.images.find((i) => i.name === name)!;
  return img.layers.reduce((s, l) => s + layerSize(l.entries), 0) + (img.from ? virtualSize(img.from) : 0);
}

let tmp: string;
let info: Docker19StoreInfo;
const t = when(isRoot, 'root (the fixture writes aufs branches owned by root)', { serial: true });

test.before(async () => {
  if (!isRoot) return;
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-d19-'));
  info = await writeDocker19Store(path.join(tmp, 'root'), spec);
});

test.after.always(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

t('images: docker 1.x VIRTUAL SIZE column; intermediates hidden unless -a', async (t) => {
  const model = await openStore(info.root);
  t.is(model.era, 'docker-0.7-1.9');
  t.is(model.driver, 'aufs');
  t.deepEqual(model.problems.list, []);
  const id = (n: string) => info.images.get(n)!.id;
  const rows = imageRows(model);
  t.deepEqual(rows.map((r) => [r.repository, r.tag, r.id, r.virtualSize]), [
    ['strata/app', '2.0', id('app2'), virtualSize('app2')],
    ['strata/app', 'latest', id('app2'), virtualSize('app2')],
    ['strata/app', '1.0', id('app1'), virtualSize('app1')],
    ['strata/app', 'stable', id('app1'), virtualSize('app1')],
    ['<none>', '<none>', id('dangling'), virtualSize('dangling')],
    ['strata/base', 'latest', id('base'), virtualSize('base')],
  ]);
  const text = renderImages(model, rows, { now: new Date(NOW) }).split('\n');
  t.is(text[0], 'REPOSITORY          TAG                 IMAGE ID            CREATED             VIRTUAL SIZE');
  t.is(text[1], `strata/app          2.0                 ${id('app2').slice(0, 12)}        3 days ago          720.1 kB`);
  const all = imageRows(model, { all: true });
  t.is(all.length, 8);
  const intermediates = [info.images.get('app1')!.chain[1], info.images.get('app2')!.chain[1]];
  for (const i of intermediates) t.true(all.some((r) => r.id === i && r.tag === '<none>'));
});

t('verify: every layer tar rebuilt from tar-data.json.gz and aufs/diff; damage named by file', async (t) => {
  const ok = strata(['verify', '--root', info.root, '--json']);
  t.is(ok.code, 0, ok.stderr);
  const report = JSON.parse(ok.stdout) as { checked: { layersReassembled: number; bytesReassembled: number } };
  t.is(report.checked.layersReassembled, 6);
  const c = copyStore(info.root);
  t.teardown(c.cleanup);
  const addLayer = info.images.get('app1')!.chain[1];
  const file = path.join(c.root, 'aufs', 'diff', addLayer, 'srv/app/main.js');
  const b = fs.readFileSync(file);
  b[777] ^= 0x08;
  fs.writeFileSync(file, b);
  const baseId = info.images.get('base')!.id;
  fs.writeFileSync(path.join(c.root, 'graph', baseId, 'layersize'), '1');
  const r = strata(['verify', '--root', c.root]);
  t.is(r.code, 1);
  t.regex(r.stderr, new RegExp(`error: ${file}: content differs from the layer \\(CRC-64`));
  t.regex(r.stderr, new RegExp(`error: ${path.join(c.root, 'graph', baseId, 'layersize')}: says 1 bytes, directory.Size of ${path.join(c.root, 'aufs', 'diff', baseId)} is ${virtualSize('base')}`));
});

t('diff CONTAINER reads the aufs branches: docker diff of the container', async (t) => {
  const model = await openStore(info.root);
  const changes = await containerChanges(model, 'web');
  t.deepEqual(changes.map((c) => `${'CAD'[c.kind]} ${c.path}`), ['C /bin', 'D /bin/rmme', 'A /data', 'A /data/hello.txt', 'C /etc', 'C /etc/passwd']);
});

t('diff IMAGE IMAGE and history over v1 image chains', async (t) => {
  const model = await openStore(info.root);
  const d = await diffImages(model, findImage(model, 'strata/app:1.0'), findImage(model, 'strata/app:2.0'));
  t.deepEqual(d.added.map((e) => e.path), ['/etc/motd', '/srv/data.bin', '/usr/share/doc/old/new.txt']);
  t.deepEqual(d.changed.map((e) => e.path), ['/etc/passwd']);
  const app1 = spec.images.find((i) => i.name === 'app1')!;
  const rows = imageHistory(model, findImage(model, 'strata/app:1.0'));
  t.deepEqual(rows.map((r) => [r.id, r.createdBy, r.size]), [
    [info.images.get('app1')!.chain[2], app1.layers[1].createdBy, layerSize(app1.layers[1].entries)],
    [info.images.get('app1')!.chain[1], app1.layers[0].createdBy, layerSize(app1.layers[0].entries)],
    [info.images.get('base')!.id, spec.images[0].layers[0].createdBy, layerSize(spec.images[0].layers[0].entries)],
  ]);
});

t('df: accounted for to the byte; image layers, container and init branches classified', async (t) => {
  const r = await diskUsage(await openStore(info.root));
  t.is(r.total.disk, duBytes(info.root));
  const web = info.containers.get('web')!;
  t.is(r.driverDirs.filter((d) => d.class === 'image-layer').length, 6);
  t.is(r.driverDirs.find((d) => d.id === web.id)?.class, 'container-layer');
  t.is(r.driverDirs.find((d) => d.id === `${web.id}-init`)?.class, 'container-init');
  t.deepEqual(r.driverDirs.filter((d) => d.class === 'orphan'), []);
  // aufs dirs span diff/, layers/ and mnt/
  t.is(r.driverDirs.find((d) => d.id === web.id)!.paths.length, 3);
});

t('read-only: every command leaves the 1.9 store as it was', (t) => {
  const before = snapshotTree(info.root);
  for (const args of [['images', '-a'], ['images', '--tree'], ['history', 'strata/app:2.0'], ['inspect', 'web', 'strata/base'], ['diff', 'web'], ['df', '-v'], ['verify']]) {
    const r = strata([...args, '--root', info.root]);
    t.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  }
  t.deepEqual(snapshotDiff(before, snapshotTree(info.root)), []);
});
