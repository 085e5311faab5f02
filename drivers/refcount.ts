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
// a path that is not mounted is stale (someone unmounted by hand) and counts
// as 0. A path that is mounted but has no record (mounted by dockerd or by
// hand) counts as 1 reference we do not own, as moby's checker does: it is
// recorded as `foreign` and never unmounted by us.
//
// Who holds a reference is recorded too, so that a holder killed with its
// references cannot pin a mount forever:
//   - a reference taken by get() belongs to the process (pid + start time,
//     drivers/holder.ts); when that process is gone it is dropped, and the
//     next operation on the id (or any driver init, through reclaim()) that
//     finds no live reference left unmounts;
//   - persist() turns one of them into a persistent reference, held beyond
//     any process (`strata layer mount` in one CLI run, `layer umount` in a
//     later one); only a put() releases it, from whichever process.
// put() releases one of the caller's own references, else a persistent one;
// it never takes another live process's reference.
//
// The record is written before the mount is made (and removed if the mount
// fails), so a holder killed right after mount(2) still leaves a record that
// names it, never a mount that looks foreign. Records are written to a temp
// file and renamed, so a crash in the middle leaves the old one, never a torn
// one. The temp file is named after its writer (`.tmp-<id>-<pid>.<start
// time>`), so that reclaim() removes one a writer killed before the rename
// left behind (it would also keep the home's directory from ever going).
import * as fs from 'node:fs';
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import * as sys from '../sys/syscalls.ts';
import { isMountPoint } from '../sys/mountinfo.ts';
import { isAlive, selfTag, untaggedIsStale, type HolderTag } from './holder.ts';

/** The temp file a record of `id` is written to before its rename, named after its writer. */
export function tempRecordName(id: string, writer: HolderTag = selfTag()): string {
  return `.tmp-${id}-${writer}`;
}

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

/**
 * Runtime state of a driver's read-only views of `home` (rebuilt devices,
 * merged overlay views): `<run>/<kind>/<hash of home>`, under /run/strata
 * (STRATA_RUN_DIR overrides it), outside the store like the counts above.
 */
export function runStateDir(kind: string, home: string): string {
  const run = process.env.STRATA_RUN_DIR ?? '/run/strata';
  return path.join(run, kind, createHash('sha256').update(path.resolve(home)).digest('hex').slice(0, 24));
}

/** Remove a run state dir once its last view is gone (one still in use, or already gone, stays as it is). */
export function removeIfEmpty(dir: string): void {
  try {
    fs.rmdirSync(dir);
  } catch (e) {
    if (!['ENOTEMPTY', 'EEXIST', 'ENOENT'].includes((e as NodeJS.ErrnoException).code!)) throw e;
  }
}

/** The record of one id (see the header). */
interface RefRecord {
  path: string;
  /** references held by processes, by holder tag (`<pid>.<start time>`) */
  holders: Record<HolderTag, number>;
  /** references held beyond any process (persist()) */
  persistent: number;
  /** mounted by someone else before we counted it: one reference that is never ours to drop */
  foreign: boolean;
}

/** References that are ours to drop (all but the foreign one). */
const ownRefs = (r: RefRecord) => r.persistent + Object.values(r.holders).reduce((a, b) => a + b, 0);
const total = (r: RefRecord) => ownRefs(r) + (r.foreign ? 1 : 0);

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

