// The only module that talks to libc directly. Everything Node's fs already does
// (lstat, lchown, statfs, open) stays in node:fs; this covers what it cannot:
// mount, umount2, mknod, xattrs, ns-exact utimensat, flock and ioctl.
//
// Paths are passed as NUL-terminated byte buffers so that non-UTF-8 names
// survive (ffi-rs's String type would re-encode them as UTF-8).
import type { DataType as FfiDataType } from 'ffi-rs';
import { LIBC, loadLibc } from './ffi-load.ts';
import { errnoName } from './errno.ts';
import { constants as osConstants } from 'node:os';
import { isUtf8 } from 'node:buffer';
import { closeSync } from 'node:fs';

const { load, DataType } = loadLibc();

/** A failed system call: errno name, call and path, e.g. `EPERM mount /x: Operation not permitted`. */
export class SysError extends Error {
  readonly errno: number;
  readonly code: string;
  readonly syscall: string;
  readonly path: string;
  constructor(errno: number, syscall: string, path: string, detail?: string) {
    const code = errnoName(errno);
    super(`${code} ${syscall} ${path}: ${detail ?? strerror(errno)}`);
    this.name = 'SysError';
    this.errno = errno;
    this.code = code;
    this.syscall = syscall;
    this.path = path;
  }
}

export { errnoName };

const strerrors = new Map<number, string>();
function strerror(errno: number): string {
  let s = strerrors.get(errno);
  if (s === undefined) {
    const p = load({ library: LIBC, funcName: 'strerror', retType: DataType.String, paramsType: [DataType.I32], paramsValue: [errno] }) as string;
    s = String(p);
    strerrors.set(errno, s);
  }
  return s;
}

export type PathArg = string | Buffer;

/** NUL-terminated bytes of a path: raw for Buffers, UTF-8 for strings. */
function cpath(p: PathArg): Buffer {
  const b = typeof p === 'string' ? Buffer.from(p, 'utf8') : p;
  const out = Buffer.allocUnsafe(b.length + 1);
  b.copy(out, 0);
  out[b.length] = 0;
  return out;
}

/**
 * A path parameter, as cheap as ffi-rs allows: its String type (UTF-8,
 * about half the cost of a byte array) whenever the bytes are valid UTF-8,
 * a NUL-terminated byte array only for the rare name that is not.
 */
function pathParam(p: PathArg): [FfiDataType, string | Buffer] {
  if (typeof p === 'string') return [DataType.String, p];
  return isUtf8(p) ? [DataType.String, p.toString('utf8')] : [DataType.U8Array, cpath(p)];
}

function cstr(s: string): Buffer {
  return Buffer.from(s + '\0', 'utf8');
}

function show(p: PathArg): string {
  return typeof p === 'string' ? p : p.toString('utf8');
}

interface ErrnoResult { value: number; errnoCode: number }

function check(r: ErrnoResult, syscall: string, path: PathArg): number {
  // ffi-rs leaves a stale errno on success, so the return value decides.
  if (r.value === -1) throw new SysError(r.errnoCode, syscall, show(path));
  return r.value;
}

// ---- mount ---------------------------------------------------------------

export const MS_RDONLY = 0x1;
export const MS_NOSUID = 0x2;
export const MS_NODEV = 0x4;
export const MS_REMOUNT = 0x20;
export const MS_BIND = 0x1000;
export const MS_REC = 0x4000;
export const MS_PRIVATE = 0x40000;
export const MNT_FORCE = 0x1;
export const MNT_DETACH = 0x2;

/** mount(2). `data` is the option string; empty means none. */
export function mount(source: string, target: PathArg, fstype: string, flags: number, data = ''): void {
  const r = load({
    library: LIBC, funcName: 'mount', retType: DataType.I32, errno: true,
    paramsType: [DataType.U8Array, DataType.U8Array, DataType.U8Array, DataType.I64, DataType.U8Array],
    paramsValue: [cstr(source), cpath(target), cstr(fstype), flags, cstr(data)],
  }) as ErrnoResult;
  check(r, 'mount', target);
}

export function umount2(target: PathArg, flags = 0): void {
  const r = load({
    library: LIBC, funcName: 'umount2', retType: DataType.I32, errno: true,
    paramsType: [DataType.U8Array, DataType.I32], paramsValue: [cpath(target), flags],
  }) as ErrnoResult;
  check(r, 'umount2', target);
}

