// Stores that are damaged or hostile (issue 8, classes 3 and 4), built by
// damaging copies of the overlay2 sample store (fixtures/modern-store.ts):
// - a FIFO, /dev/zero, a character device or a huge sparse file in place of
//   a metadata file must not hang or exhaust any reader (each CLI run is
//   time-bounded and its peak RSS read from /proc);
// - links that escape the driver home, dangling or looping l/ links, wrong
//   JSON field types, absurd sizes and parent loops must each be a problem
//   naming its file (verify not ok), and the other views must still work.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { sampleStoreSpec, writeModernStore, type ModernStoreInfo } from '../../fixtures/modern-store.ts';
import * as df from '../../inspect/df.ts';
import { diskUsage } from '../../inspect/df.ts';
import { removeTree } from '../../archive/remove-tree.ts';
import { applyLayer } from '../../archive/apply.ts';
import { header, rawTar } from '../helpers/tar.ts';
import { imageHistory } from '../../inspect/history.ts';
import { imageRows, renderImages } from '../../inspect/images.ts';
import { openStore } from '../../layerstore/store.ts';
import { verifyStore } from '../../inspect/verify.ts';
import { strataBounded } from '../helpers/bounded-cli.ts';
import { isRoot, when } from '../helpers/require.ts';
import { copyStore } from '../helpers/store-copy.ts';

const ok = isRoot && fs.existsSync('/sys/module/overlay');
const rootTest = when(ok, 'root and the overlay module (an overlay2 store)');
/** bound of one CLI run; a clean run of the sample store takes ~2 s */
const BOUND_MS = 30_000;
/** peak RSS bound of one CLI run (a clean run peaks near 150 MB; /dev/zero read whole went past 3 GB) */
const RSS_BOUND = 400 << 20;

