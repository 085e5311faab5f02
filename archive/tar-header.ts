// Tar header codec: ustar, POSIX PAX (path, linkpath, size, uid, gid, mtime,
// atime, SCHILY.xattr.*) and the GNU long-name/long-link extensions.
//
// We read and write headers ourselves instead of going through tar-stream:
// on this machine tar-stream's parser alone costs more CPU than GNU tar's
// whole extract (see bench/), and apply/export are strata's hot path.
// Names stay raw byte strings (see archive/types.ts).
//
// Reading validates every numeric field before it can move the parser (see
// decodeRaw): a hostile header is an error naming its entry and byte offset.
import { displayPath, oneLine } from './types.ts';

export type EntryType = 'file' | 'link' | 'symlink' | 'char' | 'block' | 'dir' | 'fifo';

export interface TarHeader {
  /** raw byte string, as in the archive (no cleaning) */
  name: string;
  type: EntryType;
  /** permission bits incl. setuid/setgid/sticky (07777) */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeSec: number;
  /** 0..999999999; non-zero only when a PAX mtime carried a fraction */
  mtimeNsec: number;
  /** PAX atime in ns, when present */
  atimeNs?: bigint;
  /** link target for 'link' and 'symlink', raw byte string */
  linkname: string;
  devmajor: number;
  devminor: number;
  /** extended attributes from PAX SCHILY.xattr.* records */
  xattrs: Map<string, Buffer> | null;
}

export const BLOCK = 512;

export class TarFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TarFormatError';
  }
}

// ---- reading ---------------------------------------------------------------

/** Octal (NUL/space padded) or GNU base-256 number field. */
export function readNumber(b: Buffer, off: number, len: number, field: string): number {
  const first = b[off];
  if (first & 0x80) {
    // GNU base-256: big-endian two's complement after the marker bit; bit 6 of
    // the first byte is the sign (as Go's archive/tar reads it)
    const neg = (first & 0x40) !== 0;
    const inv = neg ? 0xff : 0;
    let m = (first ^ inv) & 0x7f;
    for (let i = 1; i < len; i++) m = m * 256 + (b[off + i] ^ inv);
    if (!Number.isSafeInteger(m + 1)) throw new TarFormatError(`${field} field is ${neg ? 'negative and ' : ''}out of range`);
    return neg ? -(m + 1) : m;
  }
  let v = 0;
  let i = off;
  const end = off + len;
  while (i < end && (b[i] === 0x20 || b[i] === 0)) i++; // leading spaces
  for (; i < end; i++) {
    const c = b[i];
    if (c === 0 || c === 0x20) break;
    if (c < 0x30 || c > 0x37) throw new TarFormatError(`${field} field is not octal`);
    v = v * 8 + (c - 0x30);
  }
  return v;
}

function readString(b: Buffer, off: number, len: number): string {
  let end = b.indexOf(0, off);
  if (end === -1 || end > off + len) end = off + len;
  return b.toString('latin1', off, end);
}

export function isZeroBlock(b: Buffer, off: number): boolean {
  for (let i = off; i < off + BLOCK; i++) if (b[i] !== 0) return false;
  return true;
}

function checksumOk(b: Buffer, off: number): boolean {
  let stored: number;
  try {
    stored = readNumber(b, off + 148, 8, 'checksum');
  } catch {
    return false; // not even a number: not a header
  }
  // the checksum field counts as eight spaces
  let unsigned = 8 * 0x20;
  for (let i = off; i < off + 148; i++) unsigned += b[i];
  for (let i = off + 156; i < off + BLOCK; i++) unsigned += b[i];
  if (stored === unsigned) return true;
  // some old writers summed signed chars
  let signed = 8 * 0x20;
  for (let i = 0; i < BLOCK; i++) {
    if (i >= 148 && i < 156) continue;
    const c = b[off + i];
    signed += c > 127 ? c - 256 : c;
  }
  return stored === signed;
}

/** Raw fields of one 512-byte header block, before PAX/GNU overrides. */
export interface RawHeader {
  typeflag: number;
  name: string;
  linkname: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  devmajor: number;
  devminor: number;
}

