// Read-only access to the files of a store. Every open is O_RDONLY (plus
// O_NOATIME where the kernel allows it, so a forensic read leaves even access
// times alone); nothing in inspect/ opens a store file any other way. Readers
// record a Problem for a missing or unreadable file and get null back, so one
// bad file never stops a report.
import * as fs from 'node:fs';
import type { Problems } from './problems.ts';

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

const SMALL = 64 * 1024;
const smallBuf = Buffer.allocUnsafe(SMALL);

/**
 * The whole file, read through openReadOnly. Metadata files are small: one
 * read into a shared buffer (no fstat) covers them; bigger files are read to
 * their end in a growing buffer.
 */
export function readFileReadOnly(p: string | Buffer): Buffer {
  const fd = openReadOnly(p);
  try {
    let n = 0;
    for (;;) {
      const r = fs.readSync(fd, smallBuf, n, SMALL - n, null);
      if (r === 0) return Buffer.from(smallBuf.subarray(0, n));
      n += r;
      if (n === SMALL) break;
    }
    const size = fs.fstatSync(fd).size;
    let buf = Buffer.allocUnsafe(Math.max(size, SMALL) + 1);
    smallBuf.copy(buf, 0, 0, n);
    for (;;) {
      if (n === buf.length) {
        const bigger = Buffer.allocUnsafe(buf.length * 2);
        buf.copy(bigger, 0, 0, n);
        buf = bigger;
      }
      const r = fs.readSync(fd, buf, n, buf.length - n, null);
      if (r === 0) break;
      n += r;
    }
    return buf.subarray(0, n);
  } finally {
    fs.closeSync(fd);
  }
}

function errCode(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException).code;
}

/** "is missing" / "cannot be read (EACCES)" for an fs error. */
export function describeFsError(e: unknown): string {
  const code = errCode(e);
  if (code === 'ENOENT') return 'is missing';
  if (code === 'ENOTDIR') return 'is missing (a parent is not a directory)';
  if (code === 'EISDIR') return 'is a directory, expected a file';
  return `cannot be read (${code ?? (e as Error).message})`;
}

export interface ReadOpts {
  /** record a problem when the file does not exist (default true) */
  required?: boolean;
  /** what the file is, for the message ("layer size") */
  what?: string;
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

/** Store files read through one Problems list. */
export class StoreFiles {
  constructor(readonly problems: Problems) {}

  /** Raw bytes, or null (problem recorded unless missing and not required). */
  bytes(p: string, opts: ReadOpts = {}): Buffer | null {
    try {
      return readFileReadOnly(p);
    } catch (e) {
      if (errCode(e) === 'ENOENT' && opts.required === false) return null;
      this.problems.add(p, `${opts.what ? opts.what + ' ' : ''}${describeFsError(e)}`);
      return null;
    }
  }

  /** Text content with surrounding whitespace trimmed; an empty file is a problem when required. */
  text(p: string, opts: ReadOpts = {}): string | null {
    const b = this.bytes(p, opts);
    if (b === null) return null;
    const s = b.toString('utf8').trim();
    if (s === '' && opts.required !== false) {
      this.problems.add(p, `${opts.what ? opts.what + ' ' : ''}is empty`);
      return null;
    }
    return s;
  }

  /** Parsed JSON and the exact bytes, or null with a problem (truncated / invalid / missing). */
  json(p: string, opts: ReadOpts = {}): { value: unknown; bytes: Buffer } | null {
    const b = this.bytes(p, opts);
    if (b === null) return null;
    const text = b.toString('utf8');
    try {
      return { value: JSON.parse(text), bytes: b };
    } catch (e) {
      this.problems.add(p, `${opts.what ? opts.what + ' ' : ''}${describeJsonError(text, e)}`);
      return null;
    }
  }

  /** A JSON object (not an array or scalar), or null with a problem. */
  jsonObject(p: string, opts: ReadOpts = {}): { value: Record<string, unknown>; bytes: Buffer } | null {
    const r = this.json(p, opts);
    if (r === null) return null;
    if (typeof r.value !== 'object' || r.value === null || Array.isArray(r.value)) {
      this.problems.add(p, `${opts.what ? opts.what + ' ' : ''}is JSON but not an object`);
      return null;
    }
    return { value: r.value as Record<string, unknown>, bytes: r.bytes };
  }

  /** Decimal integer file (sizes), or null with a problem. */
  integer(p: string, opts: ReadOpts = {}): number | null {
    const s = this.text(p, opts);
    if (s === null) return null;
    if (!/^\d+$/.test(s)) {
      this.problems.add(p, `${opts.what ? opts.what + ' ' : ''}is not a decimal number: ${JSON.stringify(s.slice(0, 40))}`);
      return null;
    }
    return Number(s);
  }

  /** Sorted entry names of a directory, or null (problem unless missing and not required). */
  dir(p: string, opts: ReadOpts = {}): string[] | null {
    try {
      return fs.readdirSync(p).sort();
    } catch (e) {
      if (errCode(e) === 'ENOENT' && opts.required === false) return null;
      this.problems.add(p, `${opts.what ? opts.what + ' ' : ''}${describeFsError(e).replace('expected a file', 'expected a directory')}`);
      return null;
    }
  }
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
