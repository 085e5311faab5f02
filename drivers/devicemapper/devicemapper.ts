// devicemapper: every layer a thin snapshot of its parent's device in one
// dm-thin pool, each holding a whole file system (moby
// daemon/graphdriver/devmapper). Diffs are naive (drivers/naive.ts): the
// devices know blocks, not files. deviceset.ts holds the pool and Docker's
// records; dm.ts the device-mapper calls.
//
// Get mounts the layer's device at <home>/mnt/<id> and returns
// <home>/mnt/<id>/rootfs (the file system's root holds rootfs/ and the `id`
// file, as moby); Put unmounts and deactivates it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  InvalidParameterError, LayerNotFoundError, errNotSupported, mustBeExistingHome, parentOrNull, parseStorageOptKeyValue, ramInBytes,
  validateId, type CreateOpts, type Driver, type InitOpts, type LayerInfo, type ProtoDriver,
} from '../driver.ts';
import { LayerMounts, mount, unmount } from '../mounter.ts';
import { NaiveDiffDriver } from '../naive.ts';
import { mountAt } from '../../sys/mountinfo.ts';
import * as dm from './dm.ts';
import { DeviceSet, growFs, type DeviceSetOptions } from './deviceset.ts';
import { openRebuilt } from './read-only.ts';
import { kernelHasDeviceMapper } from './thin-pool.ts';

export const NAME = 'devicemapper';

const GiB = 1024 ** 3;