/** Largest uid, gid, devmajor and devminor (32 bits, as the kernel's). */
export const MAX_ID = 0xffffffff;

/**
 * The raw fields of the header block at byte `position` of the stream, each
 * validated: size, uid, gid, mode and device numbers non-negative and within
 * range (mtime may be negative: before 1970). Errors name the entry — `name`
 * when an earlier PAX or GNU long-name header gave it, else the block's own —
 * and `entryAt`, the byte offset of the entry's first header (a PAX or GNU
 * one before this block, else this block's `position`).
 */
export function decodeRaw(b: Buffer, off: number, position: number, name?: string, entryAt = position): RawHeader {
  if (!checksumOk(b, off)) throw new TarFormatError(`invalid tar header checksum at byte ${position}`);
  const ustar = b[off + 257] === 0x75 && b[off + 258] === 0x73 && b[off + 259] === 0x74 &&
    b[off + 260] === 0x61 && b[off + 261] === 0x72;
  // "ustar\0" is POSIX (has a prefix field); "ustar " is GNU (atime/ctime there instead)
  const posix = ustar && b[off + 262] === 0;
  let ownName = readString(b, off, 100);
  if (posix && b[off + 345] !== 0) ownName = readString(b, off + 345, 155) + '/' + ownName;
  const who = name ?? ownName;
  return {
    typeflag: b[off + 156],
    name: ownName,
    linkname: readString(b, off + 157, 100),
    mode: numField(b, off + 100, 8, 'mode', Number.MAX_SAFE_INTEGER, false, who, entryAt),
    uid: numField(b, off + 108, 8, 'uid', MAX_ID, false, who, entryAt),
    gid: numField(b, off + 116, 8, 'gid', MAX_ID, false, who, entryAt),
    size: numField(b, off + 124, 12, 'size', MAX_SIZE, false, who, entryAt),
    mtime: numField(b, off + 136, 12, 'mtime', Number.MAX_SAFE_INTEGER, true, who, entryAt),
    devmajor: ustar ? numField(b, off + 329, 8, 'devmajor', MAX_ID, false, who, entryAt) : 0,
    devminor: ustar ? numField(b, off + 337, 8, 'devminor', MAX_ID, false, who, entryAt) : 0,
  };
}

/** A header's number field at b[at], checked: an error names entry `who` (header at byte `entryAt`). */
function numField(b: Buffer, at: number, len: number, field: string, max: number, signed: boolean, who: string, entryAt: number): number {
  let v: number;
  try {
    v = readNumber(b, at, len, field);
  } catch (e) {
    throw e instanceof TarFormatError ? entryError(who, entryAt, e.message) : e;
  }
  if (v < 0 && !signed) throw entryError(who, entryAt, `${field} field is negative (${v})`);
  if (v < -Number.MAX_SAFE_INTEGER) throw entryError(who, entryAt, `${field} field is out of range (${v})`);
  if (v > max) throw entryError(who, entryAt, `${field} field is out of range (${v})`);
  return v;
}

/** Sizes up to 2^53-1 (8 PiB): what a JS number holds exactly; no layer comes near. */
export const MAX_SIZE = Number.MAX_SAFE_INTEGER;

/** An error in the header of the entry `name` at byte `position`. */
export function entryError(name: string, position: number, what: string): TarFormatError {
  return new TarFormatError(oneLine(`tar entry "${displayPath(name)}" (header at byte ${position}): ${what}`));
}

/**
 * PAX records: `"%d %s=%s\n"`; values stay raw bytes. Each record's length
 * is checked (decimal, covering its own line, within the body); `base` is the
 * body's byte offset in the stream, for the messages.
 */
const NUL_FREE_VALUES = new Set(['path', 'linkpath', 'uname', 'gname']);

