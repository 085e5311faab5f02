// Directory handles confined to a root directory: the guarantee behind
// applyLayer's "nothing outside the layer is touched".
//
// Contract: every directory this module hands out is an O_PATH fd reached from
// the root's fd one component at a time, each opened O_NOFOLLOW|O_DIRECTORY
// under the fd of its parent; symlinks met on the way are read and followed
// *in scope* (`..` stops at the root, absolute targets restart at the root),
// exactly as moby's FollowSymlinkInScope, but by construction rather than by a
// lexical check followed by a path call. Callers act on a final component
// through `at(dirFd, name)` — `/proc/<pid>/fd/<dirFd>/<name>`, whose magic link
// pins the directory inode — with calls that do not follow that name (O_EXCL /
// O_NOFOLLOW opens, lchown, lutimes, lsetxattr, mkdir, mknod, symlink, link,
// unlink), or on a directory itself through `self(dirFd)`. So a later entry
// that swaps a directory, or any of its parents, for a symlink cannot redirect
// a call made after the swap: the handle still names the inode inside the
// layer, and a fresh resolution follows the new symlink in scope.
//
// Handles are cached by real (symlink-free) root-relative path in a small LRU,
// so a 50k-entry tar holds at most MAX_FDS fds; `forget()` drops those of a
// removed subtree and the name → real path cache, which a removed symlink
// could otherwise leave pointing through it.
import * as fs from 'node:fs';
import { BreakoutError } from './scope.ts';
import { displayPath, fsPath } from './types.ts';

export const O_PATH = 0o10000000; // Linux; node's fs.constants lacks it, open(2) takes it as is
const DIR_FLAGS = O_PATH | fs.constants.O_NOFOLLOW | fs.constants.O_DIRECTORY;
const MAX_FDS = 128;
const MAX_LINKS = 40; // Linux's MAXSYMLINKS

/**
 * Tree walkers that use full paths (faster) switch to directory handles for paths
 * longer than this, since a tar can build a tree deeper than PATH_MAX (4096).
 */
export const BY_HANDLE_PAST = 2048;

/** A directory inside the root: its handle and its real root-relative path ('' is the root). */
export interface DirHandle { fd: number; real: string }

// /proc/<pid>/fd rather than /proc/self/fd: the same magic links without
// resolving the `self` symlink on every call (worker threads share the pid).
const FD_DIR = `/proc/${process.pid}/fd/`;

/** `/proc/<pid>/fd/<fd>/<name>` for a raw-byte-string name: acts on `name` inside the pinned directory. */
export function at(fd: number, name: string): Buffer {
  return fsPath(atRaw(fd, name));
}

/** at() as a raw byte string. */
export function atRaw(fd: number, name: string): string {
  return `${FD_DIR}${fd}/${name}`;
}

/** `/proc/<pid>/fd/<fd>/.`: the directory behind `fd` itself, for calls with or without follow. */
export function self(fd: number): Buffer {
  return fsPath(`${FD_DIR}${fd}/.`);
}

/** `/proc/<pid>/fd/<fd>`: the inode behind an fd (O_PATH ones included), for calls that follow. */
export function fdPath(fd: number): string {
  return `${FD_DIR}${fd}`;
}

/** Open a directory by a path whose last component must not be followed; null when it is not a directory. */
export function openDirNoFollow(p: Buffer): number | null {
  try {
    return fs.openSync(p, DIR_FLAGS);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP') return null;
    throw e;
  }
}

export class InRoot {
  readonly rootFd: number;
  /** requested dir path → real path (may pass through symlinks: cleared when one is removed) */
  private readonly names = new Map<string, string>();
  /** real path → O_PATH fd; Map order is the LRU order */
  private readonly fds = new Map<string, number>();
  /** the last resolution: consecutive entries of a tar mostly share a directory */
  private lastName: string | null = null;
  private lastHandle: DirHandle = { fd: -1, real: '' };
  /**
   * How a handle the cache drops is closed (apply.ts: later, when another
   * thread may still act under it), and what runs before a resolution looks
   * a name up (and may make a missing dir).
   */
  release: (fd: number) => void = fs.closeSync;
  beforeWalk: (() => void) | null = null;
  /** when set, the real paths of the missing dirs dir() made */
  made: Set<string> | null = null;

  constructor(private readonly rootAbs: Buffer) {
    this.rootFd = fs.openSync(rootAbs, O_PATH | fs.constants.O_DIRECTORY);
  }

