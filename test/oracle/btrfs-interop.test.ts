// btrfs interop with the real Docker, both ways, on a loop-mounted btrfs:
//
//  1. a private dockerd 20.10 on btrfs builds the sample store
//     (test/oracle/store.ts) and says `docker diff c1`; with the daemon
//     stopped, strata's btrfs driver opens dockerd's home: the image's top
//     layer holds the image's files, strata's changes of c1 against its init
//     layer are `docker diff c1` (taken natively, through btrfs send, on
//     subvolumes dockerd made), and every image layer's native changes
//     against its parent equal the naive walk;
//  2. strata then writes into that store, through its btrfs driver and the
//     store writer, one more layer and an image on top of the sample image;
//     dockerd, started again on the same data root, lists the image and runs
//     a container of it that sees strata's layer (a new file, a whiteout).
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { buffer } from 'node:stream/consumers';
import { changesDirs } from '../../archive/changes.ts';
import { changeLetter, displayPath, type Change } from '../../archive/types.ts';
import '../../drivers/all.ts';
import type { Driver } from '../../drivers/driver.ts';
import { getDriver } from '../../drivers/registry.ts';
import { busyboxAvailable } from '../../fixtures/busybox-rootfs.ts';
import { packLayer } from '../../fixtures/layer-tar.ts';
import { StoreWriter } from '../../layerstore/writer.ts';
import { mountsUnder } from '../../sys/mountinfo.ts';
import { isRoot, when } from '../helpers/require.ts';
import { loopBtrfs, loopBtrfsMissing, type TinyFs } from '../helpers/tiny-fs.ts';
import { dockerdAvailable, processesMentioning, startDockerd, type Dockerd, type StopReport } from './dockerd.ts';
import { buildSampleStore, containerLayerOnDisk, imageLayersOnDisk, type SampleStore } from './store.ts';

const DRIVER = 'btrfs';
const STRATA_REF = 'strata-made:btrfs';

const missing = [
  ...(isRoot ? [] : ['root (run the tests as root)']),
  ...(dockerdAvailable() ? [] : ['dockerd (apt-get install docker.io)']),
  ...(busyboxAvailable() ? [] : ['busybox (apt-get install busybox-static)']),
  ...(isRoot && loopBtrfsMissing() ? [`a loop btrfs: ${loopBtrfsMissing()}`] : []),
];
const oracle = when(missing.length === 0, missing.join(', '), { serial: true });

let btrfs: TinyFs | undefined;
let daemon: Dockerd | undefined;
let store: SampleStore | undefined;
let dockerDiff: string[] = [];
const stops: StopReport[] = [];

const changeLine = (c: Change) => `${changeLetter[c.kind]} ${displayPath(c.path)}`;

if (missing.length === 0) {
  test.before(async () => {
    btrfs = loopBtrfs(2048);
    daemon = await startDockerd({ driver: DRIVER, dir: path.join(btrfs.dir, 'd') });
    try {
      store = await buildSampleStore(daemon);
      dockerDiff = (await daemon.docker(['diff', store.container.name])).split('\n').filter(Boolean);
    } finally {
      stops.push(await daemon.stop());
    }
  });

  test.after.always(async () => {
    await daemon?.stop();
    if (btrfs && mountsUnder(btrfs.dir).filter((m) => m.mountPoint !== btrfs!.dir).length === 0) btrfs.cleanup();
  });
}

async function withStrata<T>(fn: (d: Driver, dataRoot: string) => Promise<T>): Promise<T> {
  if (!daemon || !store) throw new Error('the oracle store was not built (see the before hook\'s error)');
  const d = await getDriver(DRIVER, daemon.dataRoot);
  try {
    return await fn(d, daemon.dataRoot);
  } finally {
    await d.cleanup();
  }
}

