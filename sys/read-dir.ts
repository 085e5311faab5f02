// Directory listings that leave access times alone. fs.readdirSync and
// opendirSync open a directory without O_NOATIME, so under relatime every
// listing of a store moved its directories' atimes; a store reader never
// writes, not even that. Here a directory is opened O_RDONLY|O_DIRECTORY|
// O_NOATIME (plain O_RDONLY when EPERM says we neither own it nor hold
// CAP_FOWNER) and read with getdents64 into one reused 64 KiB buffer: one ffi
// call per buffer, not per entry. Names stay bytes (a latin1 string is a
// lossless byte string, the archive's raw form), so non-UTF-8 names survive.
import * as fs from 'node:fs';
import { errnoName } from './errno.ts';
import { LIBC, loadLibc } from './ffi-load.ts';

type Getdents = (fd: number) => number;
interface Bound { plain: Getdents; withErrno: (fd: number) => { value: number; errnoCode: number } }
let bound: Bound | undefined;

/** getdents64, bound on first use: importing this module (the layout table does) loads no FFI. */
function getdents(): Bound {
  if (bound) return bound;
  const { load, DataType } = loadLibc();
  const paramsType = [DataType.I32, DataType.U8Array, DataType.I64];
  // the usual call goes without ffi-rs's errno capture (a share of its cost); only a failure is repeated with it
  return (bound = {
    plain: (fd) => load({ library: LIBC, funcName: 'getdents64', retType: DataType.I64, paramsType, paramsValue: [fd, buf, BUF_SIZE] }) as number,
    withErrno: (fd) => load({ library: LIBC, funcName: 'getdents64', retType: DataType.I64, errno: true, paramsType, paramsValue: [fd, buf, BUF_SIZE] }) as { value: number; errnoCode: number },
  });
}

/** A failed getdents64 in fs's own error shape (code, errno, syscall, path), like readdirSync's. */
function getdentsError(errno: number, p: string | Buffer): NodeJS.ErrnoException {
  const code = errnoName(errno);
  const path = typeof p === 'string' ? p : p.toString('utf8');
  return Object.assign(new Error(`${code}: getdents64 '${path}'`), { code, errno: -errno, syscall: 'getdents64', path });
}

const O_NOATIME: number = (fs.constants as Record<string, number>).O_NOATIME ?? 0;
const O_DIRECTORY = fs.constants.O_DIRECTORY;
const O_NOFOLLOW = fs.constants.O_NOFOLLOW;
const BUF_SIZE = 64 * 1024;
const buf = Buffer.allocUnsafe(BUF_SIZE);

// linux_dirent64: u64 d_ino, s64 d_off, u16 d_reclen, u8 d_type, char d_name[] (NUL-terminated)
const RECLEN = 16;
const TYPE = 18;
const NAME = 19;
const DOT = 0x2e;

/** d_type values (<dirent.h>); DT_UNKNOWN is resolved by lstat before an entry is returned. */
export const DT_UNKNOWN = 0;
export const DT_FIFO = 1;
export const DT_CHR = 2;
export const DT_DIR = 4;
export const DT_BLK = 6;
export const DT_REG = 8;
export const DT_LNK = 10;
export const DT_SOCK = 12;

export interface ReadDirOpts {
  /** refuse a symlink as the directory itself (ELOOP), for callers that already refuse symlinks */
  noFollow?: boolean;
}

/** One entry of a listing, like fs.Dirent: its name (bytes, or UTF-8 text) and its type from d_type. */
export class DirEntry<N extends Buffer | string = Buffer> {
  constructor(readonly name: N, readonly type: number, readonly ino: bigint) {}
  isDirectory(): boolean { return this.type === DT_DIR; }
  isFile(): boolean { return this.type === DT_REG; }
  isSymbolicLink(): boolean { return this.type === DT_LNK; }
  isCharacterDevice(): boolean { return this.type === DT_CHR; }
  isBlockDevice(): boolean { return this.type === DT_BLK; }
  isFIFO(): boolean { return this.type === DT_FIFO; }
  isSocket(): boolean { return this.type === DT_SOCK; }
}

/**
 * Open a directory for listing: O_NOATIME where allowed (EPERM when neither
 * owner nor CAP_FOWNER: retried without it, per directory, so the ones we do
 * own still keep their atimes). Follows a symlink unless `noFollow`.
 */
export function openDirReadOnly(p: string | Buffer, opts: ReadDirOpts = {}): number {
  const flags = fs.constants.O_RDONLY | O_DIRECTORY | (opts.noFollow ? O_NOFOLLOW : 0);
  if (O_NOATIME !== 0) {
    try {
      return fs.openSync(p, flags | O_NOATIME);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EPERM') throw e;
    }
  }
  return fs.openSync(p, flags);
}

