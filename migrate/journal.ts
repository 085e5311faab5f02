// The staging area of a migration, R/.strata-migrate/:
//
//   journal.json     { from, to, phase, targetHomeWasEmptyDir } rewritten durably at each phase
//   moved.log        '<driver id> <size>' a line, appended and fsynced once the layer is moved and checked
//   root/<to>/       the target driver's home while it is filled
//   root/image/<to>/ the target's metadata (a copy of image/<from>, cache-ids kept)
//   configs/<id>     each container's config.v2.json as it was (for --rollback)
//
// phases: 'staging' (layers and metadata going into root/), 'switching' (the
// renames into R and the config rewrites, each idempotent), 'done'.
//
// What a run reads back from here steers renames and removals in R, so it is
// read like any store file (no FIFO, no symlink, under a cap) and checked
// field by field: a journal edited by hand is refused, never acted on.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { layoutFor } from '../drivers/all.ts';
import { isLayerName } from '../drivers/layout.ts';
import { isHex64 } from '../layerstore/digests.ts';
import { mkdirDurable, syncDir, writeFileDurable } from '../layerstore/durable.ts';
import { describeFsError, JSON_CAP, readFileReadOnly, TEXT_CAP } from '../sys/read-only-files.ts';
import * as sys from '../sys/syscalls.ts';
import { MigrateError, STAGING_DIR } from './plan.ts';


/**
 * One migration at a time per root: an exclusive flock on the root directory
 * itself (it outlives .strata-migrate, which rollback removes). The kernel
 * drops it when the process dies, so a killed run never locks the next one out.
 */
