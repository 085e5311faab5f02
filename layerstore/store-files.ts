// Store files read through one Problems list: the readers record a Problem
// for a missing, unreadable or refused file and get null back, so one bad
// file never stops a report. The opens themselves are sys/read-only-files.ts.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Problems } from './problems.ts';
import { JSON_CAP, TEXT_CAP, describeFsError, describeJsonError, errCode, kindOf, lstatQuiet, readFileReadOnly, sizeProblem } from '../sys/read-only-files.ts';
import { type DirEntry, readDirEntryStrings, readDirStrings } from '../sys/read-dir.ts';

export interface ReadOpts {
  /** record a problem when the file does not exist (default true) */
  required?: boolean;
  /** what the file is, for the message ("layer size") */
  what?: string;
  /** size cap (default TEXT_CAP for text and integers, JSON_CAP for JSON) */
  cap?: number;
  /** dir(): the directory may be a symlink (a top-level entry of the root an operator moved to another disk) */
  mayBeLink?: boolean;
}

/** Store files read through one Problems list. */
export class StoreFiles {
  constructor(readonly problems: Problems) {}

  /** Raw bytes, or null (problem recorded unless missing and not required). */
  bytes(p: string, opts: ReadOpts = {}): Buffer | null {
    try {
      return readFileReadOnly(p, opts.cap ?? JSON_CAP);
    } catch (e) {
      if (errCode(e) === 'ENOENT' && opts.required === false) return null;
      this.problems.add(p, `${opts.what ? opts.what + ' ' : ''}${describeFsError(e)}`);
      return null;
    }
  }

  /** Text content with surrounding whitespace trimmed; an empty file is a problem when required. */
  text(p: string, opts: ReadOpts = {}): string | null {
    const b = this.bytes(p, { cap: TEXT_CAP, ...opts });
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
    const n = Number(s);
    if (!Number.isSafeInteger(n)) {
      this.problems.add(p, `${opts.what ? opts.what + ' ' : ''}${sizeProblem(n, s)}`);
      return null;
    }
    return n;
  }

  /**
   * The subdirectories of `p` by name, from the entry types readdir gives (no
   * lstat per entry); entries that are symlinks or not directories are
   * problems (`what` names them), not followed. null when `p` is missing.
   */
  subdirs(p: string, what: string, opts: ReadOpts = {}): string[] | null {
    if (this.dir(p, opts) === null) return null;
    let ents: DirEntry<string>[];
    try {
      ents = readDirEntryStrings(p);
    } catch {
      return null;
    }
    const out: string[] = [];
    for (const e of ents) {
      if (e.isDirectory()) out.push(e.name);
      else this.problems.add(path.join(p, e.name), e.isSymbolicLink() ? `${what} is a symlink (not followed: the store format has none here)` : `${what} is not a directory`);
    }
    return out.sort();
  }

  /**
   * `p` is a directory, not a symlink to one (the store format has none below
   * its top level): false, with a problem, for a symlink or another kind of
   * entry; false without one when it is missing.
   */
  realDir(p: string, what = 'directory'): boolean {
    const st = lstatQuiet(p);
    if (!st) return false;
    if (st.isDirectory()) return true;
    this.problems.add(p, st.isSymbolicLink() ? `${what} is a symlink (not followed: the store format has none here)` : `${what} is ${kindOf(st)}, expected a directory`);
    return false;
  }

  /** Sorted entry names of a directory, or null (problem unless missing and not required). */
  dir(p: string, opts: ReadOpts = {}): string[] | null {
    try {
      // a symlinked directory could lead anywhere: the store format has none below its top level
      if (!opts.mayBeLink && fs.lstatSync(p).isSymbolicLink()) {
        this.problems.add(p, `${opts.what ? opts.what + ' ' : ''}is a symlink, expected a directory (not followed: the store format has none here)`);
        return null;
      }
      return readDirStrings(p).sort();
    } catch (e) {
      if (errCode(e) === 'ENOENT' && opts.required === false) return null;
      this.problems.add(p, `${opts.what ? opts.what + ' ' : ''}${describeFsError(e).replace('expected a file', 'expected a directory')}`);
      return null;
    }
  }
}