let tmp = '';
let info: ModernStoreInfo;
test.before(async () => {
  if (!ok) return;
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-hostile-'));
  info = await writeModernStore(path.join(tmp, 'root'), 'overlay2', sampleStoreSpec());
});
test.after.always(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

/** Paths of the sample store under a copy's root. */
function paths(root: string) {
  const meta = path.join(root, 'image', 'overlay2');
  const app1 = info.images.get('app1')!;
  const web = info.containers.get('web')!;
  const chain = (c: string) => path.join(meta, 'layerdb', 'sha256', c.slice(7));
  return {
    meta, home: path.join(root, 'overlay2'), app1, web, chain,
    repos: path.join(meta, 'repositories.json'),
    config: (id: string) => path.join(meta, 'imagedb', 'content', 'sha256', id.slice(7)),
    imageParent: (id: string) => path.join(meta, 'imagedb', 'metadata', 'sha256', id.slice(7), 'parent'),
    ctrConfig: path.join(root, 'containers', web.id, 'config.v2.json'),
  };
}

function damaged(t: { teardown(fn: () => void): void }, damage: (p: ReturnType<typeof paths>, root: string) => void): string {
  const c = copyStore(info.root);
  t.teardown(c.cleanup);
  damage(paths(c.root), c.root);
  return c.root;
}

function replaceWith(file: string, make: (file: string) => void): void {
  fs.rmSync(file, { recursive: true, force: true });
  make(file);
}
const fifo = (f: string) => execFileSync('mkfifo', [f]);

rootTest('a FIFO in place of a metadata file: images, history, diff, df, verify end, naming the file', async (t) => {
  t.timeout(8 * BOUND_MS);
  const P = paths(info.root);
  const top = P.app1.chainIds[P.app1.chainIds.length - 1];
  const cases: { file: (p: ReturnType<typeof paths>) => string; args: string[]; code: number }[] = [
    { file: (p) => p.repos, args: ['images', '-a'], code: 0 },
    { file: (p) => path.join(p.chain(top), 'size'), args: ['df', '-v'], code: 0 },
    { file: (p) => p.config(p.app1.id), args: ['history', P.app1.id], code: 0 },
    { file: (p) => p.ctrConfig, args: ['diff', P.web.id], code: 0 },
    { file: (p) => path.join(p.home, p.web.mountId, 'lower'), args: ['diff', P.web.id], code: 1 },
    { file: (p) => path.join(p.chain(top), 'tar-split.json.gz'), args: ['diff', 'strata/app:1.0', 'strata/app:2.0'], code: 1 },
    { file: (p) => path.join(p.chain(top), 'tar-split.json.gz'), args: ['verify'], code: 1 },
  ];
  for (const c of cases) {
    let file = '';
    const root = damaged(t, (p) => replaceWith((file = c.file(p)), fifo));
    const r = await strataBounded([...c.args, '--root', root], BOUND_MS);
    const what = `${c.args.join(' ')} with a FIFO at ${path.relative(root, file)}`;
    t.false(r.timedOut, `${what}: still running after ${BOUND_MS} ms`);
    t.is(r.code, c.code, `${what}: ${r.stderr}`);
    t.true(r.stderr.includes(`${file}: `) && r.stderr.includes('is a FIFO, expected a regular file'), `${what}: ${r.stderr}`);
    t.false(r.stderr.includes('    at '), `${what}: stack trace`);
  }
});

rootTest('/dev/zero, a character device and a 3 GiB sparse file in place of JSON are refused unread, memory bounded', async (t) => {
  t.timeout(4 * BOUND_MS);
  const P = paths(info.root);
  const cases: { file: (p: ReturnType<typeof paths>) => string; make: (f: string) => void; message: RegExp }[] = [
    { file: (p) => p.config(p.app1.id), make: (f) => fs.symlinkSync('/dev/zero', f), message: /image config is a symlink \(not followed/ },
    { file: (p) => p.ctrConfig, make: (f) => execFileSync('mknod', [f, 'c', '1', '5']), message: /container config is a character device, expected a regular file/ },
    {
      file: (p) => p.repos, make: (f) => fs.truncateSync((fs.writeFileSync(f, ''), f), 3 * 2 ** 30),
      message: /tag store is 3221225472 bytes, over the 32 MiB cap for JSON metadata/,
    },
  ];
  for (const c of cases) {
    let file = '';
    const root = damaged(t, (p) => replaceWith((file = c.file(p)), c.make));
    const r = await strataBounded(['images', '--root', root], BOUND_MS);
    const what = `images with ${path.relative(root, file)} replaced`;
    t.false(r.timedOut, `${what}: still running after ${BOUND_MS} ms`);
    t.is(r.code, 0, `${what}: ${r.stderr}`);
    t.true(r.stderr.split('\n').some((l) => l.includes(`${file}: `) && c.message.test(l)), `${what}: ${r.stderr}`);
    t.true(r.peakRss !== null && r.peakRss < RSS_BOUND, `${what}: peak RSS ${r.peakRss}`);
  }
  t.is(P.app1.name, 'app1');
});

rootTest('a symlinked directory inside the metadata is not followed out of the root', async (t) => {
  const outside = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-outside-'));
  t.teardown(() => fs.rmSync(outside, { recursive: true, force: true }));
  const base = info.images.get('base')!;
  let dir = '';
  const root = damaged(t, (p) => {
    dir = p.chain(base.chainIds[0]);
    fs.cpSync(dir, path.join(outside, 'layer'), { recursive: true });
    replaceWith(dir, (f) => fs.symlinkSync(path.join(outside, 'layer'), f));
  });
  const model = await openStore(root);
  t.true(model.problems.list.some((p) => p.path === dir && /layer directory is a symlink \(not followed/.test(p.message)), JSON.stringify(model.problems.list));
  t.false(model.layers.has(base.chainIds[0]));
});

// ---- class 4: verify says ok on a store that is not ---------------------------------

interface Case {
  name: string;
  damage: (p: ReturnType<typeof paths>) => string;
  message: RegExp;
  /** verify rebuilds the layer tars (off by default: these problems are in the metadata) */
  content?: boolean;
}

function someLayerWithLower(p: ReturnType<typeof paths>): string {
  const id = [...info.layers.values()].find((l) => l.parent !== null)!.cacheId;
  return path.join(p.home, id, 'lower');
}

const cases: Case[] = [
  { name: 'a lower that climbs out of the home', damage: (p) => { const f = someLayerWithLower(p); fs.writeFileSync(f, 'l/../../../etc'); return f; }, message: /names l\/\.\.\/\.\.\/\.\.\/etc: "\.\.\/\.\.\/\.\.\/etc" is not a link name/ },
  { name: 'an absolute lower', damage: (p) => { const f = someLayerWithLower(p); fs.writeFileSync(f, '/etc'); return f; }, message: /names "\/etc", not an l\/<LINKID> link/ },
  {
    name: 'an l/ link whose target escapes', damage: (p) => {
      const l = path.join(p.home, 'l', fs.readdirSync(path.join(p.home, 'l'))[0]);
      replaceWith(l, (f) => fs.symlinkSync('../../../../etc', f));
      return l;
    }, message: /layer link points at "\.\.\/\.\.\/\.\.\/\.\.\/etc", not \.\.\/<id>\/diff/,
  },
  { name: 'a dangling l/ link', damage: (p) => { const l = path.join(p.home, 'l', 'A'.repeat(26)); fs.symlinkSync('../gone/diff', l); return l; }, message: /layer link is dangling/ },
  { name: 'a looping l/ link', damage: (p) => { const l = path.join(p.home, 'l', 'B'.repeat(26)); fs.symlinkSync('B'.repeat(26), l); return l; }, message: /layer link points at "B{26}"/ },
  {
    name: 'an l/ link into a diff that is itself a link back', damage: (p) => {
      const id = [...info.layers.values()][0].cacheId;
      const diff = path.join(p.home, id, 'diff');
      const l = path.join(p.home, 'l', 'C'.repeat(26));
      fs.symlinkSync(`../${id}/diff`, l);
      replaceWith(diff, (f) => fs.symlinkSync(`../l/${'C'.repeat(26)}`, f));
      return l;
    }, message: /which is a symlink \(a link loop or an escape\)/,
  },
  {
    name: 'container config field types', damage: (p) => {
      const c = JSON.parse(fs.readFileSync(p.ctrConfig, 'utf8')) as Record<string, unknown>;
      Object.assign(c, { Driver: 5, Image: {}, State: 'x' });
      fs.writeFileSync(p.ctrConfig, JSON.stringify(c));
      return p.ctrConfig;
    }, message: /container config: "Driver" is a number, expected a string/,
  },
  {
    name: 'a layer size of 1e30', damage: (p) => {
      const f = path.join(p.chain(info.images.get('base')!.chainIds[0]), 'size');
      fs.writeFileSync(f, '1' + '0'.repeat(30));
      return f;
    }, message: /layer size is "10{30}", beyond any real size/,
  },
  {
    // the file is there, but the entry claims a petabyte for it: verify must not read (or hash) past its real body
    name: 'a tar-split entry whose size its tar header does not give', damage: (p) => {
      const f = path.join(p.chain(info.images.get('base')!.chainIds[0]), 'tar-split.json.gz');
      const lines = zlib.gunzipSync(fs.readFileSync(f)).toString('utf8').trim().split('\n').map((l) => JSON.parse(l) as { type: number; size?: number; name?: string });
      const e = lines.find((l) => l.type === 1 && (l.size ?? 0) > 0)!;
      e.size = 1e15;
      fs.writeFileSync(f, zlib.gzipSync(lines.map((l) => JSON.stringify(l)).join('\n') + '\n'));
      return f;
    }, message: /^entry ".+" records 1000000000000000 bytes, its tar header \d+$/, content: true,
  },
  {
    name: 'an imagedb parent loop', damage: (p) => {
      const base = info.images.get('base')!;
      const f = p.imageParent(base.id);
      fs.mkdirSync(path.dirname(f), { recursive: true });
      fs.writeFileSync(f, p.app1.id);
      return f;
    }, message: /image parent chain loops: /,
  },
  {
    name: 'a layerdb parent loop', damage: (p) => {
      const f = path.join(p.chain(info.images.get('base')!.chainIds[0]), 'parent');
      fs.writeFileSync(f, p.app1.chainIds[p.app1.chainIds.length - 1]);
      return f;
    }, message: /layer parent chain loops: /,
  },
  {
    // dockerd skips a container whose hostconfig.json it cannot read (moby daemon.load)
    name: 'a FIFO in place of a container\'s hostconfig.json', damage: (p) => {
      const f = path.join(path.dirname(p.ctrConfig), 'hostconfig.json');
      replaceWith(f, fifo);
      return f;
    }, message: /^container host config is a FIFO, expected a regular file/,
  },
  {
    name: 'a truncated hostconfig.json', damage: (p) => {
      const f = path.join(path.dirname(p.ctrConfig), 'hostconfig.json');
      fs.writeFileSync(f, '{"NetworkMode": "no');
      return f;
    }, message: /^container host config /,
  },
  {
    name: 'a regular file where a container directory should be', damage: (p) => {
      replaceWith(path.dirname(p.ctrConfig), (f) => fs.writeFileSync(f, '{}'));
      return path.dirname(p.ctrConfig);
    }, message: /^container directory is a regular file, expected a directory$/,
  },
];

for (const c of cases) {
  rootTest(`verify: ${c.name} is a problem naming its file; the other views still work`, async (t) => {
    let file = '';
    const root = damaged(t, (p) => (file = c.damage(p)));
    const model = await openStore(root);
    const r = await verifyStore(model, { content: c.content ?? false });
    t.false(r.ok);
    t.true(r.problems.some((p) => p.path === file && c.message.test(p.message)), `${file}: ${JSON.stringify(r.problems, null, 1)}`);
    // the views end, without throwing, on the damaged model
    const again = await openStore(root);
    const rows = imageRows(again, { all: true });
    t.false(renderImages(again, rows).includes('YB'));
    for (const img of again.images.values()) imageHistory(again, img.id);
    await diskUsage(again);
  });
}

rootTest('verify from the CLI on a damaged store: exit 1, one line per problem, no stack trace', async (t) => {
  let file = '';
  const root = damaged(t, (p) => (file = cases[0].damage(p)));
  const r = await strataBounded(['verify', '--root', root], BOUND_MS);
  t.is(r.code, 1, r.stderr);
  t.true(r.stderr.split('\n').some((l) => l.startsWith(`strata: error: ${file}: `)), r.stderr);
  t.false(r.stderr.includes('    at '));
});

// A driver home that is a symlink (top-level links are followed: operators
// move overlay2/ to another disk) is the store's home only when it plausibly
// is one; else df must not list the target's entries as the store's orphans.
function symlinkedHome(t: { teardown(fn: () => void): void }, target: string | 'moved', empty = false): { root: string; home: string } {
  let home = '';
  const root = damaged(t, (p, r) => {
    home = p.home;
    if (empty) {
      // no image, layer or container left: the metadata names no layer directory
      for (const d of ['layerdb/sha256', 'layerdb/mounts', 'imagedb/content/sha256', 'imagedb/metadata/sha256']) {
        fs.rmSync(path.join(p.meta, d), { recursive: true, force: true });
        fs.mkdirSync(path.join(p.meta, d), { recursive: true });
      }
      fs.writeFileSync(p.repos, '{"Repositories":{}}');
      fs.rmSync(path.join(r, 'containers'), { recursive: true, force: true });
      fs.mkdirSync(path.join(r, 'containers'));
    }
    if (target === 'moved') {
      const disk = path.join(path.dirname(r), 'other-disk');
      fs.mkdirSync(disk);
      fs.renameSync(p.home, path.join(disk, 'overlay2'));
      fs.symlinkSync(path.join(disk, 'overlay2'), p.home);
    } else replaceWith(p.home, (f) => fs.symlinkSync(target, f));
  });
  return { root, home };
}

rootTest('df on a driver home moved to another disk (a symlink to a real home): counted as the store\'s, no warning', async (t) => {
  const { root } = symlinkedHome(t, 'moved');
  const r = await strataBounded(['df', '--root', root], BOUND_MS);
  t.is(r.code, 0, r.stderr);
  t.is(r.stderr, '');
  t.regex(r.stdout, /overlay2\/: image layers/);
  t.notRegex(r.stdout, /^orphan /m);
});

for (const c of [
  { target: '/dev', empty: false, why: /^is a symlink to \/dev, which holds none of the \d+ layer directories the metadata names: / },
  { target: '/dev', empty: true, why: /^is a symlink to \/dev, which holds a character device \(.+\), not a driver home: / },
  { target: '/proc', empty: true, why: /^is a symlink to \/proc, a proc filesystem: / },
]) {
  rootTest(`df on a driver home that is a symlink to ${c.target}${c.empty ? ' (a store naming no layer)' : ''}: one warning naming it, no orphans`, async (t) => {
    t.timeout(2 * BOUND_MS);
    const { root, home } = symlinkedHome(t, c.target, c.empty);
    const r = await strataBounded(['df', '--root', root], BOUND_MS);
    t.false(r.timedOut);
    t.is(r.code, 0, r.stderr); // a report: the store's bytes are still all accounted for (verify exits 1)
    const lines = r.stderr.split('\n').filter((l) => l !== '');
    t.is(lines.length, 1, r.stderr);
    const prefix = `strata: warning: ${home}: `;
    t.true(lines[0].startsWith(prefix), r.stderr);
    t.regex(lines[0].slice(prefix.length), c.why);
    t.false(r.stdout.includes(`${home}/`), 'nothing under the target is listed as the store\'s');
    t.notRegex(r.stdout, /^orphan /m);
  });
}

// A layer may hold paths longer than PATH_MAX (apply makes them one component
// at a time): df must count what is there, as du does, not skip it silently.
test('df counts a tree deeper than PATH_MAX like du', async (t) => {
  const { DiskUsage } = df;
  const top = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-deep-df-'));
  t.teardown(() => removeTree(top));
  const deep = Array.from({ length: 20 }, (_, i) => String(i).padStart(250, 'd')).join('/');
  await applyLayer(rawTar([{ ...header(`${deep}/f`, { size: 5000 }), body: Buffer.alloc(5000, 0x78) }]), top, { whiteouts: 'none' });
  const u = DiskUsage.forRoot(top).measure(top);
  const du = execFileSync('du', ['-s', '-x', '-B1', '--apparent-size', top], { encoding: 'utf8' });
  t.is(u.entries, 22, 'the root, 20 dirs and the file');
  t.is(u.apparent, Number(du.split('\t')[0]));
});