oracle('dockerd\'s btrfs store read by strata: the image\'s files, docker diff c1 (native changes), native = naive on every image layer', async (t) => {
  await withStrata(async (d, dataRoot) => {
    const layers = imageLayersOnDisk(dataRoot, DRIVER, store!.image.id);
    t.is(layers.length, 5);
    const top = await d.get(layers[layers.length - 1].cacheId);
    for (const p of ['added.txt', 'srv/added/nested/deeper/c.txt', 'opaq/fresh.txt', 'bin/busybox']) t.true(fs.existsSync(path.join(top, p)), p);
    for (const p of ['data/delme.txt', 'opaq/old2.txt']) t.false(fs.existsSync(path.join(top, p)), `${p} is whited out`);

    const c1 = containerLayerOnDisk(dataRoot, DRIVER, store!.container.id);
    const ours = (await d.changes(c1.mountId, c1.initId)).map(changeLine);
    t.deepEqual([...ours].sort(), [...dockerDiff].sort());
    t.true(dockerDiff.length >= 10, dockerDiff.join('\n'));
    for (let i = 1; i < layers.length; i++) {
      const [a, b] = [await d.get(layers[i].cacheId), await d.get(layers[i - 1].cacheId)];
      t.deepEqual(await d.changes(layers[i].cacheId, layers[i - 1].cacheId), changesDirs(a, b), `image layer ${i}`);
    }
    const status = Object.fromEntries(d.status());
    t.false('Native Changes (last fallback)' in status, status['Native Changes (last fallback)']);
    t.log(`docker diff c1: ${dockerDiff.length} lines, all from btrfs send; status ${JSON.stringify(status)}`);
  });
});

oracle('a layer and an image strata writes into the btrfs store are listed and run by dockerd', async (t) => {
  const { chainId, cacheId } = await withStrata(async (d, dataRoot) => {
    const w = StoreWriter.open(dataRoot, DRIVER);
    const layers = imageLayersOnDisk(dataRoot, DRIVER, store!.image.id);
    const parent = layers[layers.length - 1];
    const tar = await buffer(packLayer([
      { name: 'strata.txt', content: 'written by strata on btrfs\n', mtime: new Date('2024-01-01T00:00:00Z') },
      { name: 'etc/', type: 'directory', mtime: new Date('2024-01-01T00:00:00Z') },
      { name: 'etc/.wh.base.txt', mtime: new Date('2024-01-01T00:00:00Z') },
    ]));
    const cache = 'a'.repeat(63) + 'b';
    const layer = await w.applyLayer(d, tar, { chainId: parent.chainId, cacheId: parent.cacheId }, cache);
    const config = JSON.parse(fs.readFileSync(path.join(dataRoot, 'image', DRIVER, 'imagedb', 'content', 'sha256', store!.image.id.slice(7)), 'utf8'));
    config.rootfs.diff_ids.push(layer.diffId);
    config.history.push({ created: '2024-01-01T00:00:00Z', created_by: 'strata btrfs interop layer' });
    const id = w.writeImage(Buffer.from(JSON.stringify(config)), { layers: [...layers.map((l) => l.chainId), layer.chainId], parent: store!.image.id });
    const tags = JSON.parse(fs.readFileSync(path.join(dataRoot, 'image', DRIVER, 'repositories.json'), 'utf8')).Repositories as Record<string, Record<string, string>>;
    const refs = new Map<string, string>();
    for (const byRef of Object.values(tags)) for (const [ref, img] of Object.entries(byRef)) refs.set(ref, img);
    refs.set(STRATA_REF, id);
    w.writeTags(refs);
    t.true(fs.existsSync(path.join(dataRoot, DRIVER, 'subvolumes', cache)), 'the layer is a subvolume in dockerd\'s layout');
    return { chainId: layer.chainId, cacheId: cache };
  });
  daemon = await startDockerd({ driver: DRIVER, dir: daemon!.dir });
  try {
    const listed = (await daemon.docker(['image', 'inspect', '--format', '{{index .RootFS.Layers 5}} {{.GraphDriver.Name}}', STRATA_REF])).trim();
    t.is(listed.split(' ')[1], DRIVER);
    const out = await daemon.docker(['run', '--rm', '--network', 'none', STRATA_REF, 'sh', '-c', 'cat /strata.txt; ls /etc; cat /added.txt']);
    t.true(out.startsWith('written by strata on btrfs\n'), out);
    t.false(out.split('\n').includes('base.txt'), `the whiteout hides /etc/base.txt: ${out}`);
    t.log(`dockerd ran ${STRATA_REF} (layer ${chainId.slice(7, 19)}, subvolume ${cacheId.slice(0, 12)}): ${JSON.stringify(out)}`);
  } finally {
    stops.push(await daemon.stop());
  }
});

oracle('both oracle daemons stopped cleanly and left nothing running or mounted', (t) => {
  t.is(stops.length, 2);
  for (const s of stops) {
    t.deepEqual(s.exit, { code: 0, signal: null });
    t.false(s.forced);
    t.deepEqual(s.killedStragglers, []);
    t.deepEqual(s.leftHostPaths, []);
  }
  t.deepEqual(processesMentioning([daemon!.dataRoot, daemon!.execRoot]), []);
  t.deepEqual(mountsUnder(daemon!.dir).map((m) => m.mountPoint), []);
});
