// One migration proven by the real daemon, as a test file registers it
// (migrate-<from>-<to>.test.ts calls migrateScenario):
//
//   1. dockerd on `from` builds the sample store (test/oracle/store.ts) plus an untagged image;
//      btrfs (as source or target): the daemon dir is a loop-mounted btrfs of its own;
//   2. captureBefore (migrate-proof.ts), daemon stopped;
//   3. `strata migrate --root <data-root> --to <to>` (the CLI, as a user runs it);
//   4. dockerd with --storage-driver <to> on the same data-root: checkAfter must find no difference,
//      and the source driver's home is still there (no --delete-source).
// Everything (daemons, the loop mount, the scratch dir) is removed afterwards, also on failure.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { busyboxAvailable } from '../../fixtures/busybox-rootfs.ts';
import { loopDevicesOf, loopMount, type LoopMount } from '../../sys/loop.ts';
import { mountsUnder } from '../../sys/mountinfo.ts';
import { hasTool, isRoot, when } from '../helpers/require.ts';
import { strata } from '../helpers/strata-cli.ts';
import { tempDir } from '../helpers/tar.ts';
import { dockerdAvailable, startDockerd, type Dockerd } from './dockerd.ts';
import { captureBefore, checkAfter, type Capture } from './migrate-proof.ts';
import { runnableStoreSpec, writeRunnableStore } from './migrate-stores.ts';
import { addUntaggedImage, buildSampleStore } from './store.ts';

const kernelFs = (name: string) => fs.readFileSync('/proc/filesystems', 'utf8').split('\n').some((l) => l.split('\t')[1] === name);

/** What this host lacks to run dockerd on each of `drivers` (empty: all there). */
export function missingFor(drivers: string[]): string[] {
  return [
    ...(isRoot ? [] : ['root (run the tests as root)']),
    ...(dockerdAvailable() ? [] : ['dockerd (apt-get install docker.io)']),
    ...(busyboxAvailable() ? [] : ['busybox (apt-get install busybox-static)']),
    ...(drivers.some((d) => d === 'overlay2' || d === 'overlay') && !kernelFs('overlay') ? ['overlay in the kernel (modprobe overlay)'] : []),
    ...(drivers.includes('btrfs') && !(hasTool('mkfs.btrfs') && kernelFs('btrfs')) ? ['btrfs (btrfs-progs, modprobe btrfs)'] : []),
    ...(drivers.includes('fuse-overlayfs') && !(hasTool('fuse-overlayfs') && fs.existsSync('/dev/fuse')) ? ['fuse-overlayfs and /dev/fuse'] : []),
  ];
}

/** A scratch dir for one daemon (short: unix socket paths), on its own loop btrfs when asked. */
export class DaemonDir {
  readonly scratch = tempDir('strata-mig-');
  readonly dir: string;
  loop: LoopMount | null = null;
  private daemons: Dockerd[] = [];

  constructor(onBtrfs: boolean) {
    this.dir = this.scratch.dir;
    if (!onBtrfs) return;
    const img = path.join(this.scratch.dir, 'btrfs.img');
    fs.closeSync(fs.openSync(img, 'w'));
    fs.truncateSync(img, 2 * 1024 ** 3);
    execFileSync('mkfs.btrfs', ['-q', '-f', img], { stdio: 'pipe' });
    this.dir = path.join(this.scratch.dir, 'd');
    fs.mkdirSync(this.dir);
    this.loop = loopMount(img, this.dir, { type: 'btrfs' });
  }

  get dataRoot(): string {
    return path.join(this.dir, 'root');
  }

  /** A daemon on this dir's data-root, stopped by cleanup() if the test does not. */
  async start(driver: string): Promise<Dockerd> {
    const d = await startDockerd({ driver, dir: this.dir });
    this.daemons.push(d);
    return d;
  }

  /** Stop every daemon, unmount the btrfs, remove the scratch dir; what was left behind (should be nothing). */
  async cleanup(): Promise<string[]> {
    const left: string[] = [];
    for (const d of this.daemons) {
      const r = await d.stop();
      if (r.leftHostPaths.length) left.push(`dockerd left ${r.leftHostPaths.join(' ')}`);
    }
    const image = this.loop?.image;
    this.loop?.unmount();
    if (image && loopDevicesOf(image).length) left.push(`loop devices still on ${image}`);
    const mounts = mountsUnder(this.scratch.dir).map((m) => m.mountPoint);
    if (mounts.length) left.push(`still mounted: ${mounts.join(' ')}`);
    else this.scratch.cleanup();
    return left;
  }
}

/** The sample store, its untagged image and the capture of a daemon on `driver`, stopped afterwards. */
export async function buildAndCapture(dd: DaemonDir, driver: string): Promise<{ before: Capture; untagged: string }> {
  const d = await dd.start(driver);
  try {
    await buildSampleStore(d);
    const untagged = await addUntaggedImage(d);
    return { before: await captureBefore(d), untagged };
  } finally {
    await d.stop();
  }
}

