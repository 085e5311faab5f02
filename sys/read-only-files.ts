// Read-only access to the files of a store, for every reader of one (inspect,
// the layer store, the drivers' read-only opens). Every open is O_RDONLY (plus
// O_NOATIME where the kernel allows it, so a forensic read leaves even access
// times alone); no reader opens a store file any other way. A store
// may be damaged or hostile, so a reader never blocks and never slurps:
// metadata is opened O_NONBLOCK|O_NOFOLLOW and fstat-checked to be a regular
// file (a FIFO, a device, a symlink to /dev/zero are refused unread), and read
// whole only below a size cap per kind of file.
import * as fs from 'node:fs';
import { readDirStrings } from './read-dir.ts';

const O_RDONLY = fs.constants.O_RDONLY;
const O_NOATIME: number = (fs.constants as Record<string, number>).O_NOATIME ?? 0;
let noAtime = O_NOATIME !== 0;

/**
 * Open a file read-only, without updating its access time where allowed
 * (O_NOATIME needs file ownership or CAP_FOWNER: on EPERM we fall back to a
 * plain O_RDONLY open and stop trying). `extra` adds flags such as O_NOFOLLOW.
 */
export function openReadOnly(p: string | Buffer, extra = 0): number {
  if (noAtime) {
    try {
      return fs.openSync(p, O_RDONLY | O_NOATIME | extra);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EPERM') throw e;
      noAtime = false;
    }
  }
  return fs.openSync(p, O_RDONLY | extra);
}

const O_NONBLOCK = fs.constants.O_NONBLOCK;
const SMALL = 64 * 1024;
const smallBuf = Buffer.allocUnsafe(SMALL);
const O_NOFOLLOW = fs.constants.O_NOFOLLOW;

/**
 * Size caps per kind of metadata, far above what a real store holds, so that a
 * /dev/zero or a huge sparse file in place of one is refused before it is read:
 * - TEXT_CAP (64 KiB): one-line files (diff, size, cache-id, parent, mount-id,
 *   link, lower, layersize, tag_*, _checksum…). The longest real one, an
 *   overlay2 `lower` at moby's 128-layer limit, is under 4 KiB.
 * - JSON_CAP (8 MiB): one JSON document (image config, container config,
 *   v1 image JSON, ancestry, _index_images, devicemapper device JSON). Real
 *   ones are a few KiB; a config with thousands of history entries or labels
 *   stays far below 1 MiB.
 * - TAG_STORE_CAP (32 MiB): repositories.json / repositories-<driver>, which
 *   grow with every reference (~150 bytes each: 32 MiB is ~200,000 references).
 */
export const TEXT_CAP = 64 << 10;
export const JSON_CAP = 8 << 20;
export const TAG_STORE_CAP = 32 << 20;

/** A store file that is not what its format says (not a regular file, over its cap); `code` like an fs error's. */
export class StoreFileError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = 'StoreFileError';
  }
}

/** "8 MiB" / "64 KiB" for caps and sizes in messages. */
export function capText(n: number): string {
  if (n >= 1 << 20 && n % (1 << 20) === 0) return `${n / (1 << 20)} MiB`;
  if (n >= 1 << 10 && n % (1 << 10) === 0) return `${n / (1 << 10)} KiB`;
  return `${n} bytes`;
}

export function kindOf(st: fs.Stats): string {
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  if (st.isDirectory()) return 'a directory';
  if (st.isSymbolicLink()) return 'a symlink';
  if (st.isFile()) return 'a regular file'; // where a directory was expected
  return 'not a regular file';
}

export interface OpenRegularOpts {
  /** follow a symlink in the last component (default false: no store metadata file is a symlink) */
  follow?: boolean;
}

/**
 * Open a store file that must be a regular file: O_NONBLOCK (a FIFO does not
 * block the open), O_NOFOLLOW unless `follow`, then fstat — anything but a
 * regular file is closed and refused (StoreFileError ENOTREG), so no reader
 * ever blocks on a FIFO or reads a device. Returns the fd and its stat.
 */