/** moby's defaults (deviceset.go NewDeviceSet) and its dm.* options. */
export function parseOptions(options: string[]): DeviceSetOptions {
  const o: DeviceSetOptions = {
    baseSize: 10 * GiB, loopDataSize: 100 * GiB, loopMetadataSize: 2 * GiB, fs: '', blockSize: 64 * 1024, minFreeSpacePercent: 10, thinPoolDev: '',
  };
  for (const opt of options) {
    const [key, val] = parseStorageOptKeyValue(opt);
    switch (key) {
      case 'dm.basesize': o.baseSize = ramInBytes(val); break;
      case 'dm.loopdatasize': o.loopDataSize = ramInBytes(val); break;
      case 'dm.loopmetadatasize': o.loopMetadataSize = ramInBytes(val); break;
      case 'dm.fs':
        if (val !== 'ext4' && val !== 'xfs') throw new InvalidParameterError(`devmapper: Unsupported filesystem ${val}`);
        o.fs = val;
        break;
      case 'dm.blocksize': {
        const b = ramInBytes(val);
        // moby: a multiple of 64K between 64K and 1G (the thin-pool target's rule)
        if (b < 64 * 1024 || b > GiB || b % (64 * 1024) !== 0) throw new InvalidParameterError(`devmapper: Invalid dm.blocksize ${val}: must be a multiple of 64K between 64K and 1G`);
        o.blockSize = b;
        break;
      }
      case 'dm.min_free_space': {
        const m = /^(\d+)%$/.exec(val);
        if (!m || Number(m[1]) > 99) throw new InvalidParameterError(`devmapper: Invalid value ${val} for option dm.min_free_space`);
        o.minFreeSpacePercent = Number(m[1]);
        break;
      }
      case 'dm.thinpooldev': o.thinPoolDev = val.replace(/^\/dev\/mapper\//, ''); break;
      default: throw new InvalidParameterError(`devmapper: Unknown option ${key}`);
    }
  }
  return o;
}

/**
 * moby Init. `read-only` serves a home without touching the pool: on a kernel
 * without device-mapper every get() mounts a device rebuilt from the pool's
 * files in userspace (read-only.ts).
 */
export async function init(home: string, options: string[], opts: InitOpts = {}): Promise<Driver> {
  const o = parseOptions(options);
  if (opts.mode === 'read-only') {
    mustBeExistingHome(NAME, home);
    return openRebuilt(home);
  }
  loadDeviceMapper();
  if (!kernelHasDeviceMapper()) throw errNotSupported('no device-mapper in this kernel (/sys/class/misc/device-mapper)');
  if (opts.mode === 'manage') mustBeExistingHome(NAME, home);
  else fs.mkdirSync(home, { recursive: true, mode: 0o700 });
  const set = new DeviceSet(home, o);
  set.open();
  try {
    set.setupBase();
  } catch (e) {
    set.close();
    throw e;
  }
  const d = new DevmapperDriver(home, set);
  await d.mounts.reclaim();
  return new NaiveDiffDriver(d);
}

/** Opening /dev/mapper/control loads dm-mod where the node is static and the module not yet in (what udev-less hosts and the VM have). */
function loadDeviceMapper(): void {
  try {
    fs.closeSync(fs.openSync('/dev/mapper/control', 'r'));
  } catch {
    // no node or no module: kernelHasDeviceMapper says so
  }
}

export class DevmapperDriver implements ProtoDriver {
  readonly name = NAME;
  readonly mounts: LayerMounts;

  constructor(readonly home: string, readonly set: DeviceSet) {
    this.mounts = new LayerMounts(home);
  }

  private mnt(id: string): string {
    return path.join(this.home, 'mnt', validateId(id));
  }

  async createReadWrite(id: string, parent: string | null, opts?: CreateOpts): Promise<void> {
    this.add(id, parentOrNull(parent), opts);
  }

  async create(id: string, parent: string | null, opts?: CreateOpts): Promise<void> {
    this.add(id, parentOrNull(parent), opts);
  }

  /** moby AddDevice: a snapshot of the parent (or the base device), grown to `size` when asked. */
  private add(id: string, parent: string | null, opts?: CreateOpts): void {
    validateId(id);
    const originHash = parent ?? '';
    const origin = this.set.lookup(originHash);
    if (!origin) throw new LayerNotFoundError(NAME, parent ?? 'base', `devmapper: Error adding device for '${id}': Unknown device ${originHash}`);
    if (this.set.lookup(id)) throw new Error(`devmapper: device ${id} already exists`);
    let size = 0;
    for (const [key, val] of Object.entries(opts?.storageOpt ?? {})) {
      if (key.toLowerCase() === 'size') size = ramInBytes(val);
      else throw new InvalidParameterError(`Unknown option ${key}`);
    }
    if (size === 0) size = origin.size;
    if (size < origin.size) throw new InvalidParameterError(`devmapper: Container size ${size} cannot be smaller than ${origin.size}`);
    const info = this.set.snapshot(id, originHash, size);
    if (size > origin.size) this.grow(id);
    info.initialized = true;
    this.set.saveRecord(id, info);
  }

  /** moby growFS: mount the new, larger device once and grow its file system to it. */
  private grow(id: string): void {
    const info = this.set.lookup(id)!;
    const dev = this.set.activate(id, info);
    const mp = path.join(this.home, 'mnt', `${id}-grow`);
    try {
      mount(mp, { kind: 'kernel', fstype: this.set.filesystem, source: dev, data: this.set.filesystem === 'xfs' ? 'nouuid' : '' });
      try {
        growFs(this.set.filesystem, dev, mp);
      } finally {
        unmount(mp);
      }
    } finally {
      this.set.deactivate(id);
    }
  }

  /** moby Remove: unmount, deactivate, delete from the pool; an unknown id is not an error. */
  async remove(id: string): Promise<void> {
    const info = this.set.lookup(validateId(id));
    if (!info) return;
    await this.mounts.forget(id);
    this.set.deleteDevice(id, info);
    fs.rmSync(this.mnt(id), { recursive: true, force: true });
  }

  async get(id: string): Promise<string> {
    const info = this.set.lookup(validateId(id));
    if (!info) throw new LayerNotFoundError(NAME, id, this.set.recordFile(id));
    if (info.deleted) throw new Error(`devmapper: Can't mount device ${id} as it has been marked for deferred deletion`);
    const mp = this.mnt(id);
    fs.mkdirSync(path.dirname(mp), { recursive: true, mode: 0o755 });
    fs.mkdirSync(mp, { recursive: true, mode: 0o755 });
    await this.mounts.get(id, mp, () => {
      const dev = this.set.activate(id, info);
      // xfs needs nouuid: every snapshot has its origin's file system uuid
      return { kind: 'kernel', fstype: this.set.filesystem, source: dev, data: this.set.filesystem === 'xfs' ? 'nouuid' : '' };
    });
    const rootfs = path.join(mp, 'rootfs');
    try {
      fs.mkdirSync(rootfs, { recursive: true, mode: 0o755 });
      // moby: an "id" file to help reconstruct the layer's name later
      const idFile = path.join(mp, 'id');
      if (!fs.existsSync(idFile)) fs.writeFileSync(idFile, id, { mode: 0o600 });
    } catch (e) {
      await this.put(id);
      throw e;
    }
    return rootfs;
  }

  async persist(id: string): Promise<void> {
    await this.mounts.persist(id, this.mnt(id));
  }

  async put(id: string): Promise<void> {
    const mp = this.mnt(id);
    await this.mounts.put(id, mp);
    if (!mountAt(mp)) this.set.deactivate(id);
  }

  exists(id: string): boolean {
    return this.set.lookup(validateId(id)) !== null;
  }

  /** moby Status, keys in its order. */
  status(): [string, string][] {
    const s = dm.poolStatus(this.set.poolName);
    const meta = 4096;
    const blk = this.set.opts.blockSize;
    const loop = path.join(this.home, 'devicemapper');
    const free = (used: number, total: number) => total - used;
    const out: [string, string][] = [
      ['Pool Name', this.set.poolName],
      ['Pool Blocksize', humanSize(blk)],
      ['Base Device Size', humanSize(this.set.lookup('')?.size ?? 0)],
      ['Backing Filesystem', this.set.filesystem],
      ['Udev Sync Supported', 'false'],
    ];
    if (!this.set.opts.thinPoolDev) out.push(['Data loop file', path.join(loop, 'data')], ['Metadata loop file', path.join(loop, 'metadata')]);
    out.push(
      ['Data Space Used', humanSize(s.dataUsed * blk)],
      ['Data Space Total', humanSize(s.dataTotal * blk)],
      ['Data Space Available', humanSize(free(s.dataUsed, s.dataTotal) * blk)],
      ['Metadata Space Used', humanSize(s.metadataUsed * meta)],
      ['Metadata Space Total', humanSize(s.metadataTotal * meta)],
      ['Metadata Space Available', humanSize(free(s.metadataUsed, s.metadataTotal) * meta)],
      ['Thin Pool Minimum Free Space', humanSize(Math.floor((s.dataTotal * this.set.opts.minFreeSpacePercent) / 100) * blk)],
      ['Deferred Removal Enabled', 'false'],
      ['Deferred Deletion Enabled', 'false'],
      ['Deferred Deleted Device Count', '0'],
      ['Library Version', dm.libraryVersion()],
    );
    return out;
  }

  /** moby GetMetadata: DeviceId, DeviceSize, DeviceName. */
  metadata(id: string): Record<string, string> {
    const info = this.set.lookup(validateId(id));
    if (!info) throw new LayerNotFoundError(NAME, id, this.set.recordFile(id));
    return { DeviceId: String(info.device_id), DeviceSize: String(info.size), DeviceName: this.set.name(id) };
  }

  /** moby Cleanup: every mount released, every device deactivated, the pool removed (when we set it up). */
  async cleanup(): Promise<void> {
    await this.mounts.cleanup();
    for (const h of this.set.hashes()) this.set.deactivate(h);
    this.set.close();
  }

  layers(): LayerInfo[] {
    return this.set.hashes().filter((h) => h !== '').map((id) => ({ id }));
  }
}

/** go-units HumanSize: decimal units, 4 significant digits ("10.74GB"). */
export function humanSize(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB', 'ZB', 'YB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return `${Number(n.toPrecision(4))}${units[i]}`;
}
