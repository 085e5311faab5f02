// The Docker 0.6 data root of seed 002 (fixtures/legacy-store.ts), read
// offline: `strata images` must print the seed's `docker images` tables.
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LAYER_SIZES, PRECISE, QUANTAL, QUANTAL_BASE, SCOOBY, setLegacyState, writeLegacyStore, type LegacyState } from '../../fixtures/legacy-store.ts';
import { imageRows, imageTree, renderImageTree, renderImages } from '../../inspect/images.ts';
import { imageHistory, renderHistory } from '../../inspect/history.ts';
import { findImage, openStore } from '../../layerstore/store.ts';
import { diskUsage } from '../../inspect/df.ts';
import { diffImages } from '../../inspect/diff.ts';
import { copyStore, duBytes } from '../helpers/store-copy.ts';
import { snapshotDiff, snapshotTree } from '../helpers/store-snapshot.ts';
import { strata } from '../helpers/strata-cli.ts';

// `docker images` as seed 002 prints it at each step of the article, verbatim.
const HEADER = 'REPOSITORY          TAG                 IMAGE ID            CREATED             SIZE';
const UBUNTU = [
  'ubuntu              12.04               8dbd9e392a96        8 months ago        131.3 MB (virtual 131.3 MB)',
  'ubuntu              latest              8dbd9e392a96        8 months ago        131.3 MB (virtual 131.3 MB)',
  'ubuntu              precise             8dbd9e392a96        8 months ago        131.3 MB (virtual 131.3 MB)',
  'ubuntu              12.10               b750fe79269d        8 months ago        24.65 kB (virtual 179.7 MB)',
  'ubuntu              quantal             b750fe79269d        8 months ago        24.65 kB (virtual 179.7 MB)',
];
const SEED_002: Record<LegacyState, { now: string; lines: string[] }> = {
  pulled: { now: '2013-12-13T04:30:00Z', lines: [HEADER, ...UBUNTU] },
  tagged: {
    now: '2013-12-13T04:30:00Z',
    lines: [HEADER, ...UBUNTU.slice(0, 3),
      'scooby_snacks       latest              8dbd9e392a96        8 months ago        131.3 MB (virtual 131.3 MB)', ...UBUNTU.slice(3)],
  },
  built: {
    now: '2013-12-13T06:32:30Z',
    lines: [HEADER, 'scooby_snacks       latest              91acef3a5936        5 minutes ago       12.29 kB (virtual 131.3 MB)', ...UBUNTU],
  },
  pushed: {
    now: '2013-12-13T06:57:30Z',
    lines: [
      'REPOSITORY              TAG                 IMAGE ID            CREATED             SIZE',
      'scooby_snacks           latest              91acef3a5936        30 minutes ago      12.29 kB (virtual 131.3 MB)',
      'thoward/scooby_snacks   latest              91acef3a5936        30 minutes ago      12.29 kB (virtual 131.3 MB)',
      'ubuntu                  12.04               8dbd9e392a96        8 months ago        131.3 MB (virtual 131.3 MB)',
      'ubuntu                  latest              8dbd9e392a96        8 months ago        131.3 MB (virtual 131.3 MB)',
      'ubuntu                  precise             8dbd9e392a96        8 months ago        131.3 MB (virtual 131.3 MB)',
      'ubuntu                  12.10               b750fe79269d        8 months ago        24.65 kB (virtual 179.7 MB)',
      'ubuntu                  quantal             b750fe79269d        8 months ago        24.65 kB (virtual 179.7 MB)',
    ],
  },
  untagged: {
    now: '2013-12-13T06:56:30Z',
    lines: [
      'REPOSITORY              TAG                 IMAGE ID            CREATED             SIZE',
      'thoward/scooby_snacks   latest              91acef3a5936        29 minutes ago      12.29 kB (virtual 131.3 MB)',
      'ubuntu                  12.04               8dbd9e392a96        8 months ago        131.3 MB (virtual 131.3 MB)',
      'ubuntu                  latest              8dbd9e392a96        8 months ago        131.3 MB (virtual 131.3 MB)',
      'ubuntu                  precise             8dbd9e392a96        8 months ago        131.3 MB (virtual 131.3 MB)',
      'ubuntu                  12.10               b750fe79269d        8 months ago        24.65 kB (virtual 179.7 MB)',
      'ubuntu                  quantal             b750fe79269d        8 months ago        24.65 kB (virtual 179.7 MB)',
    ],
  },
};

/**
 * Docker 0.6 printed the references of one image in Go map order (random),
 * and the seed's "tagged" table has scooby_snacks after ubuntu:precise. Compare
 * the order of images and, per image, the set of lines.
 */
function groups(lines: string[]): [string, string[]][] {
  const out: [string, string[]][] = [];
  for (const l of lines.slice(1)) {
    const id = l.split(/\s+/)[2];
    const last = out[out.length - 1];
    if (last && last[0] === id) last[1].push(l);
    else out.push([id, [l]]);
  }
  return out.map(([id, ls]) => [id, ls.sort()]);
}

