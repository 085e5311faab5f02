// The docker-registry v1 tree of seed 003 (fixtures/registry-v1-store.ts), read
// offline: tags, ancestry and _index_images as the seed lists them, the layer
// tree with seed 000's virtual sizes, verify clean and catching damage.
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { IMAGES, TAGS, UBUNTU_INDEX, writeRegistryV1Store } from '../../fixtures/registry-v1-store.ts';
import { imageRows, imageTree, renderImageTree } from '../../inspect/images.ts';
import { openStore } from '../../layerstore/store.ts';
import { verifyStore } from '../../inspect/verify.ts';
import { copyStore } from '../helpers/store-copy.ts';
import { snapshotDiff, snapshotTree } from '../helpers/store-snapshot.ts';
import { strata } from '../helpers/strata-cli.ts';

// seed 000: `docker images --tree` on a Docker 0.10 host with the same ubuntu images
const SEED_000_TREE = `└─511136ea3c5a Virtual Size: 0 B
  ├─e2aa6665d371 Virtual Size: 106.1 MB
  │ └─f0ee64c4df74 Virtual Size: 106.3 MB
  │   └─2209cbf9dcd3 Virtual Size: 106.3 MB
  │     └─5e019ab7bf6d Virtual Size: 180 MB Tags: ubuntu:13.10, ubuntu:saucy
  ├─f10ebce2c0e1 Virtual Size: 103.7 MB
  │ └─82cdea7ab5b5 Virtual Size: 103.9 MB
  │   └─5dbd9cb5a02f Virtual Size: 103.9 MB
  │     └─74fe38d11401 Virtual Size: 209.6 MB Tags: ubuntu:precise, ubuntu:12.04
  │       └─fe65a2781dae Virtual Size: 209.6 MB Tags: ubuntu:test
  │         └─276cc641e40e Virtual Size: 388.3 MB Tags: ubuntu:newtest
  ├─ef519c9ee91a Virtual Size: 100.9 MB
  │ └─07302703becc Virtual Size: 101.2 MB
  │   └─cf8dc907452c Virtual Size: 101.2 MB
  │     └─a7cf8ae4e998 Virtual Size: 171.3 MB Tags: ubuntu:12.10, ubuntu:quantal
  ├─5e66087f3ffe Virtual Size: 192.5 MB
  │ └─4d26dd3ebc1c Virtual Size: 192.7 MB
  │   └─d4010efcfd86 Virtual Size: 192.7 MB
  │     └─99ec81b80c55 Virtual Size: 266 MB Tags: ubuntu:14.04, ubuntu:latest, ubuntu:trusty
  ├─02dae1c13f51 Virtual Size: 98.35 MB
  │ └─e7206bfc66aa Virtual Size: 98.54 MB
  │   └─cb12405ee8fa Virtual Size: 98.54 MB
  │     └─316b678ddf48 Virtual Size: 169.4 MB Tags: ubuntu:raring, ubuntu:13.04
  └─6cfa4d1f33fb Virtual Size: 0 B
    └─3db9c44f4520 Virtual Size: 183 MB Tags: ubuntu:10.04, ubuntu:lucid`;

interface TreeLine { id: string; depth: number; parent: string | null; size: string }

/** Lines of a --tree drawing → id, depth, parent id, "Virtual Size" text. */
function parseTree(text: string): TreeLine[] {
  const out: TreeLine[] = [];
  const stack: string[] = [];
  for (const line of text.split('\n').filter(Boolean)) {
    const m = /^((?:[│ ] )*)[└├]─([0-9a-f]{12}) Virtual Size: (.+?)(?: Tags: .*)?$/.exec(line);
    if (!m) throw new Error(`not a tree line: ${line}`);
    const depth = [...m[1]].length / 2;
    stack.length = depth;
    out.push({ id: m[2], depth, parent: depth ? stack[depth - 1] : null, size: m[3] });
    stack.push(m[2]);
  }
  return out;
}

let tmp: string;
let root: string;

test.before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-registry-'));
  root = path.join(tmp, 'registry');
  await writeRegistryV1Store(root);
});