export function parsePax(buf: Buffer, into: Map<string, Buffer>, base = 0): void {
  let i = 0;
  while (i < buf.length) {
    if (buf[i] === 0) break; // NUL padding written by some tools
    const at = `malformed PAX record at byte ${base + i}`;
    const sp = buf.indexOf(0x20, i);
    if (sp === -1 || sp - i > 20) throw new TarFormatError(`${at} (no length)`);
    const digits = buf.toString('latin1', i, sp);
    if (!/^[0-9]+$/.test(digits)) throw new TarFormatError(`${at} (length "${digits}" is not decimal)`);
    const len = Number(digits);
    if (len <= sp - i + 1 || i + len > buf.length || buf[i + len - 1] !== 0x0a) {
      throw new TarFormatError(`${at} (length ${len} does not end a record inside the ${buf.length}-byte body)`);
    }
    const eq = buf.indexOf(0x3d, sp + 1);
    if (eq === -1 || eq >= i + len) throw new TarFormatError(`${at} (no "=")`);
    const key = buf.toString('utf8', sp + 1, eq);
    const value = buf.subarray(eq + 1, i + len - 1);
    // as Go's archive/tar (validPAXRecord): a NUL would cut the name a syscall sees
    if (key.includes('\0')) throw new TarFormatError(`${at} (a NUL byte in the key)`);
    if (NUL_FREE_VALUES.has(key) && value.includes(0)) throw new TarFormatError(`${at} (a NUL byte in the "${key}" value)`);
    into.set(key, Buffer.from(value));
    i += len;
  }
}

const typeByFlag: Record<number, EntryType> = {
  0x30: 'file', 0x00: 'file', 0x37: 'file', // '0', NUL (old), '7' contiguous
  0x31: 'link', 0x32: 'symlink', 0x33: 'char', 0x34: 'block', 0x35: 'dir', 0x36: 'fifo',
};

export function entryTypeOf(typeflag: number, name: string): EntryType | undefined {
  const t = typeByFlag[typeflag];
  // pre-POSIX tars (typeflag NUL) mark directories only by a trailing slash. Only those, as
  // Go's archive/tar (moby): a '0' entry named `x/` is the file x, its body data, never headers
  if (typeflag === 0x00 && name.endsWith('/')) return 'dir';
  return t;
}

/** PAX "sec[.frac]" → seconds and nanoseconds (negative times allowed). */
export function parsePaxTime(v: string): { sec: number; nsec: number } {
  const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(v);
  if (!m) throw new TarFormatError(`malformed PAX time "${v}"`);
  const frac = ((m[3] ?? '') + '000000000').slice(0, 9);
  let sec = Number(m[2]);
  let nsec = Number(frac);
  if (m[1] === '-') {
    sec = -sec;
    if (nsec) {
      sec -= 1;
      nsec = 1e9 - nsec;
    }
  }
  return { sec, nsec };
}

// ---- writing ---------------------------------------------------------------

const flagByType: Record<EntryType, number> = {
  file: 0x30, link: 0x31, symlink: 0x32, char: 0x33, block: 0x34, dir: 0x35, fifo: 0x36,
};

/** File type bits moby puts in the mode field (fillGo18FileTypeBits). */
const typeModeBits: Record<EntryType, number> = {
  file: 0o100000, link: 0o100000, symlink: 0o120000, char: 0o020000, block: 0o060000, dir: 0o040000, fifo: 0o010000,
};

const MAX_OCTAL_8 = 0o7777777;
const MAX_OCTAL_12 = 0o77777777777;

// The encoder runs once per exported entry, so it writes bytes in place: no
// intermediate strings or Buffers for the common header, the PAX records
// written straight after their header block, and the checksum summed as the
// fields are written (the block starts as a template whose sum is known).

/** A header block before its fields: zeros, the POSIX magic, the checksum field as spaces. */
const TEMPLATE = Buffer.alloc(BLOCK);
TEMPLATE.write('ustar\u000000', 257, 8, 'latin1');
TEMPLATE.fill(0x20, 148, 156);
const TEMPLATE_SUM = TEMPLATE.reduce((a, c) => a + c, 0);

