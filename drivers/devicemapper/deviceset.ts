// moby's DeviceSet (daemon/graphdriver/devmapper/deviceset.go): the thin pool
// and the records Docker keeps beside it, in Docker's layout and formats.
//
//   <home>/devicemapper/{data,metadata}   sparse loop files of the pool (loop-lvm), unless dm.thinpooldev
//   <home>/metadata/<hash>                {"device_id","size","transaction_id","initialized","deleted"} ("base" for hash "")
//   <home>/metadata/deviceset-metadata    {"next_device_id","BaseDeviceUUID","BaseDeviceFilesystem"}
//   <home>/metadata/transaction-metadata  {"open_transaction_id","device_hash","device_id"}: the open transaction
//
// Pool docker-<maj>:<min>-<ino>-pool (of the home's st_dev and inode),
// devices docker-<maj>:<min>-<ino>-<hash>. Every pool change runs in a
// transaction: transaction-metadata is written first with the next
// transaction id, the pool's id is bumped after the change
// (set_transaction_id), and an init that finds the two differ rolls the open
// one back (deletes its device and record), as moby's processPendingTransaction.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { attachLoop, detachLoop, loopDevicesOf } from '../../sys/loop.ts';
import * as dm from './dm.ts';

export const MAX_DEVICE_ID = 0xffffff; // 24 bits: the pool's limit
const SECTOR = 512;

export interface DevInfo {
  device_id: number;
  size: number;
  transaction_id: number;
  initialized: boolean;
  deleted: boolean;
}

interface DeviceSetMeta {
  next_device_id: number;
  BaseDeviceUUID: string;
  BaseDeviceFilesystem: string;
}

interface Transaction {
  open_transaction_id: number;
  device_hash: string;
  device_id: number;
}

export interface DeviceSetOptions {
  baseSize: number;
  loopDataSize: number;
  loopMetadataSize: number;
  /** '' = moby's default (xfs when mkfs.xfs is there, else ext4) */
  fs: string;
  /** bytes; multiple of 64 KiB */
  blockSize: number;
  minFreeSpacePercent: number;
  thinPoolDev: string;
}

/** moby's fixed files under metadata/: not devices. */
export const SET_RECORDS = ['deviceset-metadata', 'transaction-metadata'];

export class DeviceSet {
  readonly prefix: string;
  readonly poolName: string;
  transactionId = 0;
  private meta: DeviceSetMeta = { next_device_id: 0, BaseDeviceUUID: '', BaseDeviceFilesystem: '' };
  private readonly used = new Set<number>();
  /** loop devices this process attached for the pool (detached at shutdown) */
  private loops: { device: string; image: string }[] = [];

