// The btrfs ioctls the driver uses, their numbers and struct packing
// (linux/btrfs.h, as btrfs-progs libbtrfs/ioctl.h spells them); every call
// goes through sys/syscalls.ts ioctl on an fd opened here and closed again.
// Little-endian, 64-bit layouts only (x86_64, aarch64), like the rest of sys/.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SysError, ioctl, ioctlInThread } from '../../sys/syscalls.ts';

const MAGIC = 0x94;
const IOC_WRITE = 1;
const IOC_READ = 2;
const ioc = (dir: number, nr: number, size: number) => ((dir << 30) | (size << 16) | (MAGIC << 8) | nr) >>> 0;

const VOL_ARGS = 4096;
const SUBVOL_CREATE = ioc(IOC_WRITE, 14, VOL_ARGS);
const SNAP_DESTROY = ioc(IOC_WRITE, 15, VOL_ARGS);
const SNAP_CREATE_V2 = ioc(IOC_WRITE, 23, VOL_ARGS);
const TREE_SEARCH = ioc(IOC_READ | IOC_WRITE, 17, 4096);
const INO_LOOKUP = ioc(IOC_READ | IOC_WRITE, 18, 4096);
const FS_INFO = ioc(IOC_READ, 31, 1024);
const SEND_ARGS = 72;
const SEND = ioc(IOC_WRITE, 38, SEND_ARGS);
const QUOTA_CTL = ioc(IOC_READ | IOC_WRITE, 40, 16);
const QGROUP_CREATE = ioc(IOC_WRITE, 42, 16);
const QGROUP_LIMIT = ioc(IOC_READ, 43, 48);
const QUOTA_RESCAN_WAIT = ioc(0, 46, 0);
const SUBVOL_INFO_ARGS = 504;
const GET_SUBVOL_INFO = ioc(IOC_READ, 60, SUBVOL_INFO_ARGS);
const GET_SUBVOL_ROOTREF = ioc(IOC_READ | IOC_WRITE, 61, 4096);
const INO_LOOKUP_USER = ioc(IOC_READ | IOC_WRITE, 62, 4096);

/** vol_args.name holds BTRFS_PATH_NAME_MAX (4087) bytes, vol_args_v2.name BTRFS_SUBVOL_NAME_MAX (4039); a layer id is far shorter */
const VOL_NAME_AT = 8;
const VOL_V2_NAME_AT = 56;
export const SUBVOL_RDONLY = 2n;
/** the same, as the root item's flags say it (GET_SUBVOL_INFO) */
const ROOT_SUBVOL_RDONLY = 1n;
const QUOTA_CTL_ENABLE = 1n;
const QGROUP_LIMIT_MAX_RFER = 1n;
export const SEND_FLAG_NO_FILE_DATA = 1n;
/** the inode number of every subvolume's root directory (BTRFS_FIRST_FREE_OBJECTID) */
export const SUBVOL_ROOT_INO = 256;