/** Called per entry; returning true ends the listing there. */
type Visit = (nameStart: number, nameEnd: number, type: number, at: number) => boolean | void;

/** Every entry of the open directory `fd` but . and .., each visited while it is still in the buffer. */
function eachEntry(fd: number, p: string | Buffer, visit: Visit): void {
  const call = getdents();
  for (;;) {
    let n = call.plain(fd);
    if (n === -1) {
      const r = call.withErrno(fd);
      // ffi-rs leaves a stale errno on success, so the return value decides
      if (r.value === -1) throw getdentsError(r.errnoCode, p);
      n = r.value; // it succeeded this time
    }
    if (n === 0) return;
    for (let at = 0; at < n; at += buf.readUInt16LE(at + RECLEN)) {
      const start = at + NAME;
      const end = buf.indexOf(0, start);
      if (buf[start] === DOT && (end === start + 1 || (end === start + 2 && buf[start + 1] === DOT))) continue;
      if (visit(start, end, buf[at + TYPE], at) === true) return;
    }
  }
}

function listWith(p: string | Buffer, opts: ReadDirOpts, visit: Visit): void {
  const fd = openDirReadOnly(p, opts);
  try {
    eachEntry(fd, p, visit);
  } finally {
    fs.closeSync(fd);
  }
}

/** Whether directory `p` has any entry but . and .. (reads no further than the first one found). */
export function dirHasEntries(p: string | Buffer, opts: ReadDirOpts = {}): boolean {
  let found = false;
  listWith(p, opts, () => (found = true));
  return found;
}

/** The names in directory `p` as bytes, in directory order (like readdirSync with encoding 'buffer'). */
export function readDirNames(p: string | Buffer, opts: ReadDirOpts = {}): Buffer[] {
  const out: Buffer[] = [];
  listWith(p, opts, (s, e) => void out.push(Buffer.from(buf.subarray(s, e))));
  return out;
}

/** The names in directory `p` as raw byte strings (latin1: one char per byte), in directory order. */
export function readDirRawNames(p: string | Buffer, opts: ReadDirOpts = {}): string[] {
  const out: string[] = [];
  listWith(p, opts, (s, e) => void out.push(buf.toString('latin1', s, e)));
  return out;
}

/** The names in directory `p` as UTF-8 strings (like plain readdirSync), in directory order. */
export function readDirStrings(p: string | Buffer, opts: ReadDirOpts = {}): string[] {
  const out: string[] = [];
  listWith(p, opts, (s, e) => void out.push(buf.toString('utf8', s, e)));
  return out;
}

/** The entries of directory `p` with their types (like readdirSync withFileTypes, encoding 'buffer'). */
export function readDirEntries(p: string | Buffer, opts: ReadDirOpts = {}): DirEntry<Buffer>[] {
  const out: DirEntry<Buffer>[] = [];
  listWith(p, opts, (s, e, type, at) => void out.push(new DirEntry(Buffer.from(buf.subarray(s, e)), type, buf.readBigUInt64LE(at))));
  return resolveUnknown(p, out, (n) => n);
}

/** The entries of directory `p` with their types and UTF-8 names (like plain readdirSync withFileTypes). */
export function readDirEntryStrings(p: string | Buffer, opts: ReadDirOpts = {}): DirEntry<string>[] {
  const out: DirEntry<string>[] = [];
  listWith(p, opts, (s, e, type, at) => void out.push(new DirEntry(buf.toString('utf8', s, e), type, buf.readBigUInt64LE(at))));
  return resolveUnknown(p, out, (n) => Buffer.from(n, 'utf8'));
}

/** Some filesystems leave d_type unset: those entries are lstat'ed, as Node's Dirent does. */
function resolveUnknown<N extends Buffer | string>(p: string | Buffer, out: DirEntry<N>[], bytes: (n: N) => Buffer): DirEntry<N>[] {
  for (let i = 0; i < out.length; i++) {
    const d = out[i];
    if (d.type === DT_UNKNOWN) out[i] = new DirEntry(d.name, typeOf(Buffer.concat([Buffer.from(p), Buffer.from('/'), bytes(d.name)])), d.ino);
  }
  return out;
}

function typeOf(p: Buffer): number {
  const st = fs.lstatSync(p, { throwIfNoEntry: false });
  if (!st) return DT_UNKNOWN;
  if (st.isDirectory()) return DT_DIR;
  if (st.isFile()) return DT_REG;
  if (st.isSymbolicLink()) return DT_LNK;
  if (st.isCharacterDevice()) return DT_CHR;
  if (st.isBlockDevice()) return DT_BLK;
  if (st.isFIFO()) return DT_FIFO;
  if (st.isSocket()) return DT_SOCK;
  return DT_UNKNOWN;
}