/**
 * `v` as len-1 octal digits, zero padded, NUL terminated (Go's formatOctal);
 * returns the byte sum written. A value too wide for the field keeps its
 * high digits, as the string form always did (device numbers are not clamped).
 */
function putOctal(b: Buffer, off: number, len: number, v: number): number {
  b[off + len - 1] = 0;
  if (!(v >= 0 && v < 8 ** (len - 1) && Number.isInteger(v))) return putLatin1(b, off, len - 1, v.toString(8).padStart(len - 1, '0'));
  let sum = 0;
  for (let i = off + len - 2; i >= off; i--) {
    const d = v % 8;
    b[i] = 0x30 + d;
    sum += 0x30 + d;
    v = (v - d) / 8;
  }
  return sum;
}

/** At most `max` chars of `s` as latin1 bytes (the low byte of each, as Buffer.write does); returns their sum. */
function putLatin1(b: Buffer, off: number, max: number, s: string): number {
  const n = Math.min(max, s.length);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i) & 0xff;
    b[off + i] = c;
    sum += c;
  }
  return sum;
}

/** Bytes of a PAX record's value: a raw byte string (latin1) or bytes. */
type PaxValue = string | Buffer;

/** Length of the record `"%d %s=%s\n"`, its own decimal length included. */
function paxRecordLength(keyBytes: number, valueBytes: number): number {
  const rest = 1 + keyBytes + 1 + valueBytes + 1; // ' ' key '=' value '\n'
  let len = rest + String(rest).length;
  if (String(len).length !== String(rest).length) len = rest + String(len).length;
  return len;
}

/** Write one PAX record at `at`; returns the position after it. */
function putPaxRecord(out: Buffer, at: number, key: string, value: PaxValue): number {
  const ascii = !/[^\x00-\x7f]/.test(key);
  const keyBytes = ascii ? key.length : Buffer.byteLength(key, 'utf8');
  const len = paxRecordLength(keyBytes, value.length);
  const digits = String(len);
  putLatin1(out, at, digits.length, digits);
  at += digits.length;
  out[at++] = 0x20;
  if (ascii) putLatin1(out, at, keyBytes, key);
  else out.write(key, at, keyBytes, 'utf8');
  at += keyBytes;
  out[at++] = 0x3d;
  if (typeof value === 'string') putLatin1(out, at, value.length, value);
  else value.copy(out, at);
  at += value.length;
  out[at++] = 0x0a;
  return at;
}

/** Split a long name into ustar prefix/name, or null when it cannot be split. */
function splitUstar(name: string): [string, string] | null {
  if (name.length <= 100) return ['', name];
  const start = Math.max(0, name.length - 101);
  for (let i = name.indexOf('/', start); i !== -1 && i <= 155; i = name.indexOf('/', i + 1)) {
    if (i > 0 && name.length - i - 1 <= 100 && name.length - i - 1 > 0) return [name.slice(0, i), name.slice(i + 1)];
  }
  return null;
}

/** The last component of `name` (a trailing slash dropped), for the PAX header's own name. */
function baseName(name: string): string {
  const end = name.endsWith('/') ? name.length - 1 : name.length;
  return name.slice(name.lastIndexOf('/', end - 1) + 1, end);
}

/**
 * Encode one entry's header block(s) into `out` at `off`; returns the bytes
 * written (512, or more when a PAX header is needed). `out` must have room
 * for `headerSpace(h)` bytes.
 */