// ---- device nodes --------------------------------------------------------

export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_IFBLK = 0o060000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;

/** Linux dev_t encoding (glibc makedev). */
export function makedev(major: number, minor: number): number {
  return Number((BigInt(major & 0xfffff000) << 32n) | (BigInt(major & 0xfff) << 8n) |
    (BigInt(minor & 0xffffff00) << 12n) | BigInt(minor & 0xff));
}
export function major(dev: number): number {
  const d = BigInt(dev);
  return Number(((d >> 32n) & 0xfffff000n) | ((d >> 8n) & 0xfffn));
}
export function minor(dev: number): number {
  const d = BigInt(dev);
  return Number(((d >> 12n) & 0xffffff00n) | (d & 0xffn));
}

/** mknod(2): `mode` carries the file type bits (S_IFCHR, S_IFBLK, S_IFIFO) and permissions. */
export function mknod(path: PathArg, mode: number, dev: number): void {
  const [pt, pv] = pathParam(path);
  const r = load({
    library: LIBC, funcName: 'mknod', retType: DataType.I32, errno: true,
    paramsType: [pt, DataType.U32, DataType.I64], paramsValue: [pv, mode, dev],
  }) as ErrnoResult;
  check(r, 'mknod', path);
}

// ---- xattrs (never following symlinks) -----------------------------------

const ENODATA = osConstants.errno.ENODATA;
const ERANGE = osConstants.errno.ERANGE;
const ENOTSUP = osConstants.errno.ENOTSUP;

export function lsetxattr(path: PathArg, name: string, value: Buffer, flags = 0): void {
  const [pt, pv] = pathParam(path);
  const r = load({
    library: LIBC, funcName: 'lsetxattr', retType: DataType.I32, errno: true,
    paramsType: [pt, DataType.String, DataType.U8Array, DataType.I64, DataType.I32],
    // a zero-length Buffer would reach C as a dangling pointer; size 0 makes it unread
    paramsValue: [pv, name, value.length ? value : Buffer.alloc(1), value.length, flags],
  }) as ErrnoResult;
  check(r, 'lsetxattr', path);
}

/** fsetxattr(2): on an open file, so no path (and no later swap of one) is involved. */
export function fsetxattr(fd: number, name: string, value: Buffer, flags = 0): void {
  const r = load({
    library: LIBC, funcName: 'fsetxattr', retType: DataType.I32, errno: true,
    paramsType: [DataType.I32, DataType.String, DataType.U8Array, DataType.I64, DataType.I32],
    paramsValue: [fd, name, value.length ? value : Buffer.alloc(1), value.length, flags],
  }) as ErrnoResult;
  check(r, 'fsetxattr', `fd ${fd}`);
}

/** The value of one xattr, or null when the file does not carry it (or the fs has no xattrs). */
export function lgetxattr(path: PathArg, name: string): Buffer | null {
  const [pt, pv] = pathParam(path);
  for (;;) {
    // size query first: most files carry nothing, and then one cheap call is all
    const q = load({
      library: LIBC, funcName: 'lgetxattr', retType: DataType.I64, errno: true,
      paramsType: [pt, DataType.String, DataType.I64, DataType.I64], paramsValue: [pv, name, 0, 0],
    }) as ErrnoResult;
    if (q.value === -1) {
      if (q.errnoCode === ENODATA || q.errnoCode === ENOTSUP) return null;
      throw new SysError(q.errnoCode, 'lgetxattr', show(path));
    }
    if (q.value === 0) return Buffer.alloc(0);
    const buf = Buffer.alloc(q.value);
    const r = load({
      library: LIBC, funcName: 'lgetxattr', retType: DataType.I64, errno: true,
      paramsType: [pt, DataType.String, DataType.U8Array, DataType.I64], paramsValue: [pv, name, buf, buf.length],
    }) as ErrnoResult;
    if (r.value >= 0) return buf.subarray(0, r.value);
    if (r.errnoCode === ENODATA) return null; // removed in between
    if (r.errnoCode !== ERANGE) throw new SysError(r.errnoCode, 'lgetxattr', show(path));
    // grew in between: ask again
  }
}