export function lockMigration(root: string): { release(): void } {
  let fd: number;
  try {
    fd = fs.openSync(root, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  } catch (e) {
    throw new MigrateError(`${root}: ${describeFsError(e)}`);
  }
  try {
    sys.flock(fd, sys.LOCK_EX | sys.LOCK_NB, root);
  } catch (e) {
    fs.closeSync(fd);
    if ((e as sys.SysError).code === 'EAGAIN') { // EWOULDBLOCK, as Linux numbers it
      throw new MigrateError(`${root}: another strata migrate is running on this root (it holds the root's lock); wait for it to end`);
    }
    throw e;
  }
  let open = true;
  return {
    release: () => {
      if (open) fs.closeSync(fd);
      open = false;
    },
  };
}

/** A driver name a journal may hold: one the registry knows, and a plain directory name (it is joined to R). */
const isDriverName = (v: unknown): v is string => typeof v === 'string' && isLayerName(v) && layoutFor(v) !== undefined;

/** The journal's fields, each of its type; the first wrong one, or null. */
function journalProblem(v: unknown): string | null {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'is not a JSON object';
  const s = v as Record<string, unknown>;
  if (s.version !== 1) return `has version ${JSON.stringify(s.version)}, not 1`;
  for (const k of ['from', 'to'] as const) if (!isDriverName(s[k])) return `"${k}" is ${JSON.stringify(s[k])}, not a storage driver's name`;
  if (s.from === s.to) return '"from" and "to" name the same driver';
  if (!['staging', 'switching', 'done'].includes(s.phase as string)) return `"phase" is ${JSON.stringify(s.phase)}`;
  if (typeof s.targetHomeWasEmptyDir !== 'boolean') return `"targetHomeWasEmptyDir" is ${JSON.stringify(s.targetHomeWasEmptyDir)}, not a boolean`;
  const extra = Object.keys(s).find((k) => !['version', 'from', 'to', 'phase', 'targetHomeWasEmptyDir'].includes(k));
  return extra === undefined ? null : `has a field strata does not write (${JSON.stringify(extra)})`;
}

/** One line of moved.log: '<layer id> <size>'. */
const MOVED_LINE = /^(\S+) (0|[1-9][0-9]{0,15})$/;

export type Phase = 'staging' | 'switching' | 'done';

export interface JournalState {
  version: 1;
  from: string;
  to: string;
  phase: Phase;
  /** R/<to> was an empty directory before the run (rollback puts it back) */
  targetHomeWasEmptyDir: boolean;
}

export class Journal {
  readonly dir: string;
  readonly stageRoot: string;
  readonly configs: string;
  readonly file: string;
  readonly log: string;

  constructor(readonly root: string) {
    this.dir = path.join(root, STAGING_DIR);
    this.stageRoot = path.join(this.dir, 'root');
    this.configs = path.join(this.dir, 'configs');
    this.file = path.join(this.dir, 'journal.json');
    this.log = path.join(this.dir, 'moved.log');
  }

  /** The staging dir is there (a real directory: a symlink in its place is refused, never followed). */
  private dirExists(): boolean {
    const st = fs.lstatSync(this.dir, { throwIfNoEntry: false });
    if (!st) return false;
    if (!st.isDirectory()) throw new MigrateError(`${this.dir}: is ${st.isSymbolicLink() ? 'a symlink' : 'not a directory'}, not a staging area strata made (not followed; remove it)`);
    return true;
  }

  exists(): boolean {
    return this.dirExists() && fs.lstatSync(this.file, { throwIfNoEntry: false }) !== undefined;
  }

  read(): JournalState {
    let text: string;
    try {
      text = readFileReadOnly(this.file, TEXT_CAP, 'a migration journal').toString('utf8');
    } catch (e) {
      throw new MigrateError(`${this.file}: unreadable journal (${describeFsError(e)})`);
    }
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch {
      throw new MigrateError(`${this.file}: not a strata migrate journal (not JSON); run with --rollback after restoring it, or remove ${this.dir} by hand`);
    }
    const problem = journalProblem(v);
    if (problem) throw new MigrateError(`${this.file}: not a journal strata wrote (${problem}); nothing was done`);
    return v as JournalState;
  }

  /** Start the staging area (in a real directory of the root, made here or left by a run killed before its journal). */
  create(s: JournalState): void {
    if (!this.dirExists()) mkdirDurable(this.dir, 0o700);
    mkdirDurable(this.stageRoot, 0o710, this.root);
    mkdirDurable(this.configs, 0o700, this.root);
    this.write(s);
  }

  write(s: JournalState): void {
    writeFileDurable(this.file, JSON.stringify(s) + '\n', 0o600);
  }

  /** Ids whose move finished and was checked (a torn last line, from a kill mid-append, is ignored). */
  moved(): Map<string, number> {
    let t = '';
    try {
      t = readFileReadOnly(this.log, JSON_CAP, 'the moved-layers log').toString('utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new MigrateError(`${this.log}: ${describeFsError(e)}`);
    }
    const lines = t.split('\n');
    lines.pop(); // after the last '\n': empty, or a line whose append was cut
    return new Map(lines.map((line, i) => {
      const m = MOVED_LINE.exec(line);
      if (!m || !isLayerName(m[1])) throw new MigrateError(`${this.log}: line ${i + 1} is not '<layer id> <size>' (${JSON.stringify(line.slice(0, 80))}); not a log strata wrote`);
      return [m[1], Number(m[2])];
    }));
  }

  /**
   * Why R does not hold the switched layout of `s` (null: it does): the staged
   * home and image/<to> renamed into R. A journal that says 'done' without it
   * was not written by a finished run, and --delete-source must not trust it.
   */
  switchProblem(s: JournalState): string | null {
    for (const rel of [s.to, path.join('image', s.to)]) {
      const staged = path.join(this.stageRoot, rel);
      const live = path.join(this.root, rel);
      if (fs.lstatSync(staged, { throwIfNoEntry: false })) return `${staged} is still staged`;
      if (!fs.lstatSync(live, { throwIfNoEntry: false })?.isDirectory()) return `${live} is missing`;
    }
    return null;
  }

  /**
   * The containers whose config.v2.json is kept in configs/ (the switch rewrites them, rollback puts them back):
   * each a regular file named for a container id, whose containers/<id> in R is a real directory — the names steer renames in R.
   */
  keptConfigs(): string[] {
    let names: string[];
    try {
      names = fs.readdirSync(this.configs).sort();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw new MigrateError(`${this.configs}: ${describeFsError(e)}`);
    }
    for (const id of names) {
      const kept = path.join(this.configs, id);
      if (!isHex64(id) || !fs.lstatSync(kept).isFile()) throw new MigrateError(`${kept}: not a config strata kept (a container id naming a regular file); nothing was done`);
      const dir = path.join(this.root, 'containers', id);
      const st = fs.lstatSync(dir, { throwIfNoEntry: false });
      if (!st?.isDirectory()) throw new MigrateError(`${dir}: is ${st ? (st.isSymbolicLink() ? 'a symlink (not followed)' : 'not a directory') : 'missing'}, but ${kept} says the migration rewrote its config; nothing was done`);
    }
    return names;
  }

  markMoved(id: string, size: number): void {
    const fd = fs.openSync(this.log, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT, 0o600);
    try {
      fs.writeSync(fd, `${id} ${size}\n`);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    syncDir(this.dir);
  }
}
