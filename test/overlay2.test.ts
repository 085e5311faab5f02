// overlay2 specifics beyond the conformance suite: Docker's exact layout, the
// depth limit, the relative-path mount for option strings past a page, the
// init probes, and project quota on a real loop-mounted xfs.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import '../drivers/all.ts';
import { getDriver } from '../drivers/registry.ts';
import { childLower, generateLinkId, planMount, MAX_DEPTH } from '../drivers/overlay2/layout.ts';
import { probeNativeDiff } from '../drivers/overlay2/probes.ts';
import { isMountPoint } from '../sys/mountinfo.ts';
import { asRoot, when, isRoot } from './helpers/require.ts';
import { packTar, tempDir } from './helpers/tar.ts';
import { loopMount, type LoopMount } from '../sys/loop.ts';

const longId = (i: number) => createHash('sha256').update(String(i)).digest('hex');

test('link ids are 26 base32 characters, and lower lists nearest first up to 128', (t) => {
  const ids = new Set(Array.from({ length: 200 }, generateLinkId));
  t.is(ids.size, 200);
  for (const id of ids) t.regex(id, /^[A-Z2-7]{26}$/);
  t.is(childLower('AAA', null), 'l/AAA');
  t.is(childLower('BBB', 'l/AAA'), 'l/BBB:l/AAA');
  const full = Array.from({ length: MAX_DEPTH - 1 }, (_, i) => `l/X${i}`).join(':');
  t.is(childLower('TOP', full).split(':').length, 128);
  t.throws(() => childLower('TOP', full + ':l/ONE_MORE'), { message: 'max depth exceeded' });
});

test('mount plan: absolute paths while they fit a page, else relative to the home', (t) => {
  const short = planMount('/var/lib/docker/overlay2', 'abc', 'l/A:l/B', false, 'index=off,');
  t.deepEqual(short, {
    data: 'index=off,lowerdir=/var/lib/docker/overlay2/l/A:/var/lib/docker/overlay2/l/B,upperdir=/var/lib/docker/overlay2/abc/diff,workdir=/var/lib/docker/overlay2/abc/work',
    cwd: null,
  });
  t.is(planMount('/h', 'abc', 'l/A', true, '').data, 'lowerdir=/h/abc/diff:/h/l/A');
  const lower = Array.from({ length: 128 }, () => 'l/' + generateLinkId()).join(':');
  const long = planMount('/var/lib/docker/overlay2', longId(1), lower, false, '');
  t.is(long.cwd, '/var/lib/docker/overlay2');
  t.true(long.data.startsWith('lowerdir=l/'));
  t.true(long.data.length < 4096);
});

asRoot({ serial: true })('on-disk layout is Docker\'s: link, l/ symlink, lower, work, committed', async (t) => {
  const { dir, cleanup } = tempDir();
  const d = await getDriver('overlay2', dir);
  t.teardown(async () => {
    await d.cleanup();
    cleanup();
  });
  const home = path.join(dir, 'overlay2');
  await d.create('base', null);
  await d.create('child', 'base');
  const link = fs.readFileSync(path.join(home, 'base/link'), 'utf8');
  t.regex(link, /^[A-Z2-7]{26}$/);
  t.is(fs.readlinkSync(path.join(home, 'l', link)), '../base/diff');
  t.false(fs.existsSync(path.join(home, 'base/lower')), 'a base layer has no lower file');
  t.false(fs.existsSync(path.join(home, 'base/work')));
  t.true(fs.existsSync(path.join(home, 'base/committed')), 'creating a child commits the parent');
  t.is(fs.readFileSync(path.join(home, 'child/lower'), 'utf8'), `l/${link}`);
  t.true(fs.statSync(path.join(home, 'child/work')).isDirectory());
  t.is(fs.statSync(path.join(home, 'child')).mode & 0o777, 0o710);
  t.is(fs.statSync(path.join(home, 'l')).mode & 0o777, 0o700);
  await d.remove('base');
  t.false(fs.existsSync(path.join(home, 'l', link)), 'remove drops the l/ link');
});

asRoot({ serial: true })('128 lowers with 64-hex ids mount through relative paths; the 129th layer is refused', async (t) => {
  const { dir, cleanup } = tempDir();
  const d = await getDriver('overlay2', dir);
  t.teardown(async () => {
    await d.cleanup();
    cleanup();
  });
  let parent: string | null = null;
  for (let i = 0; i <= 128; i++) {
    const id = longId(i);
    await d.create(id, parent);
    await d.applyDiff(id, parent, await packTar([{ name: `layer-${i}`, content: id }]));
    parent = id;
  }
  // layer 128 has 128 lowers: the absolute option string is far past a page
  const top = longId(128);
  const merged = await d.get(top);
  try {
    t.true(isMountPoint(merged));
    t.is(fs.readFileSync(path.join(merged, 'layer-0'), 'utf8'), longId(0));
    t.is(fs.readFileSync(path.join(merged, 'layer-128'), 'utf8'), top);
    t.is(fs.readdirSync(merged).length, 129);
  } finally {
    await d.put(top);
  }
  t.false(isMountPoint(merged), 'put unmounts');
  await t.throwsAsync(d.create('too-deep', top), { message: 'max depth exceeded' });
});

