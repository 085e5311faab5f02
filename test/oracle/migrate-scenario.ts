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
import test from 'ava';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { busyboxAvailable, busyboxRootfsEntries } from '../../fixtures/busybox-rootfs.ts';
import type { FixtureEntry } from '../../fixtures/layer-tar.ts';
import { writeModernStore, type StoreSpec } from '../../fixtures/modern-store.ts';
import { loopDevicesOf, loopMount, type LoopMount } from '../../sys/loop.ts';
import { mountsUnder } from '../../sys/mountinfo.ts';
import { hasTool, isRoot, when } from '../helpers/require.ts';
import { strata } from '../helpers/strata-cli.ts';
import { tempDir } from '../helpers/tar.ts';
import { dockerdAvailable, startDockerd, type Dockerd } from './dockerd.ts';
import { captureBefore, checkAfter, type Capture } from './migrate-proof.ts';
import { addUntaggedImage, buildSampleStore } from './store.ts';

const kernelFs = (name: string) => fs.readFileSync('/proc/filesystems', 'utf8').split('\n').some((l) => l.split('\t')[1] === name);

/** What this host lacks to run dockerd on each of `drivers` (empty: all there). */
export function missingFor(drivers: string[]): string[] {
  return [
    ...(isRoot ? [] : ['root (run the tests as root)']),
    ...(dockerdAvailable() ? [] : ['dockerd (apt-get install docker.io)']),
    ...(busyboxAvailable() ? [] : ['busybox (apt-get install busybox-static)']),
    ...(drivers.includes('overlay2') && !kernelFs('overlay') ? ['overlay in the kernel (modprobe overlay)'] : []),
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
    const diffs = await checkAfter(d2, before);
    await d2.stop();
    t.log(`build+capture ${tBuilt - t0} ms, migrate ${tMigrated - tBuilt} ms, check ${Date.now() - tMigrated} ms; ` +
      `${before.imageLs.length} image rows, ${before.saved.length} images run, ${before.containers.length} container(s)`);
    t.deepEqual(diffs, [], `dockerd ${to} on the migrated root sees the store dockerd ${from} had`);
  });
}

// ---- stores strata writes (sources dockerd cannot run here) -------------------------------

const T = new Date('2024-01-02T03:04:05Z');

/** The busybox rootfs as fixture entries (its one file capability xattr is not carried: FixtureEntry has no pax). */
function busyboxLayer(): FixtureEntry[] {
  return busyboxRootfsEntries().map(({ header: h, body }) => ({
    name: h.name, type: h.type as FixtureEntry['type'], mode: h.mode, uid: h.uid, gid: h.gid, mtime: h.mtime,
    ...(h.linkname ? { linkname: h.linkname } : {}), ...(body ? { content: body } : {}),
  }));
}

/**
 * The sample store's shape as a strata store spec (fixtures/modern-store.ts): a busybox base,
 * a build on it with a new dir, a whiteout and an opaque dir, an untagged build, and a stopped
 * container that adds, appends to and deletes files. Same spec, same ids on every driver.
 */
export function runnableStoreSpec(): StoreSpec {
  return {
    images: [
      { name: 'base', tags: ['strata-base:latest'], layers: [{ createdBy: 'ADD busybox rootfs', entries: busyboxLayer() }], created: '2024-01-02T03:04:05Z' },
      {
        name: 'app', tags: ['strata-app:1', 'strata-app:latest'], from: 'base', created: '2024-01-03T03:04:05Z',
        layers: [
          { createdBy: 'ADD app/ /srv/app/', entries: [{ name: 'srv/', type: 'directory', mtime: T }, { name: 'srv/app/', type: 'directory', mtime: T }, { name: 'srv/app/a.txt', content: 'app a\n', mtime: T }] },
          { createdBy: 'RUN rm /data/delme.txt', entries: [{ name: 'data/', type: 'directory', mtime: T }, { name: 'data/.wh.delme.txt', mtime: T }] },
          {
            createdBy: 'RUN rm -rf /opaq && mkdir /opaq && echo fresh > /opaq/fresh.txt', entries: [
              { name: 'opaq/', type: 'directory', mtime: T }, { name: 'opaq/.wh..wh..opq', mtime: T }, { name: 'opaq/fresh.txt', content: 'fresh\n', mtime: T },
            ],
          },
        ],
      },
      { name: 'untagged', tags: [], from: 'base', created: '2024-01-04T03:04:05Z', layers: [{ createdBy: 'ADD untagged.txt /', entries: [{ name: 'untagged.txt', content: 'built without a tag\n', mtime: T }] }] },
    ],
    containers: [{
      name: 'c1', image: 'app', created: '2024-01-05T03:04:05.000000001Z',
      change: (rootfs) => {
        fs.writeFileSync(path.join(rootfs, 'run-added.txt'), 'run-added\n');
        fs.mkdirSync(path.join(rootfs, 'newdir/sub'), { recursive: true });
        fs.writeFileSync(path.join(rootfs, 'newdir/sub/f.txt'), 'x\n');
        fs.appendFileSync(path.join(rootfs, 'etc/base.txt'), 'appended\n');
        fs.unlinkSync(path.join(rootfs, 'data/keep/k.txt'));
        fs.rmSync(path.join(rootfs, 'srv/app'), { recursive: true });
      },
    }],
  };
}

/** An empty network state, as dockerd 20.10 writes for a `--network none` container that has stopped. */
const STOPPED_NETWORK_SETTINGS = {
  Bridge: '', SandboxID: '', HairpinMode: false, LinkLocalIPv6Address: '', LinkLocalIPv6PrefixLen: 0, Networks: {}, Service: null,
  Ports: null, SandboxKey: '', SecondaryIPAddresses: null, SecondaryIPv6Addresses: null, IsAnonymousEndpoint: false, HasSwarmEndpoint: false,
};

/**
 * writeModernStore, then give each container the NetworkSettings dockerd itself would have written:
 * the fixture leaves it null, and dockerd 20.10 then panics in `docker container inspect` (a nil
 * dereference in its inspect handler; the client hangs). Done the same on every driver's copy.
 */
export async function writeRunnableStore(root: string, driver: string, spec: StoreSpec): Promise<void> {
  const info = await writeModernStore(root, driver, spec);
  for (const c of info.containers.values()) {
    const file = path.join(root, 'containers', c.id, 'config.v2.json');
    const config = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    config.NetworkSettings ??= STOPPED_NETWORK_SETTINGS;
    fs.writeFileSync(file, JSON.stringify(config));
  }
}

/**
 * Register the test for a source dockerd cannot run here: the same spec is written by strata's
 * vfs driver (which dockerd runs: the capture) and by `writeSource` (the store migrated to `to`).
 */
export function strataSourceScenario(from: string, to: string, writeSource: (root: string, spec: StoreSpec) => Promise<void>, extraMissing: string[] = []): void {
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
    await writeSource(src.dataRoot, spec);
    const t0 = Date.now();
    migrateCli(src.dataRoot, to);
    t.log(`migrate ${Date.now() - t0} ms`);
    t.true(fs.existsSync(path.join(src.dataRoot, from)), `the source home ${from}/ is kept`);
    const d2 = await src.start(to);
    const diffs = await checkAfter(d2, before);
    await d2.stop();
    t.deepEqual(diffs, [], `dockerd ${to} on the migrated ${from} root sees the store dockerd vfs had`);
  });
}