let root: string;
let tmp: string;

test.before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-legacy-'));
  root = path.join(tmp, 'docker');
  await writeLegacyStore(root, 'pulled');
});

test.after.always(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

test.serial('the fixture holds the layer sizes it was built for, measured on disk', (t) => {
  for (const id of [QUANTAL_BASE, PRECISE, QUANTAL]) {
    t.is(Number(fs.readFileSync(path.join(root, 'graph', id, 'layersize'), 'utf8')), LAYER_SIZES[id], id);
  }
  const dirs = fs.readdirSync(path.join(root, 'graph', PRECISE, 'layer')).sort();
  t.deepEqual(dirs.filter((d) => fs.statSync(path.join(root, 'graph', PRECISE, 'layer', d)).isDirectory()),
    ['bin', 'boot', 'dev', 'etc', 'home', 'lib', 'lib64', 'media', 'mnt', 'opt', 'proc', 'root', 'run', 'sbin', 'selinux', 'srv', 'sys', 'tmp', 'usr', 'var']);
});

for (const state of ['pulled', 'tagged', 'built', 'pushed', 'untagged'] as LegacyState[]) {
  test.serial(`seed 002, ${state}: strata images prints the seed's docker images table`, async (t) => {
    await setLegacyState(root, state);
    const model = await openStore(root);
    t.is(model.era, 'docker-0.6');
    t.deepEqual(model.problems.list, []);
    const out = renderImages(model, imageRows(model), { now: new Date(SEED_002[state].now) });
    const lines = out.trimEnd().split('\n');
    if (state === 'tagged') {
      t.is(lines[0], SEED_002[state].lines[0]);
      t.deepEqual(groups(lines), groups(SEED_002[state].lines));
    } else {
      t.deepEqual(lines, SEED_002[state].lines);
    }
  });
}

test.serial('seed 002 through the CLI: same table, exit 0, nothing on stderr', async (t) => {
  await setLegacyState(root, 'pushed');
  const r = strata(['images', '--root', root, '--now', SEED_002.pushed.now]);
  t.is(r.code, 0, r.stderr);
  t.is(r.stderr, '');
  t.deepEqual(r.stdout.trimEnd().split('\n'), SEED_002.pushed.lines);
});

test.serial('JSON rows carry bytes: size = layersize, virtualSize = Σ layersize down the parents', async (t) => {
  await setLegacyState(root, 'built');
  const r = strata(['images', '--root', root, '--json']);
  t.is(r.code, 0, r.stderr);
  const rows = JSON.parse(r.stdout) as { repository: string; tag: string; id: string; parent: string | null; size: number; virtualSize: number; layers: string[]; created: string }[];
  const scooby = rows.find((x) => x.repository === 'scooby_snacks')!;
  t.is(scooby.id, SCOOBY);
  t.is(scooby.parent, PRECISE);
  t.is(scooby.size, 12288);
  t.is(scooby.virtualSize, 12288 + 131301903);
  t.deepEqual(scooby.layers, [PRECISE, SCOOBY]);
  t.is(scooby.created, '2013-12-13T06:27:03.234Z');
  const quantal = rows.find((x) => x.tag === 'quantal')!;
  t.is(quantal.virtualSize, LAYER_SIZES[QUANTAL] + LAYER_SIZES[QUANTAL_BASE]);
  t.is(rows.length, 6);
});

test.serial('-a adds the untagged intermediate 27cf784147099545 as <none>', async (t) => {
  await setLegacyState(root, 'pulled');
  const model = await openStore(root);
  t.false(imageRows(model).some((r) => r.id === QUANTAL_BASE));
  const all = imageRows(model, { all: true });
  const base = all.find((r) => r.id === QUANTAL_BASE)!;
  t.is(base.repository, '<none>');
  t.is(base.tag, '<none>');
  t.is(all.length, 6);
  // a 16-hex id is shown whole, truncated ids are 12 characters
  t.regex(renderImages(model, all, { now: new Date(SEED_002.pulled.now) }), /<none>\s+<none>\s+27cf78414709\s/);
});

test.serial('--tree draws the layer-sharing tree like seed 000 (docker images --tree), sizes from seed 002', async (t) => {
  await setLegacyState(root, 'pushed');
  const model = await openStore(root);
  t.is(renderImageTree(model, imageTree(model)), [
    '├─8dbd9e392a96 Virtual Size: 131.3 MB Tags: ubuntu:12.04, ubuntu:latest, ubuntu:precise',
    '│ └─91acef3a5936 Virtual Size: 131.3 MB Tags: scooby_snacks:latest, thoward/scooby_snacks:latest',
    '└─27cf78414709 Virtual Size: 179.7 MB',
    '  └─b750fe79269d Virtual Size: 179.7 MB Tags: ubuntu:12.10, ubuntu:quantal',
    '',
  ].join('\n'));
});

test.serial('history walks the parent chain: CREATED BY is container_config.Cmd, SIZE the layersize', async (t) => {
  await setLegacyState(root, 'built');
  const model = await openStore(root);
  const rows = imageHistory(model, findImage(model, 'scooby_snacks'));
  t.deepEqual(rows.map((r) => [r.id, r.createdBy, r.size, r.comment]), [
    [SCOOBY, '/bin/sh -c touch scooby_snacks.txt', 12288, ''],
    [PRECISE, '', 131301903, 'Imported from -'],
  ]);
  const text = renderHistory(model, rows, { now: new Date(SEED_002.built.now) });
  t.is(text.split('\n')[1], '91acef3a5936        5 minutes ago       /bin/sh -c touch scooby_snacks.txt   12.29 kB            ');
});

test.serial('verify: the 0.6 store is consistent (layersize = StoreSize of each layer dir, parents, tags)', async (t) => {
  await setLegacyState(root, 'pushed');
  const r = strata(['verify', '--root', root, '--json']);
  t.is(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout) as { ok: boolean; checked: { images: number; tags: number } };
  t.true(report.ok);
  t.is(report.checked.images, 4);
  t.is(report.checked.tags, 7);
});

test.serial('damage: a wrong layersize, a truncated json, a missing parent — each named; images still lists the rest', async (t) => {
  await setLegacyState(root, 'pushed');
  const c = copyStore(root);
  t.teardown(c.cleanup);
  const g = (id: string, f: string) => path.join(c.root, 'graph', id, f);
  fs.writeFileSync(g(SCOOBY, 'layersize'), '12289');
  const json = fs.readFileSync(g(PRECISE, 'json'));
  fs.writeFileSync(g(PRECISE, 'json'), json.subarray(0, json.length - 30));
  fs.rmSync(path.join(c.root, 'graph', QUANTAL_BASE), { recursive: true });
  const v = strata(['verify', '--root', c.root]);
  t.is(v.code, 1);
  t.regex(v.stderr, new RegExp(`error: ${g(SCOOBY, 'layersize')}: says 12289 bytes, StoreSize of ${g(SCOOBY, 'layer')} is 12288`));
  t.regex(v.stderr, new RegExp(`error: ${g(PRECISE, 'json')}: image JSON is truncated JSON`));
  t.regex(v.stderr, new RegExp(`error: ${path.join(c.root, 'graph', QUANTAL_BASE)}: parent image ${QUANTAL_BASE} \\(of ${QUANTAL}\\) is missing`));
  t.false(v.stderr.includes('    at '));
  const i = strata(['images', '--root', c.root, '--now', SEED_002.pushed.now]);
  t.is(i.code, 0);
  // what can still be read is shown: the tags, sizes from layersize; 8dbd… lost its creation time
  t.true(i.stdout.includes('thoward/scooby_snacks   latest              91acef3a5936        30 minutes ago      12.29 kB (virtual 131.3 MB)'), i.stdout);
  t.true(i.stdout.includes('ubuntu                  12.04               8dbd9e392a96        N/A                 131.3 MB (virtual 131.3 MB)'), i.stdout);
  t.regex(i.stderr, new RegExp(`${g(PRECISE, 'json')}: image JSON is truncated JSON`));
});

test.serial('df: the 0.6 root accounted for to the byte (= du -sx), image layers are graph/<id>', async (t) => {
  await setLegacyState(root, 'built');
  const model = await openStore(root);
  const r = await diskUsage(model);
  t.is(r.total.disk, duBytes(root));
  t.deepEqual(r.driverDirs.filter((d) => d.class === 'image-layer').map((d) => d.id).sort(), [QUANTAL_BASE, PRECISE, SCOOBY, QUANTAL].sort());
  t.true(r.driverDirs.filter((d) => d.class === 'orphan').length === 0);
});

test.serial('read-only: every command leaves the 0.6 store as it was', async (t) => {
  await setLegacyState(root, 'pushed');
  const before = snapshotTree(root);
  for (const args of [['images', '-a'], ['images', '--tree', '--json'], ['history', SCOOBY.slice(0, 6)], ['inspect', 'ubuntu:12.10'], ['df', '-v'], ['verify'], ['diff', 'ubuntu:12.04', 'scooby_snacks']]) {
    const r = strata([...args, '--root', root]);
    t.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  }
  t.deepEqual(snapshotDiff(before, snapshotTree(root)), []);
});

test.serial('diff IMAGE IMAGE on aufs branches without tar-split: 91acef… adds scooby_snacks.txt, aufs metadata is not content', async (t) => {
  await setLegacyState(root, 'built');
  const model = await openStore(root);
  const d = await diffImages(model, PRECISE, SCOOBY);
  t.deepEqual(d.added.map((e) => [e.path, e.size]), [['/scooby_snacks.txt', 0]]);
  t.deepEqual(d.changed, []);
  t.deepEqual(d.removed, []);
});