type Next = RefRecord | null | undefined;

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
   * Take a reference on `id` for this process; its mount point is
   * `mountPath`. When nobody holds one (validated count 0), `mount()` runs
   * first, under the lock; a mount whose holders are all dead is taken over
   * as it is. `before()`, if given, runs under the lock ahead of all that.
   * Returns the new count.
   */
  async acquire(id: string, mountPath: string, mount: () => void | Promise<void>, before?: () => void): Promise<number> {
    return this.locked(id, async (found) => {
      before?.(); // under the lock: e.g. a stale mount cleared, which no other process may be remounting meanwhile
      const me = selfTag();
      const rec = this.validate(found, mountPath);
      if (rec) {
        // mounted: by live holders, by dead ones (taken over as it is), or foreign
        rec.holders[me] = (rec.holders[me] ?? 0) + 1;
        return { next: rec, result: total(rec) };
      }
      const fresh: RefRecord = { path: mountPath, holders: { [me]: 1 }, persistent: 0, foreign: false };
      this.write(id, fresh); // first, so a crash right after the mount still names its holder
      try {
        await mount();
      } catch (e) {
        this.write(id, null);
        throw e;
      }
      return { next: fresh, result: 1 };
    });
  }

  /**
   * Turn one reference this process holds on `id` into a persistent one,
   * which outlives the process and only a put() releases. Returns the count.
   */
  async persist(id: string, mountPath: string): Promise<number> {
    return this.locked(id, async (found) => {
      const rec = this.validate(found, mountPath);
      const me = selfTag();
      if (!rec || !rec.holders[me]) throw new Error(`${id}: no reference of this process to keep (${mountPath})`);
      rec.holders[me] -= 1;
      if (rec.holders[me] === 0) delete rec.holders[me];
      rec.persistent += 1;
      return { next: rec, result: total(rec) };
    });
  }

  /**
   * Drop a reference on `id`: one of this process's, else a persistent one
   * (another live process's references are never taken). When no reference
   * of ours is left, `unmount()` runs (under the lock) unless the mount is
   * foreign, and the record goes. Dropping a reference nobody holds is a
   * no-op (as moby's Decrement of an unknown path). Returns the new count.
   */
  async release(id: string, mountPath: string, unmount: () => void | Promise<void>): Promise<number> {
    return this.locked(id, async (found) => {
      const rec = this.validate(found, mountPath);
      if (!rec) return { next: null, result: 0 };
      const me = selfTag();
      if (rec.holders[me]) {
        rec.holders[me] -= 1;
        if (rec.holders[me] === 0) delete rec.holders[me];
      } else if (rec.persistent > 0) rec.persistent -= 1;
      return this.settle(rec, found !== null, unmount);
    });
  }

  /** The validated count of `id` (0 when none or stale; a stale record is dropped). */
  async count(id: string, mountPath: string): Promise<number> {
    return this.locked(id, async (found) => {
      const rec = this.validate(found, mountPath);
      return rec ? { next: undefined, result: total(rec) } : { next: null, result: 0 };
    });
  }

  /**
   * Reclaim what dead processes held, for every id with a record: their
   * references go, and a mount no live reference is left on is unmounted
   * (never a foreign one); stale records are dropped. Run at driver init, so
   * any later command releases what a killed one held.
   */
  async reclaim(unmount: (id: string, mountPath: string) => void | Promise<void>): Promise<void> {
    this.removeDeadTemps();
    for (const id of this.ids()) {
      await this.locked(id, async (found) => {
        const rec = found && this.validate(found, found.path);
        if (!rec) return { next: null, result: 0 };
        return this.settle(rec, true, () => unmount(id, rec.path));
      });
    }
  }

  /**
   * Run `fn` under `id`'s lock if nothing is mounted at `mountPath` (so no
   * other process mounts it meanwhile); the record is left as it is.
   */
  async whileUnmounted(id: string, mountPath: string, fn: () => void | Promise<void>): Promise<void> {
    await this.locked(id, async (found) => {
      if (!this.isMounted(mountPath)) await fn();
      return { next: found === null ? null : undefined, result: 0 };
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
   * Cleanup: for every id with a record, unmount its path if mounted (unless
   * foreign) and drop the record, whatever the count (moby Cleanup unmounts
   * everything it mounted).
   */
  async releaseAll(unmount: (id: string, mountPath: string) => void | Promise<void>): Promise<void> {
    for (const id of this.ids()) {
      await this.locked(id, async (rec) => {
        if (rec && !rec.foreign && this.isMounted(rec.path)) await unmount(id, rec.path);
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

  /**
   * Remove the temp record files whose writer is gone (killed between the
   * write and the rename), then the home's directory if nothing else is left
   * in it. A temp file from before writers were tagged (`.tmp-<id>-<pid>`)
   * goes once it is a minute old: a write and a rename take microseconds.
   */
  private removeDeadTemps(): void {
    let names: string[];
    try {
      names = fs.readdirSync(this.dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    let removed = false;
    for (const name of names) {
      if (!name.startsWith('.tmp-')) continue;
      const file = path.join(this.dir, name);
      const tag = /-(\d+\.\d+)$/.exec(name)?.[1];
      if (tag !== undefined ? isAlive(tag) : !untaggedIsStale(file)) continue;
      fs.rmSync(file, { force: true });
      removed = true;
    }
    if (removed) {
      try {
        fs.rmdirSync(this.dir);
      } catch {
        // records or locks of other ids remain
      }
    }
  }

  /**
   * The record as it stands now: null when `mountPath` is not mounted (stale);
   * a foreign record when it is mounted without one; else the record without
   * the references of dead holders.
   */
  private validate(rec: RefRecord | null, mountPath: string): RefRecord | null {
    if (!this.isMounted(mountPath)) return null;
    if (!rec) return { path: mountPath, holders: {}, persistent: 0, foreign: true };
    const holders: Record<HolderTag, number> = {};
    for (const [tag, n] of Object.entries(rec.holders)) if (n > 0 && isAlive(tag)) holders[tag] = n;
    return { ...rec, path: mountPath, holders };
  }

  /**
   * After references went: with none of ours left, a mount we recorded
   * (`recorded`: not foreign, not a record just made up) is unmounted, and the
   * record goes; else the record stays as it is now.
   */
  private async settle(rec: RefRecord, recorded: boolean, unmount: () => void | Promise<void>): Promise<{ next: Next; result: number }> {
    if (ownRefs(rec) > 0) return { next: rec, result: total(rec) };
    if (recorded && !rec.foreign) await unmount();
    return { next: null, result: rec.foreign ? 1 : 0 };
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
      return parseRecord(JSON.parse(text));
    } catch {
      return null; // a foreign or damaged file: treat as no record
    }
  }

  private write(id: string, rec: RefRecord | null): void {
    const file = path.join(this.dir, id);
    if (rec === null) {
      fs.rmSync(file, { force: true });
      return;
    }
    const tmp = path.join(this.dir, tempRecordName(id));
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
    fn: (rec: RefRecord | null) => Promise<{ next: Next; result: number }>,
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
          let next: Next;
          let result: number;
          try {
            ({ next, result } = await fn(this.read(id)));
          } catch (e) {
            // a failed mount or unmount: with no record left, nothing of the id stays either
            if (!fs.existsSync(path.join(this.dir, id))) this.dropLockFile(lockPath);
            throw e;
          }
          if (next !== undefined) this.write(id, next);
          if (dropLock || next === null) this.dropLockFile(lockPath);
          return result;
        } finally {
          fs.closeSync(fd); // releases the flock
        }
      }
    } finally {
      unlockMutex();
    }
  }

  /**
   * No references left: the lock file goes too (waiters notice and retry),
   * and the home's directory once it is empty, so nothing piles up in /run.
   */
  private dropLockFile(lockPath: string): void {
    fs.rmSync(lockPath, { force: true });
    try {
      fs.rmdirSync(this.dir);
    } catch {
      // other ids still have records or locks
    }
  }
}

/** A record as stored; the first format (`{count, path}`, holders unknown) reads as persistent references. */
function parseRecord(v: unknown): RefRecord | null {
  if (typeof v !== 'object' || v === null) return null;
  const r = v as Record<string, unknown>;
  if (typeof r.path !== 'string') return null;
  if (typeof r.count === 'number') return { path: r.path, holders: {}, persistent: Math.max(0, r.count), foreign: false };
  const holders: Record<HolderTag, number> = {};
  if (typeof r.holders === 'object' && r.holders !== null) {
    for (const [tag, n] of Object.entries(r.holders)) if (typeof n === 'number' && n > 0) holders[tag] = n;
  }
  return { path: r.path, holders, persistent: typeof r.persistent === 'number' ? Math.max(0, r.persistent) : 0, foreign: r.foreign === true };
}
