// devicemapper opened read-only: the pool's files are read, never activated,
// so this works on a kernel without device-mapper. The pool metadata is
// decoded once per open (thin-pool.ts); get() rebuilds the layer's thin device
// as a sparse image outside the home — only its mapped extents copied — and
// loop-mounts it read-only through the Mounter, counted like any mount; the
// last put() unmounts it and removes the image.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { listSorted } from '../../sys/read-only-files.ts';
import { LayerNotFoundError, validateId, type Driver, type LayerInfo, type ProtoDriver } from '../driver.ts';
import { LayerMounts, unmount } from '../mounter.ts';
import { removeIfEmpty, runStateDir } from '../refcount.ts';
import { NaiveDiffDriver } from '../naive.ts';
import { readOnlyDriver } from '../read-only.ts';
import { mountAt } from '../../sys/mountinfo.ts';
import * as sys from '../../sys/syscalls.ts';
import { SET_RECORDS } from './deviceset.ts';
import { ThinMetadataError, extractDevice, fsTypeOf, readThinMetadata, type DockerDevInfo, type ThinPool, readDevInfo } from './thin-pool.ts';

const NAME = 'devicemapper';

/** Where rebuilt images and their mount points live: runtime state, outside the home. */
export function runDir(home: string): string {
  return runStateDir(NAME, home);
}

export function openRebuilt(home: string, d = new RebuiltDriver(home)): Driver {
  return readOnlyDriver(new NaiveDiffDriver(d), { getRefused: null, layerDir: () => path.join(home, 'metadata') });
}

const opened = new Map<string, { key: string; driver: RebuiltDriver }>();

/**
 * The read-only driver of `home`, one per process while the pool metadata
 * file is unchanged: every reader of a run (inspect, verify, diff) shares its
 * one decode of the pool.
 */
export function rebuiltFor(home: string): RebuiltDriver {
  const st = fs.statSync(path.join(home, 'devicemapper', 'metadata'), { bigint: true });
  const key = `${st.ino}:${st.size}:${st.mtimeNs}`;
  const hit = opened.get(home);
  if (hit?.key === key) return hit.driver;
  const driver = new RebuiltDriver(home);
  opened.set(home, { key, driver });
  return driver;
}

export class RebuiltDriver implements ProtoDriver {
  readonly name = NAME;
  private readonly mounts: LayerMounts;
  private pool: Promise<ThinPool> | null = null;
  private reclaimed: Promise<void> | null = null;

  constructor(readonly home: string) {
    this.mounts = new LayerMounts(runDir(home));
  }

  private get root(): string {
    return path.dirname(this.home);
  }
  private info(id: string): DockerDevInfo | null {
    if (!fs.existsSync(path.join(this.home, 'metadata', validateId(id)))) return null;
    return readDevInfo(this.root, id);
  }

  /** One decode of the pool for every device of this open. */
  private decoded(): Promise<ThinPool> {
    this.pool ??= readThinMetadata(path.join(this.home, 'devicemapper', 'metadata'));
    return this.pool;
  }

  async get(id: string): Promise<string> {
    const rootfs = path.join(await this.mountDevice(id), 'rootfs');
    if (!fs.statSync(rootfs, { throwIfNoEntry: false })?.isDirectory()) {
      await this.put(id);
      throw new Error(`devmapper: thin device of ${id} has no rootfs/ directory`);
    }
    return rootfs;
  }

