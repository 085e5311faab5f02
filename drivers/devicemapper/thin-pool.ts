// Reading a Docker devicemapper store (loop-lvm) in userspace, for kernels
// without device-mapper (graphdrivers.md §2.5): the thin pool's metadata file
// is decoded by `thin_dump` (thin-provisioning-tools) into per-device block
// mappings; a thin device is rebuilt as a sparse image from the data blocks it
// maps; the image is loop-mounted read-only and its `rootfs/` is the layer.
//
//   <root>/devicemapper/devicemapper/{data,metadata}   the pool's two loop files
//   <root>/devicemapper/metadata/<id>                  {"device_id","size","transaction_id","initialized","deleted"}
//   <root>/devicemapper/metadata/base                  the base device (Docker hash "")
//
// Nothing here ever writes into the store:
//  - thin_dump is run without --repair and without -m (metadata snapshot, which
//    needs a live pool); it opens the metadata file O_RDONLY and only reads.
//  - the data file is opened with flag 'r'; mapped blocks are copied out to a
//    temporary image outside the store.
//  - the image (not the store) is attached with `losetup --read-only` and
//    mounted MS_RDONLY with `noload` (ext4: no journal replay) or `norecovery`
//    (xfs: no log recovery), so not even the copy is written.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { JSON_CAP, describeFsError, openRegular, readFileReadOnly, sizeProblem } from '../../sys/read-only-files.ts';

/** One extent of a thin device: `length` blocks at `originBlock` of the device live at `dataBlock` of the data file. */
export interface ThinMapping {
  originBlock: number;
  dataBlock: number;
  length: number;
  /** the pool time at which the block(s) were written */
  time: number;
}

export interface ThinDevice {
  devId: number;
  mappedBlocks: number;
  transaction: number;
  creationTime: number;
  snapTime: number;
  mappings: ThinMapping[];
}

export interface ThinSuperblock {
  uuid: string;
  time: number;
  transaction: number;
  /** bytes (thin_dump reports 512-byte sectors) */
  dataBlockSize: number;
  nrDataBlocks: number;
}

export interface ThinPool {
  superblock: ThinSuperblock;
  devices: Map<number, ThinDevice>;
}

/** thin_dump failed on a metadata file (damaged, not a thin pool, or the tool is missing). */
export class ThinMetadataError extends Error {
  constructor(readonly file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = 'ThinMetadataError';
  }
}

function attrs(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of s.matchAll(/([\w-]+)="([^"]*)"/g)) out[m[1]!] = m[2]!;
  return out;
}

function num(a: Record<string, string>, k: string, where: string): number {
  const v = a[k];
  if (v === undefined || !/^\d+$/.test(v)) throw new Error(`thin_dump: <${where}> has no numeric ${k}`);
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new Error(`thin_dump: <${where}> ${k}=${v} is too large`);
  return n;
}

/**
 * Decode a pool's metadata with `thin_dump --format xml`, streamed line by
 * line (the XML of a big pool runs to gigabytes: only the mappings of the
 * devices asked for are kept). `devIds` null keeps every device's mappings;
 * the other devices are still listed, with no mappings.
 */
