// The one way store files are written: each file goes to a temp file in its
// own directory, is written and fsynced, then renamed over its name, and the
// directory is fsynced, so a crash leaves the old content or the new, never a
// part (moby's ioutils.AtomicWriteFile, plus the directory sync it lacks).
// Directories made here, and directories renamed into place, get their
// parents fsynced too. A failure is a StoreWriteError naming the path.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** A store write that failed, with the path it failed on (its message is one line). */
export class StoreWriteError extends Error {
  constructor(readonly path: string, message: string) {
    super(`${path}: ${message}`);
    this.name = 'StoreWriteError';
  }
}

function fail(p: string, e: unknown): never {
  if (e instanceof StoreWriteError) throw e;
  const code = (e as NodeJS.ErrnoException).code;
  const why = code === 'ENOSPC' ? 'no space left on device' : code === 'EDQUOT' ? 'disk quota exceeded'
    : code === 'EROFS' ? 'read-only file system' : code === 'EEXIST' ? 'already exists' : (code ?? (e as Error).message);
  throw new StoreWriteError(p, `cannot be written (${why})`);
}

/** fsync a directory, so the names created, renamed or removed in it are on disk. */
export function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    fs.fsyncSync(fd);
  } catch (e) {
    fail(dir, e);
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** `.tmp-<name>-<random>`: the prefix moby's AtomicWriteFile uses, so leftovers look like its own. */
export function tempName(name: string): string {
  return `.tmp-${name}-${randomBytes(6).toString('hex')}`;
}

/** Create `file` (it must not exist) with `mode` whatever the umask, write `data`, fsync; raw fs errors. */
function writeNewFile(file: string, data: Buffer | string, mode: number): void {
  const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, mode);
  try {
    const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    for (let off = 0; off < buf.length;) off += fs.writeSync(fd, buf, off, buf.length - off);
    fs.fchmodSync(fd, mode); // the umask must not change what moby writes
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Write `file` whole or not at all: temp file beside it, write, fsync, rename, fsync the directory. */
export function writeFileDurable(file: string, data: Buffer | string, mode: number): void {
  const dir = path.dirname(file);
  const tmp = path.join(dir, tempName(path.basename(file)));
  try {
    writeNewFile(tmp, data, mode);
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    fail(file, e);
  }
  syncDir(dir);
}

/**
 * A file of a staging directory (makeStagingDir): written and fsynced under
 * its own name, with no temp file and no directory sync of its own — nobody
 * reads the staging dir, which appears whole at renameDirDurable, and that
 * syncs it once for all its files.
 */
export function writeStagedFile(file: string, data: Buffer | string, mode: number): void {
  try {
    writeNewFile(file, data, mode);
  } catch (e) {
    fail(file, e);
  }
}

/**
 * Fail when a directory between `base` and `dir` is a symlink or not a
 * directory: a target root whose image/ or layerdb/ points elsewhere must not
 * have the store written there. (Checked before anything is made below it.)
 */
function mustBeRealDirs(base: string, dir: string): void {
  let at = base;
  for (const part of path.relative(base, dir).split(path.sep).filter(Boolean)) {
    at = path.join(at, part);
    const st = fs.lstatSync(at, { throwIfNoEntry: false });
    if (!st) return;
    if (st.isSymbolicLink()) throw new StoreWriteError(at, 'is a symlink (the store writer follows none below the data root)');
    if (!st.isDirectory()) throw new StoreWriteError(at, 'is not a directory');
  }
}

/**
 * mkdir -p with `mode` for what is made; each directory made is synced into
 * its parent. With `below`, every directory between it and `dir` must be a
 * real one (mustBeRealDirs).
 */
export function mkdirDurable(dir: string, mode: number, below?: string): void {
  if (below !== undefined) mustBeRealDirs(below, dir);
  const missing: string[] = [];
  for (let d = path.resolve(dir); !fs.existsSync(d); d = path.dirname(d)) missing.unshift(d);
  for (const d of missing) {
    try {
      fs.mkdirSync(d, { mode });
      fs.chmodSync(d, mode);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') fail(d, e);
    }
    syncDir(path.dirname(d));
  }
}

/** A fresh, empty directory below `parent` for a set of files that appears at once (renameDirDurable). */
export function makeStagingDir(parent: string, prefix: string, mode = 0o700): string {
  mkdirDurable(parent, 0o755);
  const dir = path.join(parent, `${prefix}${randomBytes(6).toString('hex')}`);
  try {
    fs.mkdirSync(dir, { mode });
    fs.chmodSync(dir, mode);
  } catch (e) {
    fail(dir, e);
  }
  return dir;
}

/**
 * Move a finished staging directory to `target` (which must not exist): its
 * entries are synced first, so the directory appears complete or not at all.
 */
export function renameDirDurable(staging: string, target: string): void {
  syncDir(staging);
  try {
    fs.renameSync(staging, target);
  } catch (e) {
    fail(target, e);
  }
  syncDir(path.dirname(target));
  if (path.dirname(staging) !== path.dirname(target)) syncDir(path.dirname(staging));
}

/** Remove a staging directory after a failure (best effort: the failure itself is what is reported). */
export function dropStagingDir(staging: string): void {
  try {
    fs.rmSync(staging, { recursive: true, force: true });
  } catch {
    // a leftover under layerdb/tmp is what dockerd leaves too; readers ignore it
  }
}