asRoot({ serial: true })('init probes: overlay works here and the native diff verdict is reported', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  fs.mkdirSync(path.join(dir, 'home'));
  const verdict = probeNativeDiff(path.join(dir, 'home'));
  t.is(typeof verdict.native, 'boolean');
  t.deepEqual(fs.readdirSync(path.join(dir, 'home')), [], 'probes leave nothing behind');
  const d = await getDriver('overlay2', dir);
  const status = Object.fromEntries(d.status());
  t.is(status['Native Overlay Diff'], String(verdict.native));
  t.is(status['Backing Filesystem'], 'extfs');
  const forced = await getDriver('overlay2', path.join(dir, 'forced'), ['overlay2.force_naive_diff=true']);
  t.is(Object.fromEntries(forced.status())['Native Overlay Diff'], 'false');
  await t.throwsAsync(getDriver('overlay2', path.join(dir, 'bad'), ['overlay2.bogus=1']), { message: 'overlay2: unknown option overlay2.bogus' });
});

const hasXfs = (() => {
  try {
    execFileSync('which', ['mkfs.xfs', 'xfs_quota'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

when(isRoot && hasXfs, 'root and xfsprogs (mkfs.xfs, xfs_quota)', { serial: true })(
  'quota on a loop-mounted xfs: size on a read-write layer (25 MiB fits, 50 MiB does not), or moby\'s refusal where the kernel has no quota', async (t) => {
    const { dir, cleanup } = tempDir();
    let loop: LoopMount | undefined;
    let d: Awaited<ReturnType<typeof getDriver>> | undefined;
    // registered first, so a failed mkfs or mount leaves nothing behind either
    t.teardown(async () => {
      await d?.cleanup();
      loop?.unmount();
      cleanup();
    });
    const img = path.join(dir, 'xfs.img');
    const mnt = path.join(dir, 'mnt');
    fs.mkdirSync(mnt);
    fs.writeFileSync(img, '');
    fs.truncateSync(img, 300 << 20);
    execFileSync('mkfs.xfs', ['-q', img]);
    // a kernel built without XFS quota refuses prjquota: then mount plain xfs and check the refusal
    let kernelQuota = true;
    try {
      loop = loopMount(img, mnt, { options: 'prjquota' });
    } catch {
      kernelQuota = false;
      loop = loopMount(img, mnt);
    }
    d = await getDriver('overlay2', mnt);
    t.is(Object.fromEntries(d.status())['Backing Filesystem'], 'xfs');
    await d.create('Base', null);
    await t.throwsAsync(d.create('ro', 'Base', { storageOpt: { size: '50M' } }), { message: '--storage-opt size is only supported for ReadWrite Layers' });
    if (!kernelQuota) {
      t.log('this kernel\'s xfs has no quota support (prjquota mount refused): checking the refusal path only');
      await t.throwsAsync(d.createReadWrite('Quota', 'Base', { storageOpt: { size: '50M' } }), {
        message: /Filesystem does not support, or has not enabled quotas/,
      });
      return;
    }
    await d.createReadWrite('Quota', 'Base', { storageOpt: { size: '50M' } });
    const root = await d.get('Quota');
    try {
      fs.writeFileSync(path.join(root, 'smallfile'), Buffer.alloc(25 << 20, 1));
      const err = t.throws(() => fs.writeFileSync(path.join(root, 'bigfile'), Buffer.alloc(50 << 20, 2)));
      t.true(['EDQUOT', 'ENOSPC'].includes((err as NodeJS.ErrnoException).code ?? ''), `got ${String(err)}`);
    } finally {
      await d.put('Quota');
    }
  });

asRoot({ serial: true })('quota refused with moby\'s message where the backing fs has no project quota', async (t) => {
  const { dir, cleanup } = tempDir();
  const d = await getDriver('overlay2', dir);
  t.teardown(async () => {
    await d.cleanup();
    cleanup();
  });
  await d.create('Base', null);
  await t.throwsAsync(d.createReadWrite('q', 'Base', { storageOpt: { size: '50M' } }), { message: /Filesystem does not support, or has not enabled quotas/ });
});
