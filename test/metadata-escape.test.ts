// Class 1 of issue 8: metadata must not escape the layer. Work an apply defers
// (directory times) or does on a path after resolving it must land on the
// object inside the layer even when a LATER entry of the same tar replaces the
// directory, or one of its parents, with a symlink that points at a host path.
// Each case applies into a layer dir beside a sentinel tree whose times are
// far from the tar's; the sentinel's manifest (contents, modes, owners,
// xattrs, mtimes) must not change, in every whiteout format.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { applyLayer, ApplyError } from '../archive/apply.ts';
import { treeManifest, manifestDiff } from '../archive/digest.ts';
import type { WhiteoutFormat } from '../archive/types.ts';
import { lgetxattr, lsetxattr } from '../sys/syscalls.ts';
import { capabilityV2 } from './helpers/file-capability.ts';
import { asRoot } from './helpers/require.ts';
import { T0, chunked, packTar, tempDir, type Entry } from './helpers/tar.ts';

const sym = (name: string, linkname: string): Entry => ({ name, type: 'symlink', linkname });
const dir = (name: string, pax?: Record<string, string>): Entry => ({ name, type: 'directory', mode: 0o700, uid: 4242, gid: 4242, pax });
const NS = { mtime: '1577934245.123456789' }; // a PAX mtime with a fraction takes the ns path

interface Case { title: string; entries: Entry[] }

const cases: Case[] = [
  { title: 'dir, then the dir replaced by a symlink to the host (deferred dir time)', entries: [dir('d/'), sym('d', '@SENTINEL@')] },
  { title: 'ns-time dir, then the dir replaced by a symlink to the host', entries: [dir('d/', NS), sym('d', '@SENTINEL@')] },
  {
    title: 'dir below a dir, then the parent replaced by a symlink to the host',
    entries: [dir('p/'), dir('p/sub/'), sym('p', '@SENTINEL@')],
  },
  {
    title: 'ns-time dir below a dir, then the parent replaced by a symlink to the host',
    entries: [dir('p/'), dir('p/sub/', NS), sym('p', '@SENTINEL@')],
  },
  {
    title: 'dir two levels down, then the grandparent replaced by a symlink to the host',
    entries: [dir('a/'), dir('a/victim/'), dir('a/victim/sub/', NS), sym('a', '@TOP@')],
  },
  {
    title: 'dir re-declared (merge), then replaced by a symlink to the host',
    entries: [dir('d/'), { name: 'd/f', content: 'x' }, dir('d/'), sym('d', '@SENTINEL@')],
  },
];

const formats: WhiteoutFormat[] = ['aufs', 'overlay', 'none'];
const OLD = new Date('2001-02-03T04:05:06Z');

/** The sentinel: a tree outside the layer with times, modes, owners and an xattr that no tar here carries. */
function makeSentinel(victim: string): void {
  fs.mkdirSync(path.join(victim, 'sub'), { recursive: true });
  fs.writeFileSync(path.join(victim, 'hello'), 'hello');
  lsetxattr(path.join(victim, 'sub'), 'user.keep', Buffer.from('1'));
  for (const p of [path.join(victim, 'hello'), path.join(victim, 'sub'), victim]) {
    fs.chmodSync(p, 0o751);
    fs.chownSync(p, 1000, 1000);
    fs.utimesSync(p, OLD, OLD);
  }
}

for (const format of formats) {
  for (const c of cases) {
    asRoot()(`metadata stays in the layer (${format}): ${c.title}`, async (t) => {
      const { dir: top, cleanup } = tempDir('strata-meta-escape-');
      t.teardown(cleanup);
      const layer = path.join(top, 'layer');
      const victim = path.join(top, 'victim');
      fs.mkdirSync(layer);
      makeSentinel(victim);
      fs.utimesSync(top, OLD, OLD);
      const outside = { ignore: (rel: string) => rel === '/layer' || rel.startsWith('/layer/') };
      const before = await treeManifest(top, outside);
      const entries = c.entries.map((e) => ({ ...e, linkname: e.linkname?.replaceAll('@SENTINEL@', victim).replaceAll('@TOP@', top) }));
      let error: unknown;
      try {
        await applyLayer(chunked(await packTar(entries)), layer, { whiteouts: format });
      } catch (e) {
        error = e;
      }
      const after = await treeManifest(top, outside);
      t.deepEqual(after, before, `outside the layer changed:\n${manifestDiff(before, after)}`);
      // refusing is allowed, but only as an ApplyError naming the entry
      if (error !== undefined) {
        t.true(error instanceof ApplyError, String(error));
        t.regex((error as Error).message, /tar entry "/);
      }
    });
  }
}

asRoot()('metadata through handles still lands: xattrs on a symlink, a device, a dir and a file; a capability survives the chown', async (t) => {
  const { dir: layer, cleanup } = tempDir('strata-meta-handles-');
  t.teardown(cleanup);
  const x = (k: string, v: string) => ({ [`SCHILY.xattr.${k}`]: v });
  const cap = capabilityV2(1 << 13, true).toString('latin1');
  await applyLayer(await packTar([
    { name: 'd/', type: 'directory', mode: 0o2750, uid: 3, gid: 4, pax: x('trusted.d', '1') },
    { name: 'd/s', type: 'symlink', linkname: '/nowhere', uid: 5, pax: x('trusted.s', '2') },
    { name: 'd/dev', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o620, uid: 6, pax: x('trusted.c', '3') },
    { name: 'd/f', content: 'f', mode: 0o4711, uid: 7, gid: 8, pax: { ...x('security.capability', cap), ...x('user.f', '4') } },
  ]), layer, { whiteouts: 'overlay' });
  const p = (n: string) => path.join(layer, n);
  t.is(lgetxattr(p('d'), 'trusted.d')?.toString(), '1');
  t.is(lgetxattr(p('d/s'), 'trusted.s')?.toString(), '2');
  t.is(lgetxattr(p('d/dev'), 'trusted.c')?.toString(), '3');
  t.is(lgetxattr(p('d/f'), 'user.f')?.toString(), '4');
  t.deepEqual(lgetxattr(p('d/f'), 'security.capability'), Buffer.from(cap, 'latin1'));
  const st = (n: string) => fs.lstatSync(p(n));
  t.deepEqual([st('d').mode & 0o7777, st('d').uid, st('d').gid], [0o2750, 3, 4]);
  t.deepEqual([st('d/s').uid, st('d/s').isSymbolicLink()], [5, true]);
  t.deepEqual([st('d/dev').mode & 0o7777, st('d/dev').uid, st('d/dev').isCharacterDevice()], [0o620, 6, true]);
  t.deepEqual([st('d/f').mode & 0o7777, st('d/f').uid, st('d/f').gid], [0o4711, 7, 8], 'setuid kept: mode after chown');
  t.is(st('d').mtime.getTime(), T0.getTime(), 'the deferred dir time landed');
});
