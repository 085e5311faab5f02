// Nothing a layer tar says may write, change or remove anything outside the
// layer directory. Each case runs against a layer dir beside a sentinel
// directory; afterwards the sentinel (and the parent holding both) must be
// byte-for-byte what it was. A case may be refused with an error naming the
// entry, or applied contained — never escape.
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { applyLayer, ApplyError } from '../archive/apply.ts';
import { treeManifest, manifestDiff } from '../archive/digest.ts';
import { asRoot } from './helpers/require.ts';
import { chunked, packTar, tempDir, type Entry } from './helpers/tar.ts';

interface Case {
  title: string;
  /** entries; `@SENTINEL@` in names and link targets is replaced by the sentinel's absolute path */
  entries: Entry[];
  /** 'refuse': must throw ApplyError naming an entry; 'contain': must succeed */
  expect: 'refuse' | 'contain' | 'either';
  /** for contained cases: a check of what happened inside the layer */
  inside?: (layer: string, sentinel: string) => void;
}

const sym = (name: string, linkname: string): Entry => ({ name, type: 'symlink', linkname });
const hard = (name: string, linkname: string): Entry => ({ name, type: 'link', linkname });
const file = (name: string, content = 'pwned'): Entry => ({ name, content });

const cases: Case[] = [
  // moby pkg/archive TestUntarInvalidFilenames / TestApplyLayerInvalidFilenames
  { title: 'moby: ../victim/dotdot', entries: [file('../victim/dotdot')], expect: 'refuse' },
  { title: 'moby: /../victim/slash-dotdot', entries: [file('/../victim/slash-dotdot')], expect: 'refuse' },
  // moby TestUntarInvalidHardlink / TestApplyLayerInvalidHardlink
  { title: 'moby hardlink: dotdot', entries: [hard('dotdot', '../victim/hello'), file('dotdot')], expect: 'refuse' },
  { title: 'moby hardlink: slash-dotdot', entries: [hard('slash-dotdot', '/../victim/hello'), file('slash-dotdot')], expect: 'refuse' },
  { title: 'moby hardlink: write victim/file', entries: [hard('loophole-victim', '../victim'), file('loophole-victim/file')], expect: 'refuse' },
  { title: 'moby hardlink: hardlink then symlink', entries: [hard('loophole-victim', '../victim'), sym('symlink', 'loophole-victim/hello')], expect: 'refuse' },
  { title: 'moby hardlink: hardlink then hardlink', entries: [hard('loophole-victim', '../victim'), hard('hardlink', 'loophole-victim/hello')], expect: 'refuse' },
  { title: 'moby hardlink: remove victim dir', entries: [hard('loophole-victim', '../victim'), file('loophole-victim')], expect: 'refuse' },
  // moby TestUntarInvalidSymlink / TestApplyLayerInvalidSymlink
  { title: 'moby symlink: dotdot', entries: [sym('dotdot', '../victim/hello'), file('dotdot')], expect: 'refuse' },
  { title: 'moby symlink: slash-dotdot', entries: [sym('slash-dotdot', '/../victim/hello'), file('slash-dotdot')], expect: 'refuse' },
  { title: 'moby symlink: write victim/file', entries: [sym('loophole-victim', '../victim'), file('loophole-victim/file')], expect: 'refuse' },
  { title: 'moby symlink: symlink to symlink', entries: [sym('symlink', '../victim/hello'), sym('symlink-symlink', 'symlink')], expect: 'refuse' },
  { title: 'moby symlink: hardlink to symlink', entries: [sym('symlink', '../victim/hello'), hard('hardlink-symlink', 'symlink')], expect: 'refuse' },
  { title: 'moby symlink: remove victim dir', entries: [sym('symlink', '../victim'), file('symlink')], expect: 'refuse' },
  { title: 'moby symlink: newdir through nested loophole', entries: [sym('dir/loophole', '../../victim'), file('dir/loophole/newdir/newfile')], expect: 'refuse' },
  // ours: absolute paths and absolute symlinks that name real host paths
  {
    title: 'absolute entry name stays inside', entries: [file('/etc/strata-abs')], expect: 'contain',
    inside: (l) => fs.statSync(path.join(l, 'etc/strata-abs')),
  },
  {
    title: 'absolute symlink to the real sentinel, then a file through it', entries: [sym('esc', '@SENTINEL@'), file('esc/pwned')],
    expect: 'contain', inside: (l, s) => fs.statSync(path.join(l, s, 'pwned')),
  },
  {
    title: 'absolute symlink to the sentinel, whiteout through it', entries: [sym('esc', '@SENTINEL@'), file('esc/.wh.hello', '')],
    expect: 'contain',
  },
  {
    title: 'absolute symlink to the sentinel, opaque marker through it', entries: [sym('esc', '@SENTINEL@'), file('esc/.wh..wh..opq', '')],
    expect: 'contain',
  },
  {
    title: 'symlink to /, opaque marker through it empties only the layer', entries: [file('kept'), sym('root', '/'), file('root/.wh..wh..opq', '')],
    expect: 'contain',
  },
  { title: 'hardlink to an absolute host file', entries: [hard('h', '@SENTINEL@/hello')], expect: 'refuse' },
  { title: 'hardlink through an absolute symlink', entries: [sym('esc', '@SENTINEL@'), hard('h', 'esc/hello')], expect: 'refuse' },
  { title: 'whiteout of ..', entries: [file('a/.wh...', '')], expect: 'refuse' },
  { title: 'whiteout of . ', entries: [file('.wh..', '')], expect: 'refuse' },
  { title: 'name climbing through a symlinked dir', entries: [sym('up', '/'), file('up/../../victim/x')], expect: 'refuse' },
  { title: 'symlink loop', entries: [sym('a', 'b'), sym('b', 'a'), file('a/x')], expect: 'refuse' },
  {
    title: 'chain of absolute symlinks ending at ..', entries: [sym('s1', '/s2'), sym('s2', '/s3/..'), file('s1/x')], expect: 'contain',
  },
  {
    title: 'device node through an absolute symlink', entries: [sym('esc', '@SENTINEL@'), { name: 'esc/null', type: 'character-device', devmajor: 1, devminor: 3 }],
    expect: 'contain',
  },
];