  constructor(readonly home: string, readonly opts: DeviceSetOptions) {
    const st = fs.statSync(home, { bigint: true });
    const dev = st.dev;
    // glibc major/minor of a dev_t
    const major = Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn));
    const minor = Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn));
    this.prefix = `docker-${major}:${minor}-${st.ino}`;
    this.poolName = opts.thinPoolDev || `${this.prefix}-pool`;
  }

  get metadataDir(): string {
    return path.join(this.home, 'metadata');
  }
  get loopbackDir(): string {
    return path.join(this.home, 'devicemapper');
  }
  get filesystem(): string {
    return this.meta.BaseDeviceFilesystem;
  }
  recordFile(hash: string): string {
    return path.join(this.metadataDir, hash === '' ? 'base' : hash);
  }
  /** dm name of a device: docker-<maj>:<min>-<ino>-<hash>, `-base` for the base device */
  name(hash: string): string {
    return `${this.prefix}-${hash === '' ? 'base' : hash}`;
  }

  // ---- records ---------------------------------------------------------------

  private writeRecord(file: string, value: unknown): void {
    // moby writeMetaFile: a temp file in the same directory, renamed over
    const tmp = `${file}.tmp-${process.pid}`;
    const fd = fs.openSync(tmp, 'w', 0o600);
    try {
      fs.writeSync(fd, JSON.stringify(value));
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  }

  lookup(hash: string): DevInfo | null {
    let text: string;
    try {
      text = fs.readFileSync(this.recordFile(hash), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
    const info = JSON.parse(text) as DevInfo;
    if (!Number.isInteger(info.device_id) || info.device_id < 0 || info.device_id > MAX_DEVICE_ID) {
      throw new Error(`devmapper: ${this.recordFile(hash)}: device_id ${info.device_id} is out of range`);
    }
    return info;
  }

  saveRecord(hash: string, info: DevInfo): void {
    this.writeRecord(this.recordFile(hash), info);
  }

  /** Every device hash with a record ('' for the base device). */
  hashes(): string[] {
    let names: string[];
    try {
      names = fs.readdirSync(this.metadataDir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
    return names.filter((n) => !SET_RECORDS.includes(n) && !n.includes('.tmp-')).map((n) => (n === 'base' ? '' : n)).sort();
  }

  private saveSetMeta(): void {
    this.writeRecord(path.join(this.metadataDir, 'deviceset-metadata'), this.meta);
  }

  // ---- the pool ----------------------------------------------------------------

  /** moby initDevmapper: the pool activated (loop files made and attached when new), records loaded, an open transaction rolled back. */
  open(): void {
    fs.mkdirSync(this.metadataDir, { recursive: true, mode: 0o700 });
    const setMeta = path.join(this.metadataDir, 'deviceset-metadata');
    if (fs.existsSync(setMeta)) this.meta = { ...this.meta, ...(JSON.parse(fs.readFileSync(setMeta, 'utf8')) as DeviceSetMeta) };
    for (const h of this.hashes()) this.used.add(this.lookup(h)!.device_id);
    if (!dm.exists(this.poolName)) {
      if (this.opts.thinPoolDev) throw new Error(`devmapper: thin pool ${this.poolName} (dm.thinpooldev) does not exist`);
      this.createLoopPool();
    }
    this.transactionId = dm.poolStatus(this.poolName).transactionId;
    this.processPendingTransaction();
  }

  private createLoopPool(): void {
    fs.mkdirSync(this.loopbackDir, { recursive: true, mode: 0o700 });
    const data = this.ensureImage('data', this.opts.loopDataSize);
    const metadata = this.ensureImage('metadata', this.opts.loopMetadataSize);
    const dataDev = this.attach(data);
    const metaDev = this.attach(metadata);
    const sectors = Math.floor(fs.statSync(data).size / SECTOR);
    // moby: "%s %s %d 32768 1 skip_block_zeroing" (low water mark 32768 blocks)
    dm.create(this.poolName, `0 ${sectors} thin-pool ${metaDev} ${dataDev} ${this.opts.blockSize / SECTOR} 32768 1 skip_block_zeroing`);
  }

  private ensureImage(name: string, size: number): string {
    const file = path.join(this.loopbackDir, name);
    if (!fs.existsSync(file)) {
      fs.closeSync(fs.openSync(file, 'wx', 0o600));
      fs.truncateSync(file, size); // sparse
    }
    return file;
  }

  private attach(image: string): string {
    const device = attachLoop(image);
    this.loops.push({ device, image });
    return device;
  }

  /** moby Shutdown's pool half: the pool removed and its loop devices detached (devices must be gone). */
  close(): void {
    if (this.loops.length === 0) return; // a pool we did not set up (dm.thinpooldev, or another process's) stays
    if (dm.exists(this.poolName)) dm.remove(this.poolName);
    for (const { device, image } of this.loops.splice(0)) {
      if (loopDevicesOf(image).includes(device)) detachLoop(device, image);
    }
  }

  // ---- transactions (moby openTransaction / closeTransaction) ------------------------

  private get transactionFile(): string {
    return path.join(this.metadataDir, 'transaction-metadata');
  }

  private openTransaction(hash: string, deviceId: number): number {
    const open = this.transactionId + 1;
    this.writeRecord(this.transactionFile, { open_transaction_id: open, device_hash: hash, device_id: deviceId } satisfies Transaction);
    return open;
  }

  private closeTransaction(open: number): void {
    dm.message(this.poolName, `set_transaction_id ${this.transactionId} ${open}`);
    this.transactionId = open;
  }

  private processPendingTransaction(): void {
    let t: Transaction;
    try {
      t = JSON.parse(fs.readFileSync(this.transactionFile, 'utf8')) as Transaction;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    if (t.open_transaction_id <= this.transactionId) return;
    // rollback: the device may be gone already; its record goes either way
    try {
      dm.message(this.poolName, `delete ${t.device_id}`);
    } catch {
      // not in the pool: the transaction died before the device was made
    }
    fs.rmSync(this.recordFile(t.device_hash), { force: true });
    this.used.delete(t.device_id);
    fs.rmSync(this.transactionFile, { force: true });
  }

  // ---- devices -------------------------------------------------------------------

  private nextFreeId(): number {
    for (let i = 0; i <= MAX_DEVICE_ID; i++) {
      const id = this.meta.next_device_id;
      this.meta.next_device_id = (id + 1) & MAX_DEVICE_ID;
      if (!this.used.has(id)) {
        this.used.add(id);
        return id;
      }
    }
    throw new Error('devmapper: Unable to find a free device ID');
  }

  /** A new thin device (create_thin) or a snapshot of `origin` (create_snap), recorded. */
  private addDevice(hash: string, size: number, origin: DevInfo | null): DevInfo {
    this.checkFreeSpace();
    const id = this.nextFreeId();
    const open = this.openTransaction(hash, id);
    try {
      dm.message(this.poolName, origin === null ? `create_thin ${id}` : `create_snap ${id} ${origin.device_id}`);
    } catch (e) {
      this.used.delete(id);
      throw e;
    }
    const info: DevInfo = { device_id: id, size, transaction_id: open, initialized: false, deleted: false };
    this.saveRecord(hash, info);
    this.saveSetMeta();
    this.closeTransaction(open);
    return info;
  }

  /** moby poolHasFreeSpace: dm.min_free_space of the data and of the metadata must stay free. */
  private checkFreeSpace(): void {
    if (this.opts.minFreeSpacePercent === 0) return;
    const s = dm.poolStatus(this.poolName);
    const need = (total: number) => Math.floor((total * this.opts.minFreeSpacePercent) / 100) || 1;
    if (s.dataTotal - s.dataUsed < need(s.dataTotal)) {
      throw new Error(`devmapper: Thin Pool has ${s.dataTotal - s.dataUsed} free data blocks which is less than minimum required ${need(s.dataTotal)} free data blocks. Create more free space in thin pool or use dm.min_free_space option to change behavior`);
    }
    if (s.metadataTotal - s.metadataUsed < need(s.metadataTotal)) {
      throw new Error(`devmapper: Thin Pool has ${s.metadataTotal - s.metadataUsed} free metadata blocks which is less than minimum required ${need(s.metadataTotal)} free metadata blocks. Create more free metadata space in thin pool or use dm.min_free_space option to change behavior`);
    }
  }

  /** moby setupBaseImage: the base device, made with a file system once. */
  setupBase(): void {
    const base = this.lookup('');
    if (base?.initialized) return;
    if (base) this.deleteDevice('', base); // a half-made base from an interrupted init
    const fstype = this.opts.fs || (hasMkfs('xfs') ? 'xfs' : 'ext4');
    const info = this.addDevice('', this.opts.baseSize, null);
    this.activate('', info);
    try {
      mkfs(fstype, dm.devName(this.name('')));
      this.meta.BaseDeviceFilesystem = fstype;
      this.meta.BaseDeviceUUID = runTool('blkid', ['-s', 'UUID', '-o', 'value', dm.devName(this.name(''))]).trim();
      this.saveSetMeta();
    } finally {
      this.deactivate('');
    }
    info.initialized = true;
    this.saveRecord('', info);
  }

  /** moby takeSnapshot: an active origin is suspended around create_snap so its data is consistent. */
  snapshot(hash: string, originHash: string, size: number): DevInfo {
    const origin = this.lookup(originHash);
    if (!origin) throw new Error(`devmapper: Unknown device ${originHash}`);
    const active = dm.exists(this.name(originHash));
    if (active) dm.suspend(this.name(originHash));
    try {
      return this.addDevice(hash, size, origin);
    } finally {
      if (active) dm.resume(this.name(originHash));
    }
  }

  /** Activate `hash` (moby activateDeviceIfNeeded): thin /dev/mapper/<pool> <id>. */
  activate(hash: string, info: DevInfo): string {
    const name = this.name(hash);
    if (!dm.exists(name)) dm.create(name, `0 ${Math.floor(info.size / SECTOR)} thin ${dm.devName(this.poolName)} ${info.device_id}`);
    return dm.devName(name);
  }

  deactivate(hash: string): void {
    const name = this.name(hash);
    if (dm.exists(name)) dm.remove(name);
  }

  /** moby deleteTransaction: delete from the pool, drop the record, free the id. */
  deleteDevice(hash: string, info: DevInfo): void {
    this.deactivate(hash);
    const open = this.openTransaction(hash, info.device_id);
    dm.message(this.poolName, `delete ${info.device_id}`);
    fs.rmSync(this.recordFile(hash), { force: true });
    this.used.delete(info.device_id);
    this.closeTransaction(open);
  }
}

function hasMkfs(fstype: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v mkfs.${fstype}`], { stdio: 'ignore', env: { ...process.env, PATH: `${process.env.PATH}:/sbin:/usr/sbin` } });
    return true;
  } catch {
    return false;
  }
}

/** moby createFilesystem: its mkfs options. */
function mkfs(fstype: string, dev: string): void {
  const run = runTool;
  if (fstype === 'xfs') run('mkfs.xfs', ['-q', '-m', 'crc=1,finobt=1', dev]);
  else if (fstype === 'ext4') {
    run('mkfs.ext4', ['-q', '-E', 'nodiscard,lazy_itable_init=0,lazy_journal_init=0', dev]);
    run('tune2fs', ['-c', '-1', '-i', '0', dev]);
  } else throw new Error(`devmapper: Unsupported filesystem type ${fstype}`);
}

/** moby growFS's tools: resize2fs / xfs_growfs on the mounted device. */
export function growFs(fstype: string, dev: string, mountpoint: string): void {
  if (fstype === 'ext4') runTool('resize2fs', [dev]);
  else runTool('xfs_growfs', [mountpoint]);
}

/** A filesystem tool's stdout; its failure one line naming the command and what it said. */
function runTool(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    const said = (err.stderr ?? '').split('\n').map((l) => l.trim()).filter(Boolean).join('; ') || err.message.split('\n')[0];
    throw new Error(`devmapper: ${cmd} ${args.join(' ')}: ${said}`);
  }
}
