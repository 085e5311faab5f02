// A Docker ≥ 1.10 store written through strata's own drivers (fixtures/modern-store.ts:
// applyDiff per layer, layerdb/imagedb/mounts in moby's formats, tar-split recorded on
// the way), read back offline. Expected values come from the fixture's spec (sizes
// from the layer entries, ids from sha256 of the configs) or from `du`, never from
// the reader under test.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { bodySize, type FixtureEntry } from '../../fixtures/layer-tar.ts';
import { sampleStoreSpec, writeModernStore, type ModernStoreInfo } from '../../fixtures/modern-store.ts';
import { diskUsage, renderDf } from '../../inspect/df.ts';
import { humanDuration } from '../../inspect/docker-units.ts';
import { containerChanges, diffImages } from '../../inspect/diff.ts';
import { imageHistory } from '../../inspect/history.ts';
import { imageRows, renderImages } from '../../inspect/images.ts';
import { openStore, findImage } from '../../layerstore/store.ts';
import { verifyStore } from '../../inspect/verify.ts';
import { isRoot, when } from '../helpers/require.ts';
import { copyStore, duBytes } from '../helpers/store-copy.ts';
import { snapshotDiff, snapshotTree } from '../helpers/store-snapshot.ts';
import { strata } from '../helpers/strata-cli.ts';

const NOW = '2023-11-20T00:00:00Z';
const spec = sampleStoreSpec();

/** Layer size as each driver's applyDiff returns it, from the entries alone. */
function expectedLayerSize(entries: FixtureEntry[], driver: string): number {
  let files = 0;
  let links = 0;
  for (const e of entries) {
    if ((e.type ?? 'file') === 'file' && !e.name.split('/').pop()!.startsWith('.wh.')) files += bodySize(e);
    if (e.type === 'symlink') links += Buffer.byteLength(e.linkname ?? '');
  }
  // vfs: naive apply, Σ tar header sizes; overlay2: native, directory.Size (symlinks count their target length)
  return driver === 'overlay2' ? files + links : files;
}

function expectedImageSize(name: string, driver: string): number {
  const img = spec.images.find((i) => i.name === name)!;
  const own = img.layers.reduce((s, l) => s + expectedLayerSize(l.entries, driver), 0);
  return own + (img.from ? expectedImageSize(img.from, driver) : 0);
}

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

// overlay2 needs root (mounts, trusted.* xattrs); vfs runs as anyone
const overlayOk = isRoot && fs.existsSync('/sys/module/overlay');
const stores = new Map<string, { tmp: string; info: ModernStoreInfo }>();

async function store(driver: string): Promise<ModernStoreInfo> {
  let s = stores.get(driver);
  if (!s) {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), `strata-modern-${driver}-`));
    s = { tmp, info: await writeModernStore(path.join(tmp, 'root'), driver, spec) };
    stores.set(driver, s);
  }
  return s.info;
}

test.after.always(() => {
  for (const s of stores.values()) fs.rmSync(s.tmp, { recursive: true, force: true });
});