  /** Rebuild and mount the device of `id` (counted: put() releases it); returns the mount point, the file system's root. */
  async mountDevice(id: string): Promise<string> {
    const info = this.info(id);
    if (!info || SET_RECORDS.includes(id)) throw new LayerNotFoundError(NAME, id, path.join(this.home, 'metadata', id));
    if (info.deleted) throw new Error(`devmapper: Can't mount device ${id} as it has been marked for deferred deletion`);
    const work = path.join(runDir(this.home), id);
    const mnt = path.join(work, 'mnt');
    const image = path.join(work, 'device.img');
    const pool = await this.decoded();
    // a holder killed with a device mounted (SIGKILL, a crash) left a loop mount and its image: ours to end
    this.reclaimed ??= this.mounts.refs.reclaim((_id, target) => this.unmountAndRemove(target));
    await this.reclaimed;
    const device = `devmapper: thin device ${info.device_id} (metadata/${id})`;
    try {
      await this.mounts.get(id, mnt, () => {
        const dev = pool.devices.get(info.device_id);
        if (!dev) throw new ThinMetadataError(path.join(this.home, 'devicemapper', 'metadata'), `has no thin device ${info.device_id} (named by metadata/${id})`);
        fs.rmSync(work, { recursive: true, force: true }); // a dead holder's image
        fs.mkdirSync(work, { recursive: true, mode: 0o700 });
        try {
          extractDevice(path.join(this.home, 'devicemapper', 'data'), dev.mappings, pool.superblock.dataBlockSize, image, info.size || undefined);
        } catch (e) {
          throw new Error(`${device}: ${(e as Error).message}`);
        }
        const fstype = fsTypeOf(image);
        if (!fstype) throw new Error(`${device} holds no ext4 or xfs file system`);
        // noload/norecovery: a device cut from a pool in use has a dirty journal; replaying it would write
        return { kind: 'loop', image, fstype, data: fstype === 'ext4' ? 'noload' : 'norecovery,nouuid' };
      });
    } catch (e) {
      // no image of a failed rebuild stays behind (it holds the device's mapped data)
      if (!mountAt(mnt)) this.removeRunDirs(work);
      if (e instanceof sys.SysError) throw new Error(`${device}, rebuilt from the pool, does not mount: ${e.message}`);
      throw e;
    }
    return mnt;
  }

  /** Reclaim's unmount: the mount, its loop device, and the image with its dir. */
  private unmountAndRemove(target: string): void {
    unmount(target);
    this.removeRunDirs(path.dirname(target));
  }

  /** `work` (an id's image and mount point), then the home's run dir once it is empty. */
  private removeRunDirs(work: string): void {
    fs.rmSync(work, { recursive: true, force: true });
    removeIfEmpty(runDir(this.home)); // the last device of this home: its run dir goes too
  }

  async put(id: string): Promise<void> {
    const work = path.join(runDir(this.home), validateId(id));
    await this.mounts.put(id, path.join(work, 'mnt'));
    if (mountAt(path.join(work, 'mnt'))) return;
    this.removeRunDirs(work);
  }

  exists(id: string): boolean {
    const info = this.info(id);
    return info !== null && !info.deleted && !SET_RECORDS.includes(id);
  }

  status(): [string, string][] {
    return [['Data loop file', path.join(this.home, 'devicemapper', 'data')], ['Metadata loop file', path.join(this.home, 'devicemapper', 'metadata')]];
  }

  metadata(id: string): Record<string, string> {
    const info = this.info(id);
    if (!info) throw new LayerNotFoundError(NAME, id, path.join(this.home, 'metadata', id));
    return { DeviceId: String(info.device_id), DeviceSize: String(info.size) };
  }

  async cleanup(): Promise<void> {
    await this.mounts.cleanup();
    fs.rmSync(runDir(this.home), { recursive: true, force: true });
  }

  layers(): LayerInfo[] {
    return listSorted(path.join(this.home, 'metadata')).filter((n) => n !== 'base' && !SET_RECORDS.includes(n)).map((id) => ({ id }));
  }

  createReadWrite(): Promise<void> { throw new Error('unreachable: refused by readOnlyDriver'); }
  create(): Promise<void> { throw new Error('unreachable: refused by readOnlyDriver'); }
  remove(): Promise<void> { throw new Error('unreachable: refused by readOnlyDriver'); }
}