test.after.always(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

test('the tree holds seed 003\'s files: 24 images, ancestry and _index_images as the seed prints them', (t) => {
  t.is(fs.readdirSync(path.join(root, 'images')).length, 24);
  for (const f of ['ancestry', '_checksum', 'json', 'layer']) t.true(fs.existsSync(path.join(root, 'images', IMAGES[5].id, f)));
  const ancestry = (id: string) => JSON.parse(fs.readFileSync(path.join(root, 'images', id, 'ancestry'), 'utf8')) as string[];
  // the three ancestry files seed 003 prints
  t.deepEqual(ancestry('8aedcdadf14bb95a53f712aace7d0cb657447d24e41831518392d1a2b05d8bf7'), ['8aedcdadf14bb95a53f712aace7d0cb657447d24e41831518392d1a2b05d8bf7', '99ec81b80c55d906afd8179560fdab0ee93e32c52053816ca1d531597c1ff48f', 'd4010efcfd86c7f59f6b83b90e9c66d4cc4d78cd2266e853b95d464ea0eb73e6', '4d26dd3ebc1c823cfa652280eca0230ec411fb6a742983803e49e051fe367efe', '5e66087f3ffe002664507d225d07b6929843c3f0299f5335a70c1727c8833737', '511136ea3c5a64f264b78b5433614aec563103b4d4702f3ba7d4d2698e22c158']);
  t.deepEqual(ancestry('7c0d7c261905a9fe83d1aea4037a265058f47e1e3e1134daac879393741cc016'), ['7c0d7c261905a9fe83d1aea4037a265058f47e1e3e1134daac879393741cc016', '5e019ab7bf6deb75b211411ef7257d1e76bf7edee31d9da62a392df98d0529d6', '2209cbf9dcd35615211a2fdc6762bb5e651b5c847537359f05b9ab1bc9a74614', 'f0ee64c4df74c766a16faebfb5123e2b67192eff4a82aa70d0d2081681200a79', 'e2aa6665d37109cd6d196eec32c98d8f4412325cb2dc1588e5eb27cae4beb836', '511136ea3c5a64f264b78b5433614aec563103b4d4702f3ba7d4d2698e22c158']);
  t.deepEqual(ancestry('0b443ba0395813ef287c27f5ff953121a69ab23c467ffbefcefaec3f255e0693'), ['0b443ba0395813ef287c27f5ff953121a69ab23c467ffbefcefaec3f255e0693', '7064731afe90d78da2c117d64a1221c826234cd7145fd330ae7e207ff5606980', '511136ea3c5a64f264b78b5433614aec563103b4d4702f3ba7d4d2698e22c158']);
  const index = JSON.parse(fs.readFileSync(path.join(root, 'repositories/library/ubuntu/_index_images'), 'utf8')) as { id: string }[];
  t.deepEqual(index.map((e) => e.id), UBUNTU_INDEX);
  t.is(UBUNTU_INDEX.length, 21);
  t.is(fs.readFileSync(path.join(root, 'repositories/library/ubuntu/tag_14.04'), 'utf8'), '8aedcdadf14bb95a53f712aace7d0cb657447d24e41831518392d1a2b05d8bf7');
});

test('images: seed 003\'s tags (library/ dropped from names), Size 43197746 on ubuntu:14.04, no problems', async (t) => {
  const model = await openStore(root);
  t.is(model.kind, 'registry-v1');
  t.deepEqual(model.problems.list, []);
  const rows = imageRows(model);
  const got = new Map(rows.map((r) => [`${r.repository}:${r.tag}`, r.id]));
  for (const [repo, tags] of Object.entries(TAGS)) for (const [tag, id] of Object.entries(tags)) t.is(got.get(`${repo}:${tag}`), id);
  t.is(rows.length, 12);
  const trusty = rows.find((r) => r.tag === 'trusty')!;
  t.is(trusty.size, 43197746);
  t.is(trusty.layers.length, 6);
});

test('--tree: every image seed 000 also shows hangs under the same parent with the same virtual size, siblings in its order', async (t) => {
  const model = await openStore(root);
  const ours = parseTree(renderImageTree(model, imageTree(model)));
  const seed = parseTree(SEED_000_TREE);
  const byId = new Map(ours.map((l) => [l.id, l]));
  let common = 0;
  for (const s of seed) {
    const o = byId.get(s.id);
    if (!o) continue;
    common++;
    t.is(o.parent, s.parent, `parent of ${s.id}`);
    t.is(o.size, s.size, `virtual size of ${s.id}`);
  }
  t.is(common, 17); // 511136ea and the saucy, quantal, trusty and raring chains
  const order = (lines: TreeLine[]) => lines.filter((l) => l.parent === '511136ea3c5a' && byId.has(l.id) && seed.some((s) => s.id === l.id)).map((l) => l.id);
  t.deepEqual(order(ours), order(seed));
});

test('verify: clean; a corrupted blob and a wrong Size are each reported with their file', async (t) => {
  t.true((await verifyStore(await openStore(root))).ok);
  const c = copyStore(root);
  t.teardown(c.cleanup);
  const a = IMAGES.find((i) => i.size === 200_000)!;
  const blob = path.join(c.root, 'images', a.id, 'layer');
  const b = fs.readFileSync(blob);
  b[b.length - 5] ^= 0xff; // inside the gzip trailer (CRC-32 / length)
  fs.writeFileSync(blob, b);
  const other = IMAGES.find((i) => i.size === 1_250)!;
  const json = path.join(c.root, 'images', other.id, 'json');
  fs.writeFileSync(json, fs.readFileSync(json, 'utf8').replace('"Size":1250', '"Size":1251'));
  const r = strata(['verify', '--root', c.root]);
  t.is(r.code, 1);
  t.regex(r.stderr, new RegExp(`error: ${blob}: (is not a readable gzip'd tar|says sha256:)`));
  t.regex(r.stderr, new RegExp(`error: ${json}: says Size 1251, the layer holds 1250 bytes of files`));
  t.regex(r.stderr, new RegExp(`error: ${path.join(c.root, 'images', other.id, '_checksum')}: says sha256:`));
});

test('CLI on the registry tree: docker 0.7–1.9 columns, read-only', (t) => {
  const before = snapshotTree(root);
  const r = strata(['images', '--root', root, '--now', '2014-05-20T00:00:00Z']);
  t.is(r.code, 0, r.stderr);
  const lines = r.stdout.split('\n');
  t.is(lines[0], 'REPOSITORY          TAG                 IMAGE ID            CREATED             VIRTUAL SIZE');
  t.true(lines.includes('ubuntu              14.04               8aedcdadf14b        4 days ago          309.2 MB'));
  for (const args of [['images', '--tree'], ['history', 'ubuntu:14.04'], ['inspect', 'centos:6.4'], ['verify'], ['df']]) {
    const x = strata([...args, '--root', root]);
    t.is(x.code, 0, `${args.join(' ')}: ${x.stderr}`);
  }
  t.deepEqual(snapshotDiff(before, snapshotTree(root)), []);
});

test('diff IMAGE IMAGE from the layer blobs: centos:6.4 → centos:6.5', async (t) => {
  const { diffImages } = await import('../../inspect/diff.ts');
  const model = await openStore(root);
  const d = await diffImages(model, TAGS.centos['6.4'], TAGS.centos['6.5']);
  const note = (id: string) => `layer of ${id}\n`.length;
  const a = TAGS.centos['6.4'];
  const b = TAGS.centos['6.5'];
  // (the fixture's tars carry no entries for var/ and var/lib/, so neither do the flattened trees)
  t.deepEqual(d.added.map((e) => [e.path, e.size]), [[`/etc/strata-layer-${b.slice(0, 12)}`, note(b)], [`/var/lib/strata-padding-${b.slice(0, 12)}`, 5_000_000 - note(b)]]);
  t.deepEqual(d.removed.map((e) => [e.path, e.size]), [[`/etc/strata-layer-${a.slice(0, 12)}`, note(a)], [`/var/lib/strata-padding-${a.slice(0, 12)}`, 4_000_000 - note(a)]]);
  t.deepEqual(d.changed, []);
});