/** Run `fn` with a read-only fd of directory `dir`. */
export function withDir<T>(dir: string, fn: (fd: number) => T): T {
  const fd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  try {
    return fn(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function named(size: number, at: number, name: string): Buffer {
  const buf = Buffer.alloc(size);
  const n = Buffer.from(name, 'utf8');
  if (n.length >= size - at) throw new Error(`btrfs: subvolume name too long: ${name}`);
  n.copy(buf, at);
  return buf;
}

/** A new, empty subvolume `<dir>/<name>` (moby subvolCreate). */
export function subvolCreate(dir: string, name: string): void {
  withDir(dir, (fd) => ioctl(fd, SUBVOL_CREATE, named(VOL_ARGS, VOL_NAME_AT, name), path.join(dir, name)));
}

/** `<destDir>/<name>` as a snapshot of subvolume `src`, read-only when asked (moby subvolSnapshot). */
export function subvolSnapshot(src: string, destDir: string, name: string, opts: { readOnly?: boolean } = {}): void {
  withDir(src, (srcFd) => withDir(destDir, (destFd) => {
    const args = named(VOL_ARGS, VOL_V2_NAME_AT, name);
    args.writeBigInt64LE(BigInt(srcFd), 0);
    if (opts.readOnly) args.writeBigUInt64LE(SUBVOL_RDONLY, 16);
    ioctl(destFd, SNAP_CREATE_V2, args, path.join(destDir, name));
  }));
}

/** Delete subvolume `<dir>/<name>` (its nested subvolumes must be gone first). */
export function subvolDestroy(dir: string, name: string): void {
  withDir(dir, (fd) => ioctl(fd, SNAP_DESTROY, named(VOL_ARGS, VOL_NAME_AT, name), path.join(dir, name)));
}

/** Is `p` (not followed) the root directory of a subvolume? */
export function isSubvolume(p: string): boolean {
  const st = fs.lstatSync(p, { throwIfNoEntry: false });
  return st !== undefined && st.isDirectory() && st.ino === SUBVOL_ROOT_INO;
}

export interface SubvolInfo {
  /** the subvolume's tree id, also its qgroup id (0/<id>) */
  id: bigint;
  uuid: string;
  /** uuid of the subvolume this one is a snapshot of, '' for none */
  parentUuid: string;
  readOnly: boolean;
}

const hex = (b: Buffer) => (b.every((x) => x === 0) ? '' : b.toString('hex'));

/** BTRFS_IOC_GET_SUBVOL_INFO of the subvolume holding `dir` (kernel ≥ 4.18, no privilege needed). */
export function subvolInfo(dir: string): SubvolInfo {
  const args = Buffer.alloc(SUBVOL_INFO_ARGS);
  withDir(dir, (fd) => ioctl(fd, GET_SUBVOL_INFO, args, dir));
  return {
    id: args.readBigUInt64LE(0),
    readOnly: (args.readBigUInt64LE(288) & ROOT_SUBVOL_RDONLY) !== 0n,
    uuid: hex(args.subarray(296, 312)),
    parentUuid: hex(args.subarray(312, 328)),
  };
}

const ROOTREFS = 255;

/**
 * The subvolumes directly inside subvolume `dir`, as paths relative to it
 * (BTRFS_IOC_GET_SUBVOL_ROOTREF + INO_LOOKUP_USER: the subvolume's own
 * references, not a walk of its tree, so the cost does not grow with the layer).
 */
export function childSubvolumes(dir: string): string[] {
  return withDir(dir, (fd) => {
    const refs: { tree: bigint; dir: bigint }[] = [];
    const args = Buffer.alloc(4096);
    for (let more = true; more;) {
      more = false;
      try {
        ioctl(fd, GET_SUBVOL_ROOTREF, args, dir);
      } catch (e) {
        if (!(e instanceof SysError && e.code === 'EOVERFLOW')) throw e;
        more = true; // a full buffer: the kernel has advanced min_treeid past it
      }
      const n = args.readUInt8(8 + ROOTREFS * 16);
      for (let i = 0; i < n; i++) refs.push({ tree: args.readBigUInt64LE(8 + i * 16), dir: args.readBigUInt64LE(16 + i * 16) });
    }
    return refs.map((r) => {
      const look = Buffer.alloc(4096);
      look.writeBigUInt64LE(r.dir, 0);
      look.writeBigUInt64LE(r.tree, 8);
      ioctl(fd, INO_LOOKUP_USER, look, dir);
      const cstr = (at: number, len: number) => look.subarray(at, at + len).subarray(0, Math.max(0, look.subarray(at, at + len).indexOf(0)));
      const name = cstr(16, 256).toString('utf8');
      const parent = cstr(272, 4096 - 272).toString('utf8').replace(/\/+$/, '');
      return parent ? `${parent}/${name}` : name;
    });
  });
}

/** Delete subvolume `<dir>/<name>` and every subvolume nested in it, deepest first (moby subvolDelete). */
export function subvolDestroyTree(dir: string, name: string): void {
  const full = path.join(dir, name);
  for (const child of childSubvolumes(full)) subvolDestroyTree(path.dirname(path.join(full, child)), path.basename(child));
  subvolDestroy(dir, name);
}

const INODE_REF_KEY = 12;
const INODE_EXTREF_KEY = 13;
const SEARCH_KEY = 104;
const U64_MAX = 2n ** 64n - 1n;

/**
 * Every path (relative to the subvolume root, raw bytes) of inode `ino` in
 * subvolume `dir`: its INODE_REF and INODE_EXTREF items (BTRFS_IOC_TREE_SEARCH),
 * each parent directory's path by BTRFS_IOC_INO_LOOKUP. Needs CAP_SYS_ADMIN.
 */
export function inodePaths(dir: string, ino: bigint): Buffer[] {
  return withDir(dir, (fd) => {
    const refs: { parent: bigint; name: Buffer }[] = [];
    let minType = INODE_REF_KEY;
    let minOffset = 0n;
    for (;;) {
      const args = Buffer.alloc(4096);
      args.writeBigUInt64LE(ino, 8);
      args.writeBigUInt64LE(ino, 16);
      args.writeBigUInt64LE(minOffset, 24);
      args.writeBigUInt64LE(U64_MAX, 32);
      args.writeBigUInt64LE(U64_MAX, 48);
      args.writeUInt32LE(minType, 56);
      args.writeUInt32LE(INODE_EXTREF_KEY, 60);
      args.writeUInt32LE(4096, 64);
      ioctl(fd, TREE_SEARCH, args, dir);
      const n = args.readUInt32LE(64);
      if (n === 0) break;
      let at = SEARCH_KEY;
      for (let i = 0; i < n; i++) {
        const offset = args.readBigUInt64LE(at + 16);
        const type = args.readUInt32LE(at + 24);
        const len = args.readUInt32LE(at + 28);
        const item = args.subarray(at + 32, at + 32 + len);
        for (let p = 0; p < item.length;) {
          if (type === INODE_REF_KEY) { // { index, name_len, name }, parent = key offset
            const nameLen = item.readUInt16LE(p + 8);
            refs.push({ parent: offset, name: item.subarray(p + 10, p + 10 + nameLen) });
            p += 10 + nameLen;
          } else { // { parent, index, name_len, name }
            const nameLen = item.readUInt16LE(p + 16);
            refs.push({ parent: item.readBigUInt64LE(p), name: item.subarray(p + 18, p + 18 + nameLen) });
            p += 18 + nameLen;
          }
        }
        at += 32 + len;
        [minType, minOffset] = offset === U64_MAX ? [type + 1, 0n] : [type, offset + 1n];
      }
      if (minType > INODE_EXTREF_KEY) break;
    }
    return refs.map((r) => {
      const look = Buffer.alloc(4096);
      look.writeBigUInt64LE(r.parent, 8);
      ioctl(fd, INO_LOOKUP, look, dir);
      const name = look.subarray(16);
      return Buffer.concat([name.subarray(0, name.indexOf(0)), r.name]); // the dir's path ends in '/', the root's is ''
    });
  });
}

/** The filesystem's uuid (BTRFS_IOC_FS_INFO), as /sys/fs/btrfs names it. */
export function fsUuid(dir: string): string {
  const args = Buffer.alloc(1024);
  withDir(dir, (fd) => ioctl(fd, FS_INFO, args, dir));
  const h = args.subarray(16, 32).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Are qgroups enabled on the filesystem of `dir`? (sysfs lists qgroups exactly then) */
export function quotaEnabled(dir: string): boolean {
  return fs.existsSync(`/sys/fs/btrfs/${fsUuid(dir)}/qgroups`);
}

/** BTRFS_IOC_QUOTA_CTL enable (a no-op where qgroups are on already). */
export function quotaEnable(dir: string): void {
  const args = Buffer.alloc(16);
  args.writeBigUInt64LE(QUOTA_CTL_ENABLE, 0);
  withDir(dir, (fd) => ioctl(fd, QUOTA_CTL, args, dir));
}

/** Limit the referenced bytes of subvolume `dir`'s own qgroup (moby subvolLimitQgroup). */
export function qgroupLimit(dir: string, bytes: number): void {
  const args = Buffer.alloc(48);
  args.writeBigUInt64LE(QGROUP_LIMIT_MAX_RFER, 8);
  args.writeBigUInt64LE(BigInt(bytes), 16);
  withDir(dir, (fd) => ioctl(fd, QGROUP_LIMIT, args, dir));
}

/** Delete qgroup 0/<id> (moby: BTRFS_IOC_QGROUP_CREATE with create = 0), called on the filesystem at `dir`. */
export function qgroupDestroy(dir: string, id: bigint): void {
  const args = Buffer.alloc(16);
  args.writeBigUInt64LE(id, 8);
  withDir(dir, (fd) => ioctl(fd, QGROUP_CREATE, args, dir));
}

/** Wait for a running quota rescan to finish (moby subvolRescanQuota). */
export function quotaRescanWait(dir: string): void {
  withDir(dir, (fd) => ioctl(fd, QUOTA_RESCAN_WAIT, Buffer.alloc(8), dir));
}

/**
 * BTRFS_IOC_SEND of read-only subvolume `fd` against read-only `parentRoot`
 * (a tree id) into `outFd`, on a thread of its own: the ioctl returns only
 * once the whole stream is written, so the caller must drain `outFd` meanwhile.
 */
export function send(fd: number, outFd: number, parentRoot: bigint, flags: bigint, where: string): Promise<number> {
  const args = Buffer.alloc(SEND_ARGS);
  args.writeBigInt64LE(BigInt(outFd), 0);
  args.writeBigUInt64LE(parentRoot, 24);
  args.writeBigUInt64LE(flags, 32);
  return ioctlInThread(fd, SEND, args, where);
}