export function openRegular(p: string | Buffer, opts: OpenRegularOpts = {}): { fd: number; st: fs.Stats } {
  const fd = openReadOnly(p, O_NONBLOCK | (opts.follow ? 0 : O_NOFOLLOW));
  let st: fs.Stats;
  try {
    st = fs.fstatSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
  if (!st.isFile()) {
    fs.closeSync(fd);
    throw new StoreFileError('ENOTREG', `is ${kindOf(st)}, expected a regular file`);
  }
  return { fd, st };
}

/** The over-the-cap message: "is 3221225472 bytes, over the 8 MiB cap for JSON metadata". */
function overCap(size: number | null, cap: number, what: string): StoreFileError {
  return new StoreFileError('EFBIG', `is ${size === null ? `over ${cap}` : size} bytes, over the ${capText(cap)} cap for ${what}`);
}

/**
 * The whole of a regular store file of at most `cap` bytes, read through
 * openRegular. The fstat size is checked first (a huge sparse file is refused
 * unread) and the read itself stops at cap + 1 bytes (a file that grows, or
 * reports size 0, cannot make it read more).
 */
export function readFileReadOnly(p: string | Buffer, cap = JSON_CAP, what = cap <= TEXT_CAP ? 'metadata text files' : 'JSON metadata'): Buffer {
  const { fd, st } = openRegular(p);
  try {
    if (st.size > cap) throw overCap(st.size, cap, what);
    // most metadata files fit one read into a shared buffer (listing 1,000 images reads ~7,000 files)
    let n = 0;
    for (;;) {
      const r = fs.readSync(fd, smallBuf, n, SMALL - n, null);
      if (r === 0) {
        if (n > cap) throw overCap(null, cap, what);
        return Buffer.from(smallBuf.subarray(0, n));
      }
      n += r;
      if (n === SMALL) break;
    }
    let buf = Buffer.allocUnsafe(Math.min(cap, Math.max(st.size, SMALL * 2)) + 1);
    smallBuf.copy(buf, 0, 0, n);
    for (;;) {
      if (n > cap) throw overCap(null, cap, what);
      if (n === buf.length) {
        const bigger = Buffer.allocUnsafe(Math.min(cap + 1, n * 2));
        buf.copy(bigger, 0, 0, n);
        buf = bigger;
      }
      const r = fs.readSync(fd, buf, n, buf.length - n, null);
      if (r === 0) break;
      n += r;
    }
    if (n > cap) throw overCap(null, cap, what);
    return buf.subarray(0, n);
  } finally {
    fs.closeSync(fd);
  }
}

export function errCode(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException).code;
}

/** "is missing" / "cannot be read (EACCES)" for an fs error. */
export function describeFsError(e: unknown): string {
  const code = errCode(e);
  if (code === 'ENOENT') return 'is missing';
  if (code === 'ENOTDIR') return 'is missing (a parent is not a directory)';
  if (code === 'EISDIR') return 'is a directory, expected a file';
  if (code === 'ELOOP') return 'is a symlink (not followed: the store format has none here)';
  if (e instanceof StoreFileError) return e.message;
  return `cannot be read (${code ?? (e as Error).message})`;
}

/** JSON.parse failures worded for people: truncation is told apart from other damage. */
export function describeJsonError(text: string, e: unknown): string {
  const t = text.trimEnd();
  const msg = (e as Error).message;
  if (t === '') return 'is empty (expected JSON)';
  const last = t[t.length - 1];
  if (/end of JSON input|Unterminated/.test(msg) || (last !== '}' && last !== ']' && last !== '"' && !/[0-9a-z]$/.test(last))) {
    return `is truncated JSON (${t.length} bytes, ${msg})`;
  }
  return `is not valid JSON (${msg})`;
}

/** Why a number read as a byte count is not one ('' when it is): negative, fractional or beyond 2^53 − 1. */
export function sizeProblem(n: number, text = String(n)): string {
  const shown = JSON.stringify(text.length > 40 ? text.slice(0, 40) + '…' : text);
  if (!Number.isFinite(n) || n > Number.MAX_SAFE_INTEGER) return `is ${shown}, beyond any real size (over 2^53 − 1 bytes)`;
  if (n < 0) return `is ${shown}, a negative size`;
  if (!Number.isInteger(n)) return `is ${shown}, not a whole number of bytes`;
  return '';
}

/** lstat without throwing: undefined when the path does not exist or cannot be reached. */
export function lstatQuiet(p: string | Buffer): fs.Stats | undefined {
  try {
    return fs.lstatSync(p);
  } catch {
    return undefined;
  }
}

export function isDirectory(p: string): boolean {
  return lstatQuiet(p)?.isDirectory() ?? false;
}

export function isFile(p: string): boolean {
  return lstatQuiet(p)?.isFile() ?? false;
}

/** A JSON value as a string ('' when it is not one): store files are read leniently, problems reported elsewhere. */
export function asString(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

/** A JSON value as a plain object (null when it is not one). */
export function asObject(v: unknown): Record<string, unknown> | null {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
}

/** The names in a directory, sorted; [] when it cannot be listed (the inventory and verify report that themselves). */
export function listSorted(d: string): string[] {
  try {
    return readDirStrings(d).sort();
  } catch {
    return [];
  }
}