export function encodeHeader(h: TarHeader, out: Buffer, off: number): number {
  const split = splitUstar(h.name);
  const longLink = h.linkname.length > 100;
  const paxTime = h.mtimeNsec !== 0 || h.mtimeSec < 0 || h.mtimeSec > MAX_OCTAL_12;
  let n = 0;
  if (!split || longLink || h.size > MAX_OCTAL_12 || h.uid > MAX_OCTAL_8 || h.uid < 0 || h.gid > MAX_OCTAL_8 || h.gid < 0 || paxTime || h.xattrs) {
    // the records go right after their header block, which is written once their length is known
    const body = off + BLOCK;
    let at = body;
    if (!split) at = putPaxRecord(out, at, 'path', h.name);
    if (longLink) at = putPaxRecord(out, at, 'linkpath', h.linkname);
    if (h.size > MAX_OCTAL_12) at = putPaxRecord(out, at, 'size', String(h.size));
    if (h.uid > MAX_OCTAL_8 || h.uid < 0) at = putPaxRecord(out, at, 'uid', String(h.uid));
    if (h.gid > MAX_OCTAL_8 || h.gid < 0) at = putPaxRecord(out, at, 'gid', String(h.gid));
    if (paxTime) at = putPaxRecord(out, at, 'mtime', formatPaxTime(h.mtimeSec, h.mtimeNsec));
    if (h.xattrs) {
      for (const k of [...h.xattrs.keys()].sort()) at = putPaxRecord(out, at, 'SCHILY.xattr.' + k, h.xattrs.get(k)!);
    }
    const size = at - body;
    writeBlock(out, off, ('PaxHeaders.0/' + baseName(h.name)).slice(0, 100), '', 0o644, 0, 0, size, clampTime(h.mtimeSec), 0x78, 0, 0);
    const pad = (BLOCK - (size % BLOCK)) % BLOCK;
    out.fill(0, at, at + pad);
    n = BLOCK + size + pad;
  }
  const [prefix, name] = split ?? ['', h.name.slice(0, 100)];
  writeBlock(out, off + n, name, longLink ? h.linkname.slice(0, 100) : h.linkname,
    (h.mode & 0o7777) | typeModeBits[h.type],
    Math.min(Math.max(h.uid, 0), MAX_OCTAL_8), Math.min(Math.max(h.gid, 0), MAX_OCTAL_8),
    h.size > MAX_OCTAL_12 ? 0 : h.size, clampTime(h.mtimeSec), flagByType[h.type], h.devmajor, h.devminor, prefix);
  return n + BLOCK;
}

/** Upper bound of the bytes encodeHeader writes for `h`. */
export function headerSpace(h: TarHeader): number {
  let extra = h.name.length + h.linkname.length + 256;
  if (h.xattrs) for (const [k, v] of h.xattrs) extra += k.length + v.length + 48;
  return BLOCK * 2 + extra + BLOCK;
}

function clampTime(sec: number): number {
  return Math.min(Math.max(sec, 0), MAX_OCTAL_12);
}

/** PAX "sec[.frac]": the fraction without trailing zeros, negative times as their floor plus a fraction. */
export function formatPaxTime(sec: number, nsec: number): string {
  if (!nsec) return String(sec);
  const neg = sec < 0;
  let frac = neg ? 1e9 - nsec : nsec;
  let digits = 9;
  while (frac % 10 === 0) {
    frac /= 10;
    digits--;
  }
  return `${neg ? '-' + (-sec - 1) : sec}.${String(frac).padStart(digits, '0')}`;
}

function writeBlock(out: Buffer, off: number, name: string, linkname: string, mode: number, uid: number, gid: number,
  size: number, mtime: number, typeflag: number, devmajor: number, devminor: number, prefix = ''): void {
  TEMPLATE.copy(out, off);
  let sum = TEMPLATE_SUM + typeflag;
  sum += putLatin1(out, off, 100, name);
  sum += putOctal(out, off + 100, 8, mode);
  sum += putOctal(out, off + 108, 8, uid);
  sum += putOctal(out, off + 116, 8, gid);
  sum += putOctal(out, off + 124, 12, size);
  sum += putOctal(out, off + 136, 12, mtime);
  out[off + 156] = typeflag;
  sum += putLatin1(out, off + 157, 100, linkname);
  if (typeflag === 0x33 || typeflag === 0x34) {
    sum += putOctal(out, off + 329, 8, devmajor);
    sum += putOctal(out, off + 337, 8, devminor);
  }
  if (prefix) sum += putLatin1(out, off + 345, 155, prefix);
  // six octal digits, NUL, space (a block sums to at most 512 × 255, six digits)
  putOctal(out, off + 148, 7, sum);
  out[off + 155] = 0x20;
}