/**
 * Names of all xattrs of a file (empty when none or unsupported). Called for
 * every entry of an export, so the size query goes without ffi-rs's errno
 * capture (a sixth of the call's cost); only a failure is repeated with it.
 */
export function llistxattr(path: PathArg): string[] {
  const [pt, pv] = pathParam(path);
  for (;;) {
    const size = load({
      library: LIBC, funcName: 'llistxattr', retType: DataType.I64,
      paramsType: [pt, DataType.I64, DataType.I64], paramsValue: [pv, 0, 0],
    }) as number;
    if (size === 0) return [];
    if (size === -1) {
      const q = load({
        library: LIBC, funcName: 'llistxattr', retType: DataType.I64, errno: true,
        paramsType: [pt, DataType.I64, DataType.I64], paramsValue: [pv, 0, 0],
      }) as ErrnoResult;
      if (q.value === 0) return [];
      if (q.value === -1) {
        if (q.errnoCode === ENOTSUP) return [];
        throw new SysError(q.errnoCode, 'llistxattr', show(path));
      }
      continue; // it succeeded this time: start over
    }
    const buf = Buffer.alloc(size);
    const r = load({
      library: LIBC, funcName: 'llistxattr', retType: DataType.I64, errno: true,
      paramsType: [pt, DataType.U8Array, DataType.I64], paramsValue: [pv, buf, buf.length],
    }) as ErrnoResult;
    if (r.value >= 0) return r.value === 0 ? [] : buf.toString('utf8', 0, r.value - 1).split('\0');
    if (r.errnoCode !== ERANGE) throw new SysError(r.errnoCode, 'llistxattr', show(path));
  }
}

export function lremovexattr(path: PathArg, name: string): void {
  const [pt, pv] = pathParam(path);
  const r = load({
    library: LIBC, funcName: 'lremovexattr', retType: DataType.I32, errno: true,
    paramsType: [pt, DataType.String], paramsValue: [pv, name],
  }) as ErrnoResult;
  if (r.value === -1 && r.errnoCode === ENODATA) return;
  check(r, 'lremovexattr', path);
}

// ---- times ---------------------------------------------------------------

const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;
const UTIME_OMIT = (1 << 30) - 2;

/**
 * utimensat(2) on the link itself, with exact nanoseconds (Node's lutimes
 * rounds to microseconds). `atimeNs` undefined leaves atime as it is.
 */
export function lutimensNs(path: PathArg, mtimeNs: bigint, atimeNs?: bigint): void {
  const [pt, pv] = pathParam(path);
  const r = load({
    library: LIBC, funcName: 'utimensat', retType: DataType.I32, errno: true,
    paramsType: [DataType.I32, pt, DataType.U8Array, DataType.I32],
    paramsValue: [AT_FDCWD, pv, timespecs(mtimeNs, atimeNs), AT_SYMLINK_NOFOLLOW],
  }) as ErrnoResult;
  check(r, 'utimensat', path);
}

/** futimens(3) with exact nanoseconds on an open fd; `atimeNs` undefined leaves atime as it is. */
export function futimensNs(fd: number, mtimeNs: bigint, atimeNs?: bigint): void {
  const r = load({
    library: LIBC, funcName: 'futimens', retType: DataType.I32, errno: true,
    paramsType: [DataType.I32, DataType.U8Array], paramsValue: [fd, timespecs(mtimeNs, atimeNs)],
  }) as ErrnoResult;
  check(r, 'futimens', `fd ${fd}`);
}

function timespecs(mtimeNs: bigint, atimeNs?: bigint): Buffer {
  const ts = Buffer.alloc(32);
  if (atimeNs === undefined) {
    ts.writeBigInt64LE(0n, 0);
    ts.writeBigInt64LE(BigInt(UTIME_OMIT), 8);
  } else {
    ts.writeBigInt64LE(floorDiv(atimeNs, 1_000_000_000n), 0);
    ts.writeBigInt64LE(mod(atimeNs, 1_000_000_000n), 8);
  }
  ts.writeBigInt64LE(floorDiv(mtimeNs, 1_000_000_000n), 16);
  ts.writeBigInt64LE(mod(mtimeNs, 1_000_000_000n), 24);
  return ts;
}