/** `strata migrate` through the CLI; throws with its stderr unless it exits 0. */
export function migrateCli(root: string, to: string): string {
  const r = strata(['migrate', '--root', root, '--to', to], { timeoutMs: 240_000 });
  if (r.code !== 0) throw new Error(`strata migrate --root ${root} --to ${to}: exit ${r.code}\n${r.stderr.trim()}`);
  return r.stdout;
}

/** Register the scenario test for `from` → `to` (one per test file, so ava runs them in parallel). */
export function migrateScenario(from: string, to: string): void {
  const missing = missingFor([from, to]);
  const onBtrfs = from === 'btrfs' || to === 'btrfs';
  when(missing.length === 0, missing.join(', '))(`dockerd ${from} store → strata migrate --to ${to} → dockerd ${to}: images, tags, DiffIDs, runs, the container and its diff unchanged`, async (t) => {
    const dd = new DaemonDir(onBtrfs);
    t.teardown(async () => {
      const left = await dd.cleanup();
      if (left.length) throw new Error(`left behind: ${left.join('; ')}`);
    });
    const t0 = Date.now();
    const { before } = await buildAndCapture(dd, from);
    const tBuilt = Date.now();
    const out = migrateCli(dd.dataRoot, to);
    const tMigrated = Date.now();
    t.log(`migrate: ${out.trim().split('\n').slice(-3).join(' | ')}`);
    t.true(fs.existsSync(path.join(dd.dataRoot, from)), `the source home ${from}/ is kept (no --delete-source)`);
    const d2 = await dd.start(to);
    const notes: string[] = [];
    const diffs = await checkAfter(d2, before, notes);
    await d2.stop();
    if (notes.length) t.log(`driver-dependent (${notes.length}): ${notes[0]}`);
    t.log(`build+capture ${tBuilt - t0} ms, migrate ${tMigrated - tBuilt} ms, check ${Date.now() - tMigrated} ms; ` +
      `${before.imageLs.length} image rows, ${before.saved.length} images run, ${before.containers.length} container(s)`);
    t.deepEqual(diffs, [], `dockerd ${to} on the migrated root sees the store dockerd ${from} had`);
  });
}

/**
 * Register the test for a source dockerd cannot run here: runnableStoreSpec is written by strata's
 * vfs driver (which dockerd runs: the capture) and by `writeSource` (the store migrated to `to`;
 * `scratch`: the dir holding its root, e.g. to share with the VM).
 */
export function strataSourceScenario(from: string, to: string, writeSource: (root: string, scratch: string) => Promise<void>, extraMissing: string[] = []): void {
  const missing = [...missingFor(['vfs', to]), ...extraMissing];
  when(missing.length === 0, missing.join(', '))(`strata-written ${from} store → strata migrate --to ${to} → dockerd ${to} sees what dockerd vfs saw on the same spec written on vfs`, async (t) => {
    const ref = new DaemonDir(false);
    const src = new DaemonDir(to === 'btrfs');
    t.teardown(async () => {
      const left = [...(await ref.cleanup()), ...(await src.cleanup())];
      if (left.length) throw new Error(`left behind: ${left.join('; ')}`);
    });
    const spec = runnableStoreSpec();
    await writeRunnableStore(ref.dataRoot, 'vfs', spec);
    const d = await ref.start('vfs');
    const before = await captureBefore(d);
    await d.stop();
    t.true(before.saved.length === 3 && before.containers.length === 1, 'dockerd vfs lists the three images and the container');
    await writeSource(src.dataRoot, src.scratch.dir);
    // the source holds the images dockerd saw on the vfs copy (strata reads it offline, read-only)
    const listed = strata(['images', '-a', '--root', src.dataRoot, '--json']);
    t.is(listed.code, 0, listed.stderr);
    const ids = (rows: { id: string }[]) => [...new Set(rows.map((r) => r.id.replace(/^sha256:/, '').slice(0, 12)))].sort();
    t.deepEqual(ids(JSON.parse(listed.stdout) as { id: string }[]), ids(before.imageLs), `strata images -a on the ${from} source`);
    const t0 = Date.now();
    migrateCli(src.dataRoot, to);
    t.log(`migrate ${Date.now() - t0} ms`);
    t.true(fs.existsSync(path.join(src.dataRoot, from)), `the source home ${from}/ is kept`);
    const d2 = await src.start(to);
    const notes: string[] = [];
    const diffs = await checkAfter(d2, before, notes);
    await d2.stop();
    if (notes.length) t.log(`driver-dependent (${notes.length}): ${notes[0]}`);
    t.deepEqual(diffs, [], `dockerd ${to} on the migrated ${from} root sees the store dockerd vfs had`);
  });
}