function fill(e: Entry, sentinel: string): Entry {
  const r = (s?: string) => s?.replaceAll('@SENTINEL@', sentinel);
  return { ...e, name: r(e.name)!, linkname: r(e.linkname) };
}

for (const c of cases) {
  asRoot()(`breakout contained: ${c.title}`, async (t) => {
    const { dir, cleanup } = tempDir('strata-breakout-');
    t.teardown(cleanup);
    const layer = path.join(dir, 'layer');
    const victim = path.join(dir, 'victim');
    fs.mkdirSync(layer);
    fs.mkdirSync(victim);
    fs.writeFileSync(path.join(victim, 'hello'), 'hello');
    fs.mkdirSync(path.join(victim, 'sub'));
    const before = await treeManifest(dir, { ignore: (rel) => rel === '/layer' || rel.startsWith('/layer/') });
    const tar = await packTar(c.entries.map((e) => fill(e, victim)));
    let error: unknown;
    try {
      await applyLayer(chunked(tar), layer, { whiteouts: 'none' });
    } catch (e) {
      error = e;
    }
    const after = await treeManifest(dir, { ignore: (rel) => rel === '/layer' || rel.startsWith('/layer/') });
    t.deepEqual(after, before, `outside the layer changed:\n${manifestDiff(before, after)}`);
    if (c.expect === 'refuse') {
      t.true(error instanceof ApplyError, `expected a refusal, got ${String(error)}`);
      t.regex((error as Error).message, /tar entry "/, 'the error names the entry');
    } else if (c.expect === 'contain') {
      t.is(error, undefined, `expected a contained apply, got ${String(error)}`);
      if (c.inside) t.notThrows(() => c.inside!(layer, victim), 'the entry landed inside the layer');
    }
  });
}

test('the breakout suite can fail: an escaping write is detected', async (t) => {
  // Write outside on purpose (as a broken extractor would) and check the manifest comparison sees it.
  const { dir, cleanup } = tempDir('strata-breakout-');
  t.teardown(cleanup);
  fs.mkdirSync(path.join(dir, 'victim'));
  const before = await treeManifest(dir);
  fs.writeFileSync(path.join(dir, 'victim', 'pwned'), 'x');
  const after = await treeManifest(dir);
  t.notDeepEqual(after, before);
});