export async function readThinMetadata(metadataFile: string, devIds: Iterable<number> | null = null): Promise<ThinPool> {
  const want = devIds === null ? null : new Set(devIds);
  // thin_dump would block on a FIFO and read a device: only a regular file is handed to it
  try {
    fs.closeSync(openRegular(metadataFile).fd);
  } catch (e) {
    throw new ThinMetadataError(metadataFile, describeFsError(e));
  }
  // read-only: no --repair, no -m; see the header
  const child = spawn('thin_dump', ['--format', 'xml', metadataFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => {
    if (stderr.length < 4096) stderr += d;
  });
  const exited = new Promise<{ code: number | null; err: Error | null }>((resolve) => {
    child.on('error', (err) => resolve({ code: null, err }));
    child.on('close', (code) => resolve({ code, err: null }));
  });
  let superblock: ThinSuperblock | null = null;
  const devices = new Map<number, ThinDevice>();
  let cur: ThinDevice | null = null;
  let keep = false;
  let parseError: Error | null = null;
  const rl = readline.createInterface({ input: child.stdout, crlfDelay: Infinity });
  try {
    for await (const line of rl) {
      if (parseError) continue;
      try {
        for (const m of line.matchAll(/<(\/?)(\w+)([^>]*?)\/?>/g)) {
          const [, close, tag, rest] = m as unknown as [string, string, string, string];
          if (close) {
            if (tag === 'device' && cur && keep) checkMappedBlocks(cur);
            if (tag === 'device') cur = null;
            continue;
          }
          const a = attrs(rest);
          switch (tag) {
            case 'superblock':
              superblock = {
                uuid: a.uuid ?? '',
                time: num(a, 'time', tag),
                transaction: num(a, 'transaction', tag),
                dataBlockSize: num(a, 'data_block_size', tag) * 512,
                nrDataBlocks: num(a, 'nr_data_blocks', tag),
              };
              break;
            case 'device': {
              const devId = num(a, 'dev_id', tag);
              cur = {
                devId, mappedBlocks: num(a, 'mapped_blocks', tag), transaction: num(a, 'transaction', tag),
                creationTime: num(a, 'creation_time', tag), snapTime: num(a, 'snap_time', tag), mappings: [],
              };
              devices.set(devId, cur);
              keep = want === null || want.has(devId);
              break;
            }
            case 'single_mapping':
              if (cur && keep) cur.mappings.push({ originBlock: num(a, 'origin_block', tag), dataBlock: num(a, 'data_block', tag), length: 1, time: num(a, 'time', tag) });
              break;
            case 'range_mapping':
              if (cur && keep) cur.mappings.push({ originBlock: num(a, 'origin_begin', tag), dataBlock: num(a, 'data_begin', tag), length: num(a, 'length', tag), time: num(a, 'time', tag) });
              break;
            default:
              break; // <def>/<ref> (shared subtrees, only with --skip-mappings off… not emitted by plain xml dumps) and future tags
          }
        }
      } catch (e) {
        parseError = e as Error;
        child.kill();
      }
    }
  } finally {
    rl.close();
  }
  const { code, err } = await exited;
  if (err) throw new ThinMetadataError(metadataFile, `cannot run thin_dump (package thin-provisioning-tools): ${err.message}`);
  if (parseError) throw new ThinMetadataError(metadataFile, parseError.message);
  // one line: thin_dump's message runs over several
  const said = stderr.trim().split('\n').map((l) => l.trim()).filter(Boolean).join('; ');
  if (code !== 0) throw new ThinMetadataError(metadataFile, `thin_dump failed (exit ${code}): ${said || 'no message'}`);
  if (!superblock) throw new ThinMetadataError(metadataFile, 'thin_dump printed no superblock');
  return { superblock, devices };
}

/**
 * A device's mappings must add up to the mapped_blocks of its details (the
 * kernel updates both in one transaction). thin_dump does not check it: on a
 * mapping tree with a loop or a lost subtree it skips what it cannot reach and
 * exits 0, and the device would be rebuilt with holes where its data was.
 */
function checkMappedBlocks(dev: ThinDevice): void {
  const found = dev.mappings.reduce((n, m) => n + m.length, 0);
  if (found !== dev.mappedBlocks) {
    throw new Error(`thin device ${dev.devId}: its mapping tree holds ${found} blocks, its details say ${dev.mappedBlocks} (damaged metadata: thin_check tells more)`);
  }
}

export interface ExtractStats {
  extents: number;
  mappedBlocks: number;
  /** mapped blocks that hold only zeros, left as holes */
  zeroBlocks: number;
  imageSize: number;
}

const CHUNK_BLOCKS_BYTES = 1 << 20;

/**
 * Write thin device image `out` (created, must not exist): every mapped block
 * copied from `dataFile` (opened read-only) to its origin position, holes
 * elsewhere and for all-zero blocks. Memory stays at one 1 MiB buffer.
 * `size` (bytes) is the device size (Docker's JSON `size`: the thin metadata
 * does not hold it); default: the end of the last mapped block.
 */
export function extractDevice(dataFile: string, mappings: readonly ThinMapping[], blockSize: number, out: string, size?: number): ExtractStats {
  const per = Math.max(1, Math.floor(CHUNK_BLOCKS_BYTES / blockSize));
  let data: { fd: number; st: fs.Stats };
  try {
    data = openRegular(dataFile);
  } catch (e) {
    throw new Error(`${dataFile}: ${describeFsError(e)}`);
  }
  const dfd = data.fd;
  const buf = Buffer.alloc(per * blockSize);
  let ofd: number | null = null;
  const stats: ExtractStats = { extents: mappings.length, mappedBlocks: 0, zeroBlocks: 0, imageSize: 0 };
  try {
    ofd = fs.openSync(out, 'wx', 0o600);
    const end = checkMappings(dataFile, data.st.size, mappings, blockSize, size);
    for (const m of mappings) {
      for (let i = 0; i < m.length; i += per) {
        const n = Math.min(per, m.length - i);
        const bytes = n * blockSize;
        let got = 0;
        while (got < bytes) {
          const r = fs.readSync(dfd, buf, got, bytes - got, (m.dataBlock + i) * blockSize + got);
          if (r === 0) break;
          got += r;
        }
        if (got < bytes) throw new Error(`${dataFile}: shrank while being read (block ${m.dataBlock + i})`);
        for (let b = 0; b < n; b++) {
          stats.mappedBlocks++;
          const off = b * blockSize;
          if (isZero(buf, off, blockSize)) {
            stats.zeroBlocks++;
            continue;
          }
          let w = 0;
          while (w < blockSize) w += fs.writeSync(ofd, buf, off + w, blockSize - w, (m.originBlock + i + b) * blockSize + w);
        }
      }
    }
    stats.imageSize = size ?? end;
    fs.ftruncateSync(ofd, stats.imageSize);
    return stats;
  } finally {
    fs.closeSync(dfd);
    if (ofd !== null) fs.closeSync(ofd);
  }
}

/**
 * The end (bytes) of the last mapped block; refused, naming the data file,
 * when a mapping reads past the data file's end (a truncated copy would
 * silently serve zeros), and when one lies beyond the device's `size`.
 */
function checkMappings(dataFile: string, dataSize: number, mappings: readonly ThinMapping[], blockSize: number, size?: number): number {
  let end = 0;
  for (const m of mappings) {
    const last = (m.dataBlock + m.length) * blockSize;
    if (!Number.isSafeInteger(last) || last > dataSize) {
      throw new Error(`${dataFile}: is ${dataSize} bytes, but the pool maps data blocks ${m.dataBlock}..${m.dataBlock + m.length - 1} (${blockSize}-byte blocks) beyond its end`);
    }
    end = Math.max(end, (m.originBlock + m.length) * blockSize);
  }
  if (!Number.isSafeInteger(end)) throw new Error(`the thin device maps origin blocks beyond any real size`);
  if (size !== undefined && end > size) throw new Error(`the thin device maps blocks up to byte ${end}, beyond its size ${size}`);
  return end;
}

function isZero(buf: Buffer, off: number, len: number): boolean {
  const end = off + len;
  // 8 bytes at a time where aligned, then the rest
  let i = off;
  for (; i + 8 <= end; i += 8) if (buf.readBigUInt64LE(i) !== 0n) return false;
  for (; i < end; i++) if (buf[i] !== 0) return false;
  return true;
}

/** Docker's record of one device (devicemapper/metadata/<id>, or `base`). */
export interface DockerDevInfo {
  device_id: number;
  size: number;
  transaction_id: number;
  initialized: boolean;
  deleted: boolean;
}

/** The paths of a devicemapper store under a docker data root. */
export function devmapperPaths(root: string) {
  const home = path.join(root, 'devicemapper');
  return {
    home,
    data: path.join(home, 'devicemapper', 'data'),
    metadata: path.join(home, 'devicemapper', 'metadata'),
    devInfo: (id: string) => path.join(home, 'metadata', id === '' ? 'base' : id),
  };
}

export function readDevInfo(root: string, id: string): DockerDevInfo {
  const file = devmapperPaths(root).devInfo(id);
  let j: Partial<DockerDevInfo>;
  try {
    j = JSON.parse(readFileReadOnly(file, JSON_CAP).toString('utf8')) as Partial<DockerDevInfo>;
  } catch (e) {
    throw new Error(`${file}: ${e instanceof SyntaxError ? `is not valid JSON (${e.message})` : describeFsError(e)}`);
  }
  if (typeof j.device_id !== 'number') throw new Error(`${file}: no device_id`);
  // thin device ids are 24-bit (moby's maxDeviceID); size a byte count (moby: uint64)
  if (!Number.isInteger(j.device_id) || j.device_id < 0 || j.device_id > 0xffffff) throw new Error(`${file}: device_id ${j.device_id} is not a thin device id (0..16777215)`);
  if (j.size !== undefined && (typeof j.size !== 'number' || sizeProblem(j.size))) throw new Error(`${file}: size ${typeof j.size === 'number' ? sizeProblem(j.size) : `is ${JSON.stringify(j.size)}, not a number`}`);
  return { device_id: j.device_id, size: Number(j.size ?? 0), transaction_id: Number(j.transaction_id ?? 0), initialized: !!j.initialized, deleted: !!j.deleted };
}

/** The file system of an image by its magic: ext2/3/4 (0xEF53 at 1080) or xfs ("XFSB" at 0). */
export function fsTypeOf(image: string): 'ext4' | 'xfs' | null {
  const fd = fs.openSync(image, 'r');
  try {
    const b = Buffer.alloc(1082);
    fs.readSync(fd, b, 0, b.length, 0);
    if (b.toString('latin1', 0, 4) === 'XFSB') return 'xfs';
    if (b.readUInt16LE(1080) === 0xef53) return 'ext4';
    return null;
  } finally {
    fs.closeSync(fd);
  }
}

/** Whether the running kernel can activate the pool itself (its dm misc device is there; the driver talks to it by ioctl). */
export function kernelHasDeviceMapper(): boolean {
  return fs.existsSync('/sys/class/misc/device-mapper');
}

/**
 * Decode the pool metadata of the store at `root` and record what fails as a
 * problem on the metadata file (thin_dump's own message), so a damaged pool is
 * reported, not thrown. Returns the pool, or null when it cannot be read.
 */
export async function checkThinPool(root: string, problems: { add(path: string, message: string): void }): Promise<ThinPool | null> {
  const p = devmapperPaths(root);
  try {
    return await readThinMetadata(p.metadata, []);
  } catch (e) {
    problems.add(p.metadata, e instanceof ThinMetadataError ? e.message.slice(p.metadata.length + 2) : (e as Error).message);
    return null;
  }
}

/**
 * Rebuild device `id` (a layer's cache/mount id, or '' for the base device) of
 * the store at docker root `root`, loop-mount it read-only, call fn with the
 * mount point (the layer's files are in `<mountpoint>/rootfs`), then release
 * it: the read-only driver's get/put (read-only.ts), whose decode of the
 * pool every call of this process shares.
 */
export async function withDeviceMounted<T>(root: string, id: string, fn: (mountpoint: string) => Promise<T> | T): Promise<T> {
  const { rebuiltFor } = await import('./read-only.ts'); // the mount code loads only when a device is mounted
  const info = readDevInfo(root, id);
  if (info.deleted) throw new Error(`${devmapperPaths(root).devInfo(id)}: device ${info.device_id} is marked deleted`);
  const d = rebuiltFor(devmapperPaths(root).home);
  const hash = id === '' ? 'base' : id;
  const mnt = await d.mountDevice(hash);
  try {
    return await fn(mnt);
  } finally {
    await d.put(hash);
  }
}
