// Mount reference counts that hold across processes.
//
// Why not moby's in-memory RefCounter: dockerd is the only process using its
// driver home, so a map in memory is enough there. strata is a CLI: `strata
// layer mount` in one process and a conformance run or a second `mount` in
// another may use the same layer at once, and each must not unmount it under
// the other. So the count lives in files, per driver home:
//
//   <run>/<hash of home>/<id>        JSON {count, path}: references held, mount point
//   <run>/<hash of home>/<id>.lock   flock(2)ed while a count is read, the mount or
//                                    unmount is done and the new count written
//
// <run> is /run/strata/refs (STRATA_RUN_DIR overrides it): runtime state,
// like the mounts it counts, so a tmpfs that a reboot empties is the right
// place; and nothing is written into the store itself (a Docker data-root
// stays exactly as dockerd expects it, even while strata has layers mounted).
//
// The lock covers the mount/unmount itself, so "count reaches 0 → unmount" in
// one process and "count 0 → 1, mount" in another cannot interleave. Within
// one process an async mutex per id comes first, because flock is per open
// file: a second open of the lock file in the same process would block the
// event loop forever behind a holder that can never run again.
//
// Counts are validated against /proc/self/mountinfo on every use: a count for
// a path that is not mounted is stale (its holder crashed, or someone
// unmounted by hand) and counts as 0, so a crash never pins a layer forever.
// A path that is mounted but has no count (mounted by dockerd or by hand)
// counts as 1 reference we do not own, as moby's checker does: we never
// unmount it. Counts are written to a temp file and renamed, so a crash in
// the middle leaves the old count, never a torn one.
import * as fs from 'node:fs';
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import * as sys from '../sys/syscalls.ts';

/** Where the counts of a driver home live: keyed by the home's real path. */
export function refsDirFor(home: string): string {
  let real = path.resolve(home);
  try {
    real = fs.realpathSync(real);
  } catch {
    // not created yet: the resolved path names it
  }
  const run = process.env.STRATA_RUN_DIR ?? '/run/strata/refs';
  return path.join(run, createHash('sha256').update(real).digest('hex').slice(0, 24));
}

interface RefRecord {
  count: number;
  path: string;
}

/** Mount points from a mountinfo text (field 5, octal escapes decoded). */
export function parseMountPoints(mountinfo: string): string[] {
  const out: string[] = [];
  for (const line of mountinfo.split('\n')) {
    if (!line) continue;
    const f = line.split(' ');
    if (f.length > 4) out.push(unescapeMountinfo(f[4]));
  }
  return out;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
export function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Is `p` (absolute, resolved) a mount point in this process's mount namespace? */
export function isMountPoint(p: string): boolean {
  const target = path.resolve(p);
  return parseMountPoints(fs.readFileSync('/proc/self/mountinfo', 'latin1')).includes(target);
}

/** An in-process FIFO mutex per key (moby/locker). */
class KeyedMutex {
  private readonly tails = new Map<string, Promise<void>>();
  async lock(key: string): Promise<() => void> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = prev.then(() => mine);
    this.tails.set(key, tail);
    await prev;
    return () => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
      release();
    };
  }
}

export class RefCounter {
  readonly dir: string;
  private readonly mutex = new KeyedMutex();

  /**
   * @param home the driver home; counts go to `<run>/<hash of home>` (see above)
   * @param isMounted mount check (default: /proc/self/mountinfo)
   */
  constructor(home: string, private readonly isMounted: (p: string) => boolean = isMountPoint) {
    this.dir = refsDirFor(home);
  }

  /**
   * Take a reference on `id` whose mount point is `mountPath`. When nobody
   * holds one (validated count 0), `mount()` runs first, under the lock.
   * Returns the new count.
   */
  async acquire(id: string, mountPath: string, mount: () => void | Promise<void>): Promise<number> {
    return this.locked(id, async (rec) => {
      const count = this.validCount(rec, mountPath);
      if (count === 0) await mount();
      return { next: { count: count + 1, path: mountPath }, result: count + 1 };
    });
  }

  /**
   * Drop a reference on `id`. When it was the last one, `unmount()` runs
   * (under the lock) and the record goes. Dropping a reference nobody holds
   * is a no-op returning 0 (as moby's Decrement of an unknown path).
   */
  async release(id: string, mountPath: string, unmount: () => void | Promise<void>): Promise<number> {
    return this.locked(id, async (rec) => {
      const count = this.validCount(rec, mountPath);
      if (count === 0) return { next: null, result: 0 };
      if (count === 1) {
        await unmount();
        return { next: null, result: 0 };
      }
      return { next: { count: count - 1, path: mountPath }, result: count - 1 };
    });
  }