function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a % b < 0n ? q - 1n : q;
}
function mod(a: bigint, b: bigint): bigint {
  const m = a % b;
  return m < 0n ? m + b : m;
}

// ---- locks and ioctls ----------------------------------------------------

export const LOCK_SH = 1;
export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const LOCK_UN = 8;

/** flock(2) on an open fd; blocks until granted (released by the kernel when the fd closes). */
export function flock(fd: number, op: number, path: string): void {
  const r = load({
    library: LIBC, funcName: 'flock', retType: DataType.I32, errno: true,
    paramsType: [DataType.I32, DataType.I32], paramsValue: [fd, op],
  }) as ErrnoResult;
  check(r, 'flock', path);
}

/** ioctl(2) with a pointer argument; the kernel may write back into `arg`. */
export function ioctl(fd: number, request: number, arg: Buffer, path: string): number {
  const r = load({
    library: LIBC, funcName: 'ioctl', retType: DataType.I32, errno: true,
    paramsType: [DataType.I32, DataType.I64, DataType.U8Array], paramsValue: [fd, request, arg],
  }) as ErrnoResult;
  return check(r, 'ioctl', path);
}

/**
 * ioctl(2) on a thread of its own, for a request that blocks until it is done
 * (BTRFS_IOC_SEND writes its whole stream into a pipe the caller drains meanwhile).
 */
export async function ioctlInThread(fd: number, request: number, arg: Buffer, path: string): Promise<number> {
  const r = await load({
    library: LIBC, funcName: 'ioctl', retType: DataType.I32, errno: true, runInNewThread: true,
    paramsType: [DataType.I32, DataType.I64, DataType.U8Array], paramsValue: [fd, request, arg],
  }) as ErrnoResult;
  return check(r, 'ioctl', path);
}

// ---- waiting for a process (pidfd) and for fds (poll) ----------------------

const SYS_pidfd_open = 434; // x86_64 and aarch64 alike
const POLLIN = 1;

/**
 * Wait up to `timeoutMs` for process `pid` (any, not only a child) to exit:
 * a pidfd becomes readable when it does. True once it is gone (or was
 * already), false on timeout. Blocks the thread: for helpers that exit at once.
 */
export function waitForExit(pid: number, timeoutMs: number): boolean {
  const fd = pidfdOpen(pid);
  if (fd === null) return true;
  try {
    return poll([{ fd, events: POLLIN }], timeoutMs)[0] !== 0;
  } finally {
    closeSync(fd);
  }
}

/** pidfd_open(2): an fd that becomes readable when `pid` exits; null when it is already gone. */
export function pidfdOpen(pid: number): number | null {
  const r = load({
    library: LIBC, funcName: 'syscall', retType: DataType.I64, errno: true,
    paramsType: [DataType.I64, DataType.I32, DataType.I32], paramsValue: [SYS_pidfd_open, pid, 0],
  }) as ErrnoResult;
  if (r.value >= 0) return Number(r.value);
  if (errnoName(r.errnoCode) === 'ESRCH') return null;
  throw new SysError(r.errnoCode, 'pidfd_open', String(pid));
}

export { POLLIN };
/** poll(2) events: urgent data (/proc/self/mountinfo: the mount table changed), error */
export const POLLPRI = 2;
export const POLLERR = 8;

/** poll(2) on `fds` for up to `timeoutMs`: each fd's revents (all 0 on timeout). */
export function poll(fds: { fd: number; events: number }[], timeoutMs: number): number[] {
  const buf = Buffer.alloc(8 * fds.length);
  fds.forEach((f, i) => {
    buf.writeInt32LE(f.fd, 8 * i);
    buf.writeInt16LE(f.events, 8 * i + 4);
  });
  // the kernel writes revents into the array, as into ioctl's argument above
  const p = load({
    library: LIBC, funcName: 'poll', retType: DataType.I32, errno: true,
    paramsType: [DataType.U8Array, DataType.I64, DataType.I32], paramsValue: [buf, fds.length, timeoutMs],
  }) as ErrnoResult;
  check(p, 'poll', `${fds.length} fds`);
  return fds.map((_, i) => buf.readInt16LE(8 * i + 6));
}
