// drivers/mounter.ts: each kind of spec mounted and torn down, the FUSE helper
// released from a second process, and a SIGKILLed helper's stale mount cleaned.
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LayerMounts, fuseHelper, isStaleFuse, mount, overlaySpec, unmount } from '../drivers/mounter.ts';
import { isAlive, tagOf } from '../drivers/holder.ts';
import { loopDevicesOf } from '../sys/loop.ts';
import { isMountPoint, mountAt, mountsUnder } from '../sys/mountinfo.ts';
import * as sys from '../sys/syscalls.ts';
import { repo } from './helpers/line-child.ts';
import { asRoot, hasTool, when } from './helpers/require.ts';
import { tinyFsMissing } from './helpers/tiny-fs.ts';

function scratch(t: import('ava').ExecutionContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-mounter-'));
  for (const d of ['l1', 'l2', 'upper', 'work']) fs.mkdirSync(path.join(dir, d));
  fs.writeFileSync(path.join(dir, 'l1/a'), 'from l1');
  fs.writeFileSync(path.join(dir, 'l2/b'), 'from l2');
  process.env.STRATA_FUSE_DIR = path.join(dir, 'run-fuse');
  process.env.STRATA_RUN_DIR = path.join(dir, 'run-refs');
  t.teardown(() => {
    for (const m of mountsUnder(dir).reverse()) sys.umount2(m.mountPoint, sys.MNT_DETACH);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}
const unionOpts = (dir: string) => `lowerdir=${dir}/l1:${dir}/l2,upperdir=${dir}/upper,workdir=${dir}/work`;

asRoot({ serial: true })('kernel: an overlay spec is mounted (target made) and unmount detaches and removes the target', (t) => {
  const dir = scratch(t);
  const target = path.join(dir, 'merged');
  mount(target, overlaySpec(unionOpts(dir)));
  t.is(mountAt(target)?.fstype, 'overlay');
  t.is(fs.readFileSync(path.join(target, 'b'), 'utf8'), 'from l2');
  unmount(target);
  t.false(isMountPoint(target));
  t.false(fs.existsSync(target));
  fs.mkdirSync(target);
  t.notThrows(() => unmount(target), 'not mounted is no error');
});

asRoot({ serial: true })('kernel: a failed mount removes the target it made', (t) => {
  const dir = scratch(t);
  const target = path.join(dir, 'merged');
  t.throws(() => mount(target, overlaySpec(`lowerdir=${dir}/missing`)), { instanceOf: sys.SysError });
  t.false(fs.existsSync(target));
});

const loopMissing = tinyFsMissing();
when(loopMissing === null, loopMissing ?? '', { serial: true })('loop: an image is mounted read-only and unmount detaches its device', (t) => {
  const dir = scratch(t);
  const img = path.join(dir, 'fs.img');
  fs.writeFileSync(img, '');
  fs.truncateSync(img, 8 << 20);
  execFileSync('mkfs.ext4', ['-q', '-F', '-d', path.join(dir, 'l1'), img], { stdio: 'pipe' });
  const target = path.join(dir, 'mnt');
  mount(target, { kind: 'loop', image: img, fstype: 'ext4', data: 'noload' });
  t.true(mountAt(target)!.options.includes('ro'));
  t.is(fs.readFileSync(path.join(target, 'a'), 'utf8'), 'from l1');
  t.is(loopDevicesOf(img).length, 1);
  unmount(target, { keepDir: true });
  t.false(isMountPoint(target));
  t.true(fs.existsSync(target));
  t.deepEqual(loopDevicesOf(img), [], 'the loop device is detached');
});

const fuseMissing = process.getuid?.() !== 0 ? 'root' : !fs.existsSync('/dev/fuse') || !hasTool('fuse-overlayfs') || !hasTool('fusermount3')
  ? '/dev/fuse, fuse-overlayfs and fusermount3' : null;
const fuse = (dir: string) => ({ kind: 'fuse' as const, program: 'fuse-overlayfs', options: unionOpts(dir) });

when(fuseMissing === null, fuseMissing ?? '', { serial: true })('fuse: the helper is up when mount returns, recorded, and released by another process', (t) => {
  const dir = scratch(t);
  const target = path.join(dir, 'merged');
  mount(target, fuse(dir));
  t.is(mountAt(target)?.fstype, 'fuse.fuse-overlayfs');
  t.is(fs.readFileSync(path.join(target, 'a'), 'utf8'), 'from l1');
  const helper = fuseHelper(target)!;
  t.true(isAlive(helper));
  // a second process, knowing only the target, ends it
  execFileSync(process.execPath, ['--import', 'tsx', '-e',
    `const m = await import(${JSON.stringify(path.join(repo, 'drivers/mounter.ts'))}); m.unmount(${JSON.stringify(target)});`],
  { cwd: repo, env: process.env, stdio: 'pipe' });
  t.false(isMountPoint(target));
  t.false(isAlive(helper), 'the helper exited');
  t.is(fuseHelper(target), null, 'its record is gone');
});

when(fuseMissing === null, fuseMissing ?? '', { serial: true })('fuse: unmount ends the helper even when another mount namespace holds a copy of the mount', async (t) => {
  const dir = scratch(t);
  const target = path.join(dir, 'merged');
  mount(target, fuse(dir));
  const helper = fuseHelper(target)!;
  // a namespace made now (unshare --mount, as a container or a test's user
  // namespace is) copies the mount; unmounting ours does not end that copy
  const ns = spawn('unshare', ['--mount', '--propagation', 'private', '--', 'sh', '-c', 'echo ready; read end'], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.teardown(() => ns.kill('SIGKILL'));
  const ready = await new Promise<string>((resolve) => ns.stdout.once('data', (b: Buffer) => resolve(b.toString())));
  t.is(ready, 'ready\n');
  unmount(target);
  t.false(isMountPoint(target));
  t.false(isAlive(helper), 'the helper exited: its connection was ended, not left serving the copy');
  ns.stdin.end('\n');
});

when(fuseMissing === null, fuseMissing ?? '', { serial: true })('fuse: a SIGKILLed helper leaves a stale mount that the next get() cleans and mounts afresh', async (t) => {
  const dir = scratch(t);
  const target = path.join(dir, 'merged');
  const mounts = new LayerMounts(path.join(dir, 'home'));
  await mounts.get('x', target, () => fuse(dir));
  const helper = fuseHelper(target)!;
  const pid = Number(helper.split('.')[0]);
  process.kill(pid, 'SIGKILL');
  t.true(sys.waitForExit(pid, 10_000));
  t.true(isStaleFuse(target));
  t.throws(() => fs.readdirSync(target), { code: 'ENOTCONN' });
  await mounts.get('x', target, () => fuse(dir));
  t.false(isStaleFuse(target));
  t.not(fuseHelper(target), helper);
  t.is(fs.readFileSync(path.join(target, 'b'), 'utf8'), 'from l2');
  await mounts.put('x', target);
  t.false(isMountPoint(target));
});

when(fuseMissing === null, fuseMissing ?? '', { serial: true })('fuse: a stale helper record does not make get() unmount a foreign FUSE mount made since at the target', async (t) => {
  const dir = scratch(t);
  const target = path.join(dir, 'merged');
  // strata's helper is killed and its dead mount removed by hand: the record stays behind
  mount(target, fuse(dir));
  const pid = Number(fuseHelper(target)!.split('.')[0]);
  process.kill(pid, 'SIGKILL');
  t.true(sys.waitForExit(pid, 10_000));
  execFileSync('fusermount3', ['-u', target]);
  t.is(fs.readdirSync(process.env.STRATA_FUSE_DIR!).length, 1, 'the helper record is left');
  // someone else's FUSE mount at the same path (fuse-overlayfs run directly, not through strata)
  fs.writeFileSync(path.join(dir, 'l1/foreign'), 'theirs');
  execFileSync('fuse-overlayfs', ['-o', `lowerdir=${dir}/l1`, target]);
  const theirs = mountAt(target)!;
  t.false(isStaleFuse(target), 'a mount the record does not name is not stale');
  const mounts = new LayerMounts(path.join(dir, 'home'));
  await mounts.get('x', target, () => fuse(dir));
  t.is(mountAt(target)?.id, theirs.id, 'the foreign mount is still the one at the target');
  t.is(fs.readFileSync(path.join(target, 'foreign'), 'utf8'), 'theirs');
  await mounts.put('x', target);
  t.is(mountAt(target)?.id, theirs.id, 'and survives the put');
  execFileSync('fusermount3', ['-u', target]);
});

when(fuseMissing === null, fuseMissing ?? '', { serial: true })('fuse: the record of a mount detached behind strata\'s back is pruned at the next FUSE mount, a live one kept', (t) => {
  const dir = scratch(t);
  const run = process.env.STRATA_FUSE_DIR!;
  const first = path.join(dir, 'merged');
  mount(first, fuse(dir));
  const pid = Number(fuseHelper(first)!.split('.')[0]);
  sys.umount2(first, sys.MNT_DETACH); // not through unmount(): as a teardown or `umount -l` would
  t.true(sys.waitForExit(pid, 10_000), 'its helper exits with its connection');
  t.is(fs.readdirSync(run).length, 1, 'the record is left behind');
  const second = path.join(dir, 'merged2');
  mount(second, fuse(dir));
  const third = path.join(dir, 'merged3');
  mount(third, fuse(dir));
  t.is(fs.readdirSync(run).length, 2, 'the dead record is gone; both live ones are kept');
  t.not(fuseHelper(second), null);
  t.not(fuseHelper(third), null);
  unmount(second);
  unmount(third);
  t.deepEqual(fs.readdirSync(run), []);
});

when(fuseMissing === null, fuseMissing ?? '', { serial: true })('fuse: a helper record forged to name another live process (PID 1) names no helper, and unmount neither waits on nor touches it', (t) => {
  const dir = scratch(t);
  const target = path.join(dir, 'merged');
  mount(target, fuse(dir));
  const real = fuseHelper(target)!;
  const run = process.env.STRATA_FUSE_DIR!;
  const [name] = fs.readdirSync(run);
  const file = path.join(run, name!);
  const rec = JSON.parse(fs.readFileSync(file, 'utf8')) as { helper: string };
  rec.helper = tagOf(1)!;
  fs.writeFileSync(file, JSON.stringify(rec));
  t.is(fuseHelper(target), null, 'PID 1 does not serve this mount');
  t.false(isStaleFuse(target));
  unmount(target);
  t.false(isMountPoint(target));
  t.true(isAlive(tagOf(1)!));
  t.true(sys.waitForExit(Number(real.split('.')[0]), 10_000), 'the real helper exits after its unmount');
});

when(fuseMissing === null, fuseMissing ?? '', { serial: true })('fuse: a helper that cannot mount fails with what it said, leaving no target, record or process', (t) => {
  const dir = scratch(t);
  const target = path.join(dir, 'merged');
  const e = t.throws(() => mount(target, { kind: 'fuse', program: 'fuse-overlayfs', options: `lowerdir=${dir}/missing,upperdir=${dir}/upper,workdir=${dir}/work` }));
  t.regex(e?.message ?? '', new RegExp(`^fuse-overlayfs ${target}: .*missing`));
  t.false(fs.existsSync(target));
  t.deepEqual(fs.readdirSync(process.env.STRATA_FUSE_DIR!), [], 'no record and no stderr file left');
});