  /** The validated count of `id` (0 when none or stale); a stale record is dropped. */
  async count(id: string, mountPath: string): Promise<number> {
    return this.locked(id, async (rec) => {
      const count = this.validCount(rec, mountPath);
      return { next: count === 0 ? null : undefined, result: count };
    });
  }

  /** Ids that have a count record (stale or not). */
  ids(): string[] {
    let names: string[];
    try {
      names = fs.readdirSync(this.dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
    return names.filter((n) => !n.endsWith('.lock') && !n.startsWith('.tmp-'));
  }

  /**
   * Cleanup: for every id with a record, unmount its path if mounted and drop
   * the record, whatever the count (moby Cleanup unmounts everything).
   */
  async releaseAll(unmount: (id: string, mountPath: string) => void | Promise<void>): Promise<void> {
    for (const id of this.ids()) {
      await this.locked(id, async (rec) => {
        if (rec && this.isMounted(rec.path)) await unmount(id, rec.path);
        return { next: null, result: 0 };
      });
    }
  }

  /**
   * Forget `id` entirely (layer removal): unmount if it is mounted at its
   * recorded path, then remove its record and its lock file.
   */
  async forget(id: string, unmount: (mountPath: string) => void | Promise<void>): Promise<void> {
    await this.locked(id, async (rec) => {
      if (rec && this.isMounted(rec.path)) await unmount(rec.path);
      return { next: null, result: 0 };
    }, true);
  }

  // ---- internals ---------------------------------------------------------------

  /** not mounted → 0 (stale); mounted without a record → 1 (a mount we do not own) */
  private validCount(rec: RefRecord | null, mountPath: string): number {
    if (!this.isMounted(mountPath)) return 0;
    return rec && rec.count > 0 ? rec.count : 1;
  }

  private read(id: string): RefRecord | null {
    let text: string;
    try {
      text = fs.readFileSync(path.join(this.dir, id), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
    try {
      const r = JSON.parse(text) as RefRecord;
      if (typeof r.count === 'number' && typeof r.path === 'string') return r;
    } catch {
      // a foreign or damaged file: treat as no record
    }
    return null;
  }

  private write(id: string, rec: RefRecord | null): void {
    const file = path.join(this.dir, id);
    if (rec === null) {
      fs.rmSync(file, { force: true });
      return;
    }
    const tmp = path.join(this.dir, `.tmp-${id}-${process.pid}`);
    fs.writeFileSync(tmp, JSON.stringify(rec) + '\n');
    fs.renameSync(tmp, file);
  }

  /**
   * Run `fn` with the id's record under both locks and store the `next`
   * record it returns (null = remove, undefined = leave as is). `dropLock` also unlinks the lock file, safely:
   * a waiter that locked the unlinked file notices (inode changed) and retries.
   */
  private async locked(
    id: string,
    fn: (rec: RefRecord | null) => Promise<{ next: RefRecord | null | undefined; result: number }>,
    dropLock = false,
  ): Promise<number> {
    const unlockMutex = await this.mutex.lock(id);
    try {
      const lockPath = path.join(this.dir, `${id}.lock`);
      for (;;) {
        let fd: number;
        try {
          fd = fs.openSync(lockPath, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
        } catch (e) {
          // the directory is made on first use and removed by whoever empties it
          if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
          fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
          continue;
        }
        try {
          sys.flock(fd, sys.LOCK_EX, lockPath);
          // the file may have been unlinked (forget) while we waited for it
          let current: fs.Stats | undefined;
          try {
            current = fs.statSync(lockPath);
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
          }
          if (!current || current.ino !== fs.fstatSync(fd).ino) continue;
          const { next, result } = await fn(this.read(id));
          if (next !== undefined) this.write(id, next);
          // no references left: the lock file goes too (waiters notice and retry),
          // and the home's directory once it is empty, so nothing piles up in /run
          if (dropLock || next === null) {
            fs.rmSync(lockPath, { force: true });
            try {
              fs.rmdirSync(this.dir);
            } catch {
              // other ids still have records or locks
            }
          }
          return result;
        } finally {
          fs.closeSync(fd); // releases the flock
        }
      }
    } finally {
      unlockMutex();
    }
  }
}