  /** `text` (an error message) with the /proc/self/fd paths of our handles written as paths people know. */
  describe(text: string): string {
    const root = this.rootAbs.toString('utf8').replace(/\/$/, '');
    return text.replace(/\/proc\/(?:self|\d+)\/fd\/(\d+)(\/\.(?=[\s':]|$))?/g, (_, n: string) => {
      const fd = Number(n);
      if (fd === this.rootFd) return root;
      for (const [real, f] of this.fds) if (f === fd) return `${root}/${Buffer.from(real, 'latin1').toString('utf8')}`;
      return `${root}/…`;
    }).replace(/ fd \d+:/g, ':');
  }

  private closed = false;

  /** Close every handle (idempotent: an apply's error path may call it after its end did). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.lastName = null;
    for (const fd of this.fds.values()) fs.closeSync(fd);
    this.fds.clear();
    this.names.clear();
    fs.closeSync(this.rootFd);
  }

  /**
   * The directory `relDir` names inside the root, symlinks followed in scope;
   * missing components are created as 0755 dirs when `create` is set, else
   * null is returned for a missing path. The fd is owned by the cache: use it
   * before the next call that may resolve another directory.
   */
  dir(relDir: string, create = true): DirHandle | null {
    if (relDir === '') return { fd: this.rootFd, real: '' };
    if (relDir === this.lastName) return this.lastHandle;
    const known = this.names.get(relDir);
    if (known !== undefined) {
      const fd = this.cached(known);
      if (fd !== undefined) return this.remember(relDir, { fd, real: known });
    }
    const todo = relDir.split('/').reverse(); // stack: next component on top
    const cur: string[] = [];
    let fd = this.rootFd;
    let links = 0;
    while (todo.length) {
      const part = todo.pop()!;
      if (part === '' || part === '.') continue;
      if (part === '..') {
        if (cur.length) {
          cur.pop();
          const up = this.dir(cur.join('/'), false);
          if (up === null) return null;
          fd = up.fd;
        }
        continue;
      }
      const real = cur.length ? cur.join('/') + '/' + part : part;
      let next = this.cached(real);
      if (next === undefined) {
        this.beforeWalk?.(); // a lookup: the names it meets must be made already
        const p = at(fd, part);
        let opened = openDirNoFollow(p);
        if (opened === null) {
          const st = fs.lstatSync(p, { throwIfNoEntry: false });
          if (st === undefined) {
            if (!create) return null;
            fs.mkdirSync(p, 0o755);
            this.made?.add(real);
            opened = openDirNoFollow(p);
          } else if (st.isSymbolicLink()) {
            if (++links > MAX_LINKS) throw new BreakoutError(`too many levels of symbolic links resolving "${relDir}"`);
            const target = fs.readlinkSync(p, { encoding: 'buffer' }).toString('latin1');
            if (target.startsWith('/')) {
              cur.length = 0;
              fd = this.rootFd;
            }
            const parts = target.split('/');
            for (let i = parts.length - 1; i >= 0; i--) todo.push(parts[i]);
            continue;
          }
          if (opened === null) {
            const e = new Error(`ENOTDIR: "${displayPath(real)}" is not a directory`) as NodeJS.ErrnoException;
            e.code = 'ENOTDIR';
            throw e;
          }
        }
        next = opened;
        this.put(real, next);
      }
      cur.push(part);
      fd = next;
    }
    const real = cur.join('/');
    this.names.set(relDir, real);
    return this.remember(relDir, { fd, real });
  }

  private remember(relDir: string, h: DirHandle): DirHandle {
    this.lastName = relDir;
    this.lastHandle = h;
    return h;
  }

  /** A fresh fd of the same directory, owned by the caller (for use across other resolutions). */
  reopen(fd: number): number {
    return fs.openSync(self(fd), O_PATH | fs.constants.O_DIRECTORY);
  }

  /** Cache the handle of a directory just made (its children usually follow). */
  adopt(real: string, fd: number): void {
    this.put(real, fd);
  }

  /**
   * `real` was removed or replaced: drop the handles of it and everything
   * below, and every name resolution (one may have passed through it).
   */
  forget(real: string, wasDir: boolean): void {
    this.names.clear();
    this.lastName = null;
    if (!wasDir) return;
    const below = real + '/';
    for (const [k, fd] of this.fds) {
      if (k === real || k.startsWith(below)) {
        this.release(fd);
        this.fds.delete(k);
      }
    }
  }

  private cached(real: string): number | undefined {
    if (real === '') return this.rootFd;
    const fd = this.fds.get(real);
    if (fd !== undefined) {
      this.fds.delete(real); // move to the LRU's young end
      this.fds.set(real, fd);
    }
    return fd;
  }

  private put(real: string, fd: number): void {
    const old = this.fds.get(real);
    if (old !== undefined && old !== fd) {
      if (old === this.lastHandle.fd) this.lastName = null;
      this.release(old);
    }
    this.fds.delete(real);
    this.fds.set(real, fd);
    if (this.fds.size > MAX_FDS) {
      // the oldest: never the handle just put, nor the parent it was opened under
      const [k, victim] = this.fds.entries().next().value as [string, number];
      if (victim === this.lastHandle.fd) this.lastName = null;
      this.release(victim);
      this.fds.delete(k);
    }
  }
}