function suite(driver: string, ok: boolean, why: string): void {
  const t = when(ok, why, { serial: true });
  const title = (s: string) => `${driver}: ${s}`;

  t(title('images: docker 20.10 columns, ids = sha256 of the configs, sizes = Σ applyDiff sizes'), async (t) => {
    const info = await store(driver);
    const id = (n: string) => sha(info.images.get(n)!.configBytes);
    const model = await openStore(info.root);
    t.is(model.driver, driver);
    t.deepEqual(model.problems.list, []);
    const rows = imageRows(model);
    t.deepEqual(rows.map((r) => [r.repository, r.tag, r.id, r.size]), [
      ['strata/app', '2.0', id('app2'), expectedImageSize('app2', driver)],
      ['strata/app', 'latest', id('app2'), expectedImageSize('app2', driver)],
      ['strata/app', '1.0', id('app1'), expectedImageSize('app1', driver)],
      ['strata/app', 'stable', id('app1'), expectedImageSize('app1', driver)],
      ['<none>', '<none>', id('dangling'), expectedImageSize('dangling', driver)],
      ['strata/base', 'latest', id('base'), expectedImageSize('base', driver)],
    ]);
    const short = (n: string) => id(n).slice(7, 19);
    t.is(renderImages(model, rows, { now: new Date(NOW) }), [
      'REPOSITORY    TAG       IMAGE ID       CREATED      SIZE',
      `strata/app    2.0       ${short('app2')}   3 days ago   720kB`,
      `strata/app    latest    ${short('app2')}   3 days ago   720kB`,
      `strata/app    1.0       ${short('app1')}   4 days ago   370kB`,
      `strata/app    stable    ${short('app1')}   4 days ago   370kB`,
      `<none>        <none>    ${short('dangling')}   4 days ago   320kB`,
      `strata/base   latest    ${short('base')}   5 days ago   320kB`,
      '',
    ].join('\n'));
    // the parent of a local build is the image it was built from
    t.is(model.images.get(id('app1'))!.parent, id('base'));
  });

  t(title('verify: clean store; every DiffID rebuilt from tar-split and the driver files'), async (t) => {
    const info = await store(driver);
    const r = await verifyStore(await openStore(info.root));
    t.deepEqual(r.problems, []);
    t.true(r.ok);
    t.is(r.checked.images, 4);
    t.is(r.checked.layers, info.layers.size);
    t.is(r.checked.layersReassembled, info.layers.size);
    t.is(r.checked.bytesReassembled, [...info.layers.values()].reduce((s, l) => s + l.tarBytes, 0));
  });

  t(title('verify catches a flipped byte in a layer file, naming the file and the diff it breaks (CLI exit 1)'), async (t) => {
    const info = await store(driver);
    const c = copyStore(info.root);
    t.teardown(c.cleanup);
    const addLayer = [...info.layers.values()].find((l) => l.size === expectedLayerSize(spec.images[1].layers[0].entries, driver))!;
    const file = driver === 'overlay2'
      ? path.join(c.root, 'overlay2', addLayer.cacheId, 'diff', 'srv/app/main.js')
      : path.join(c.root, 'vfs', 'dir', addLayer.cacheId, 'srv/app/main.js');
    const b = fs.readFileSync(file);
    b[1234] ^= 0x40;
    fs.writeFileSync(file, b);
    const r = strata(['verify', '--root', c.root]);
    t.is(r.code, 1);
    t.regex(r.stderr, new RegExp(`error: ${file}: content differs from the layer \\(CRC-64`));
    t.regex(r.stderr, new RegExp(`error: ${path.join(c.root, 'image', driver, 'layerdb', 'sha256', addLayer.chainId.slice(7), 'diff')}: says ${addLayer.diffId}, but the tar rebuilt`));
    t.false(r.stderr.includes('    at ')); // no stack trace
  });

  t(title('verify catches a wrong size file and a truncated config, each by path; images still lists the rest'), async (t) => {
    const info = await store(driver);
    const c = copyStore(info.root);
    t.teardown(c.cleanup);
    const base = info.images.get('base')!;
    const sizeFile = path.join(c.root, 'image', driver, 'layerdb', 'sha256', base.chainIds[0].slice(7), 'size');
    fs.writeFileSync(sizeFile, '123456');
    const app2 = info.images.get('app2')!;
    const cfg = path.join(c.root, 'image', driver, 'imagedb', 'content', 'sha256', sha(app2.configBytes).slice(7));
    fs.writeFileSync(cfg, app2.configBytes.subarray(0, 100));
    const v = strata(['verify', '--root', c.root]);
    t.is(v.code, 1);
    t.regex(v.stderr, new RegExp(`error: ${sizeFile}: says 123456 bytes`));
    t.regex(v.stderr, new RegExp(`error: ${cfg}: image config is truncated JSON`));
    const images = strata(['images', '--root', c.root, '--json']);
    t.is(images.code, 0);
    t.regex(images.stderr, new RegExp(`${cfg}: image config is truncated JSON`));
    const rows = JSON.parse(images.stdout) as { id: string; tag: string }[];
    t.true(rows.some((r) => r.id === sha(info.images.get('app1')!.configBytes)));
    t.is(rows.find((r) => r.id === sha(base.configBytes))!.tag, 'latest');
  });

  t(title('verify names a missing layer directory and a missing tar-split'), async (t) => {
    const info = await store(driver);
    const c = copyStore(info.root);
    t.teardown(c.cleanup);
    const dangling = info.images.get('dangling')!;
    const top = info.layers.get(dangling.chainIds[dangling.chainIds.length - 1])!;
    const dir = driver === 'overlay2' ? path.join(c.root, 'overlay2', top.cacheId) : path.join(c.root, 'vfs', 'dir', top.cacheId);
    fs.rmSync(dir, { recursive: true });
    const app1 = info.images.get('app1')!;
    const ts = path.join(c.root, 'image', driver, 'layerdb', 'sha256', app1.chainIds[2].slice(7), 'tar-split.json.gz');
    fs.unlinkSync(ts);
    const r = strata(['verify', '--root', c.root, '--json']);
    t.is(r.code, 1);
    const report = JSON.parse(r.stdout) as { problems: { path: string; message: string }[] };
    const cacheIdFile = path.join(c.root, 'image', driver, 'layerdb', 'sha256', top.chainId.slice(7), 'cache-id');
    t.true(report.problems.some((p) => p.path === cacheIdFile && p.message.includes('is missing')), JSON.stringify(report.problems));
    t.true(report.problems.some((p) => p.path === ts && p.message.includes('is missing')));
  });

  t(title('diff CONTAINER is docker diff of the RW layer against the init layer'), async (t) => {
    const info = await store(driver);
    const model = await openStore(info.root);
    const changes = await containerChanges(model, 'web');
    // the scenario: mkdir /data + write /data/hello.txt, append to /etc/passwd, rm /bin/rmme
    t.deepEqual(changes.map((c) => `${'CAD'[c.kind]} ${c.path}`), ['C /bin', 'D /bin/rmme', 'A /data', 'A /data/hello.txt', 'C /etc', 'C /etc/passwd']);
    const r = strata(['diff', 'web', '--root', info.root]);
    t.is(r.code, 0, r.stderr);
    t.is(r.stdout, 'C /bin\nD /bin/rmme\nA /data\nA /data/hello.txt\nC /etc\nC /etc/passwd\n');
  });

  t(title('diff IMAGE IMAGE: added, changed, removed with sizes, from the layers\' tar-split'), async (t) => {
    const info = await store(driver);
    const model = await openStore(info.root);
    const d = await diffImages(model, findImage(model, 'strata/app:1.0'), findImage(model, 'strata/app:2.0'));
    t.deepEqual(d.added.map((e) => [e.path, e.size]), [['/etc/motd', 8], ['/srv/data.bin', 400_000], ['/usr/share/doc/old/new.txt', 4]]);
    t.deepEqual(d.changed.map((e) => [e.path, e.oldSize, e.newSize, e.what]), [['/etc/passwd', 64, 30, ['size']]]);
    t.deepEqual(d.removed.map((e) => [e.path, e.size]), [
      ['/srv/app', 0], ['/srv/app/lib', 0], ['/srv/app/lib/util.js', 20], ['/srv/app/main.js', 50_000],
      ['/usr/share/doc/old/a.txt', 6], ['/usr/share/doc/old/b.txt', 6],
    ]);
    const same = await diffImages(model, findImage(model, 'strata/app:1.0'), findImage(model, 'strata/app:stable'));
    t.deepEqual([same.added, same.changed, same.removed], [[], [], []]);
  });

  t(title('history: one row per config entry, layer sizes, ids on consecutive rows as moby fills them'), async (t) => {
    const info = await store(driver);
    const model = await openStore(info.root);
    const rows = imageHistory(model, findImage(model, 'strata/app:1.0'));
    const app1 = spec.images.find((i) => i.name === 'app1')!;
    t.deepEqual(rows.map((r) => [r.createdBy, r.size]), [
      [app1.emptyHistory![1], 0], [app1.emptyHistory![0], 0],
      [app1.layers[1].createdBy, expectedLayerSize(app1.layers[1].entries, driver)],
      [app1.layers[0].createdBy, expectedLayerSize(app1.layers[0].entries, driver)],
      [spec.images[0].emptyHistory![0], 0],
      [spec.images[0].layers[0].createdBy, expectedLayerSize(spec.images[0].layers[0].entries, driver)],
    ]);
    t.deepEqual(rows.map((r) => r.id), [sha(info.images.get('app1')!.configBytes), sha(info.images.get('base')!.configBytes), '<missing>', '<missing>', '<missing>', '<missing>']);
  });

  t(title('df: every byte under the root accounted for (= du -sx), leftovers classified'), async (t) => {
    const info = await store(driver);
    const c = copyStore(info.root);
    t.teardown(c.cleanup);
    const home = path.join(c.root, driver);
    const layerParent = driver === 'overlay2' ? home : path.join(home, 'dir');
    const orphan = path.join(layerParent, 'f'.repeat(64));
    fs.mkdirSync(path.join(orphan, driver === 'overlay2' ? 'diff' : 'x'), { recursive: true });
    fs.writeFileSync(path.join(orphan, driver === 'overlay2' ? 'diff' : 'x', 'left-behind.bin'), Buffer.alloc(100_000, 1));
    const removing = path.join(layerParent, `${'e'.repeat(64)}-removing`);
    fs.mkdirSync(removing);
    fs.writeFileSync(path.join(removing, 'junk'), Buffer.alloc(5000, 2));
    const initOrphan = path.join(layerParent, `${'d'.repeat(64)}-init`);
    fs.mkdirSync(initOrphan);
    let dangling: string | null = null;
    if (driver === 'overlay2') {
      dangling = path.join(home, 'l', 'ZZZZZZZZZZZZZZZZZZZZZZZZZZ');
      fs.symlinkSync('../nothing-here/diff', dangling);
    }
    // a snapshot BuildKit made in the driver home, named in its bolt database
    const bkId = 'b'.repeat(64);
    const bkDir = path.join(layerParent, bkId);
    fs.mkdirSync(path.join(bkDir, driver === 'overlay2' ? 'diff' : 'y'), { recursive: true });
    fs.writeFileSync(path.join(bkDir, driver === 'overlay2' ? 'diff' : 'y', 'cache.bin'), Buffer.alloc(8000, 3));
    fs.mkdirSync(path.join(c.root, 'buildkit'));
    fs.writeFileSync(path.join(c.root, 'buildkit', 'snapshots.db'), Buffer.concat([Buffer.alloc(4096), Buffer.from(`\x00${bkId}\x00`), Buffer.alloc(4096)]));
    const model = await openStore(c.root);
    const r = await diskUsage(model);
    t.is(r.total.disk, duBytes(c.root));
    const clsOf = (p: string) => r.driverDirs.find((d) => d.paths.includes(p))?.class;
    t.is(clsOf(bkDir), 'buildkit');
    t.is(r.buildCache.disk, duBytes(bkDir));
    const cls = (p: string) => r.driverDirs.find((d) => d.paths.includes(p))?.class;
    t.is(cls(orphan), 'orphan');
    t.is(cls(removing), 'removing');
    t.is(cls(initOrphan), 'init-orphan');
    if (dangling) t.deepEqual(r.danglingLinks, [dangling]);
    t.is(r.driverDirs.filter((d) => d.class === 'image-layer').length, info.layers.size);
    const web = info.containers.get('web')!;
    t.is(r.driverDirs.find((d) => d.id === web.mountId)?.class, 'container-layer');
    t.is(r.driverDirs.find((d) => d.id === web.initId)?.class, 'container-init');
    // docker system df -v: shared = the base layer (in all four images), unique = the rest
    // one row per image with its first reference (docker sorts them by normalized name: 2.0 < latest)
    t.deepEqual(r.images.map((i) => `${i.repository}:${i.tag}`), ['strata/app:2.0', 'strata/app:1.0', '<none>:<none>', 'strata/base:latest']);
    const app2 = r.images.find((i) => i.tag === '2.0')!;
    t.is(app2.sharedSize, expectedImageSize('base', driver));
    t.is(app2.uniqueSize, expectedImageSize('app2', driver) - expectedImageSize('base', driver));
    t.is(r.images.find((i) => i.tag === '1.0')!.containers, 1);
    // the containers table as docker system df -v: IMAGE as created, Path + Args quoted, STATUS from State
    const ctr = r.containers[0];
    t.is(ctr.image, 'strata/app:1.0');
    t.is(ctr.command, "/bin/sh -c 'mkdir -p /data && echo hello > /data/hello.txt'");
    t.is(ctr.status, `Exited (0) ${humanDuration(Date.now() - Date.parse('2023-11-17T12:00:00Z'))} ago`);
    t.true(renderDf(r, true, new Date('2023-11-17T14:00:00Z')).includes('"/bin/sh -c \'mkdir -…"   0               120B      2 hours ago   Exited (0) 2 hours ago   web'));
    // SizeRw: what the container wrote: hello.txt (25 B) and the copied-up passwd (app1's 64 B + the
    // appended 31 B line); the whiteout of /bin/rmme counts 0
    t.is(r.containers[0].sizeRw, 25 + 64 + 31);
  });

  t(title('df: a file system mounted below the root (a running container\'s merged/) is not counted, like du -x'), async (t) => {
    const info = await store(driver);
    const c = copyStore(info.root);
    const mnt = path.join(c.root, 'containers', info.containers.get('web')!.id, 'mounted');
    fs.mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'strata-df-test', mnt]);
    t.teardown(() => {
      execFileSync('umount', [mnt]);
      c.cleanup();
    });
    fs.writeFileSync(path.join(mnt, 'big'), Buffer.alloc(1 << 20, 1));
    const r = await diskUsage(await openStore(c.root));
    t.is(r.total.disk, duBytes(c.root));
  });

  t(title('read-only: images, history, inspect, diff, df, verify leave every file as it was'), async (t) => {
    const info = await store(driver);
    const before = snapshotTree(info.root);
    for (const args of [
      ['images', '-a'], ['images', '--tree'], ['history', 'strata/app:1.0'], ['inspect', 'strata/app:2.0', 'web'],
      ['diff', 'web'], ['diff', 'strata/app:1.0', 'strata/app:2.0'], ['df', '-v'], ['verify'],
    ]) {
      const r = strata([...args, '--root', info.root]);
      t.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    }
    t.deepEqual(snapshotDiff(before, snapshotTree(info.root)), []);
  });

  t(title('inspect IMAGE: RootFS.Layers are the DiffIDs, layers carry chain and cache ids and driver dirs'), async (t) => {
    const info = await store(driver);
    const r = strata(['inspect', 'strata/app:1.0', '--root', info.root]);
    t.is(r.code, 0, r.stderr);
    const [img] = JSON.parse(r.stdout) as { Id: string; RootFS: { Layers: string[] }; Layers: { ChainID: string; CacheID: string; Size: number; GraphDriver: { Data: Record<string, string> } }[] }[];
    const app1 = info.images.get('app1')!;
    t.is(img.Id, sha(app1.configBytes));
    t.deepEqual(img.RootFS.Layers, app1.chainIds.map((c) => info.layers.get(c)!.diffId));
    t.deepEqual(img.Layers.map((l) => [l.ChainID, l.CacheID, l.Size]), app1.chainIds.map((c) => [c, info.layers.get(c)!.cacheId, info.layers.get(c)!.size]));
    const top = img.Layers[img.Layers.length - 1].GraphDriver.Data;
    if (driver === 'overlay2') {
      t.is(top.UpperDir, path.join(info.root, 'overlay2', info.layers.get(app1.chainIds[2])!.cacheId, 'diff'));
      t.is(top.LowerDir.split(':').length, 2);
    } else {
      t.is(top.SourceDir, path.join(info.root, 'vfs', 'dir', info.layers.get(app1.chainIds[2])!.cacheId));
    }
  });

  t(title('inspect LAYER by chain-id prefix or cache id; --no-trunc shows full ids'), async (t) => {
    const info = await store(driver);
    const app2 = info.images.get('app2')!;
    const top = info.layers.get(app2.chainIds[app2.chainIds.length - 1])!;
    for (const ref of [top.chainId.slice(7, 19), top.cacheId]) {
      const r = strata(['inspect', ref, '--root', info.root]);
      t.is(r.code, 0, r.stderr);
      const [l] = JSON.parse(r.stdout) as { Type: string; ChainID: string; DiffID: string; CacheID: string; Size: number; Parent: string; Images: string[] }[];
      t.deepEqual([l.Type, l.ChainID, l.DiffID, l.CacheID, l.Size, l.Parent], ['layer', top.chainId, top.diffId, top.cacheId, top.size, top.parent]);
      t.deepEqual(l.Images, [sha(app2.configBytes)]);
    }
    const nt = strata(['images', '--no-trunc', '--root', info.root]);
    t.true(nt.stdout.split('\n')[1].includes(sha(app2.configBytes)), nt.stdout);
    // a container name that is also an image id prefix names the container, as in docker inspect
    const c = copyStore(info.root);
    t.teardown(c.cleanup);
    const web = info.containers.get('web')!;
    const prefix = sha(app2.configBytes).slice(7, 9);
    const cfgPath = path.join(c.root, 'containers', web.id, 'config.v2.json');
    fs.writeFileSync(cfgPath, fs.readFileSync(cfgPath, 'utf8').replace('"Name":"/web"', `"Name":"/${prefix}"`));
    const byName = strata(['inspect', prefix, '--root', c.root]);
    t.is((JSON.parse(byName.stdout) as { Type: string; Id: string }[])[0].Id, web.id, byName.stderr);
    const none = strata(['inspect', 'no-such-thing', '--root', info.root]);
    t.is(none.code, 1);
    t.is(none.stderr, 'strata: no such image, container or layer: no-such-thing\n');
  });
}

suite('vfs', isRoot, 'root (the vfs copy keeps owners)');
suite('overlay2', overlayOk, 'root and the overlay module');

test('a root with no store is an error naming it, exit 1, no stack trace', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-empty-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const r = strata(['images', '--root', dir]);
  t.is(r.code, 1);
  t.regex(r.stderr, new RegExp(`^strata: ${dir} holds no Docker image store`));
  t.false(r.stderr.includes('    at '));
});

