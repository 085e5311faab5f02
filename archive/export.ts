// exportDir / exportChanges: tar streams of a directory or of a change list,
// with whiteouts always in the aufs (tar) form.
//
// Contract:
// - Deterministic: entries in byte order of their paths (parents first), the
//   same tree always gives the same bytes. mtimes carry nanoseconds in PAX
//   records; owners are numeric; xattrs go out as SCHILY.xattr.* (the
//   overlay driver's own trusted.overlay.* / user.overlay.* never do).
// - The root directory itself is not an entry (layer tars have none).
// - Hardlinked files (same inode inside the export) become hardlink entries.
// - Backpressure: the stream is pulled; each read fills one ~1 MiB chunk with
//   synchronous calls, so memory does not grow with layer size.
// - Two threads for a big tree: past 8,000 entries (20,000 from sources) the walk (lstat,
//   xattrs, readlink: scan.ts) moves to a worker, at most 16 batches of 256
//   entries ahead, while this thread reads file data and encodes. Same bytes
//   either way for a tree nobody changes meanwhile (as for any tar of a live
//   tree, a file replaced between its lstat and its read is not consistent;
//   with the worker that window spans up to 4,096 entries, not one).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import * as sys from '../sys/syscalls.ts';
import { scanEntry, TreeScanner, unpackBatch, type ScanOptions, type Scanned } from './scan.ts';
import { POSTED, READY, STOP, TAKEN, type BatchMessage, type StartMessage } from './scan-worker.ts';
import { splitRel } from './scope.ts';
import { BLOCK, encodeHeader, headerSpace, type EntryType, type TarHeader } from './tar-header.ts';
import {
  ChangeKind, overlayOpaqueXattr, WHITEOUT_OPAQUE_DIR, WHITEOUT_PREFIX,
  displayPath, fsPath, rawPath, type Change, type WhiteoutFormat,
} from './types.ts';

export interface ExportOptions {
  /** how `dir` stores whiteouts: the overlay forms are converted to tar form, 'aufs' drops aufs internals */
  whiteouts?: WhiteoutFormat;
  /** read and export xattrs (default true) */
  xattrs?: boolean;
  /**
   * whether a worker thread walks the tree (the lstat/xattr/readlink half)
   * while this thread reads file data: 'auto' (default) once a tree proves
   * large, 'always' from the first entry (waiting for the worker to load),
   * 'never'. Same bytes either way.
   */
  parallel?: 'auto' | 'always' | 'never';
  /** told once, at the end of a whole-tree walk, how many entries each thread scanned */
  onWalkEnd?: (stats: WalkStats) => void;
}

export interface WalkStats { inThread: number; byWorker: number }

/**
 * For tests: the in-thread entries before a handoff in 'auto' mode (and whether
 * the walk then waits for the worker instead of going on meanwhile), and faults
 * for the scan workers started from now on (exit with code 3 after posting this
 * many batches, or throw while loading).
 */
export const scanWorkerTesting: { handOffAfter?: number; waitAtHandOff?: boolean; exitAfterBatches?: number; failToLoad?: boolean } = {};

const CHUNK = 1 << 20;
/** running from TypeScript sources (tsx): a worker then compiles its modules again */
const FROM_SOURCES = new URL(import.meta.url).pathname.endsWith('.ts');
/**
 * Entries walked in-thread before a worker is started. Loading one costs about
 * 0.1 s of CPU compiled and 0.4 s through tsx; measured here, a 5k-entry tree
 * exports faster without it and a 24k-entry one with it (compiled).
 */
const HANDOFF_AFTER = FROM_SOURCES ? 20_000 : 8_000;
/** a worker that loads or posts nothing for this long is taken for dead (it is not blocked on us then) */
const WORKER_SILENCE_MS = 60_000;

/** A tar stream of everything below `dir`. */
export function exportDir(dir: string, opts: ExportOptions = {}): Readable {
  const root = rawPath(path.resolve(dir));
  return new TarProducer(root, opts, new Walk(root, scanOptions(opts), opts.parallel ?? 'auto', opts.onWalkEnd)).stream();
}

/** moby ExportChanges: a tar of the changed paths of `dir`, deletions as `.wh.` entries. */
export function exportChanges(dir: string, changes: Change[], opts: ExportOptions = {}): Readable {
  const root = rawPath(path.resolve(dir));
  const sorted = [...changes].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return new TarProducer(root, opts, new ChangeList(root, scanOptions(opts), sorted)).stream();
}

function scanOptions(opts: ExportOptions): ScanOptions {
  return { format: opts.whiteouts ?? 'none', xattrs: opts.xattrs ?? true };
}

/** What a source can say: an entry, a deletion (whiteout) to write, the end (null), or "not yet". */
const PENDING = Symbol('pending');
type Next = Scanned | { deleted: string } | null | typeof PENDING;

/** Where the producer's entries come from. */
interface Source {
  next(): Next;
  /** resolves once next() may have more than PENDING to say; rejects if it never will */
  wait(): Promise<void>;
  close(): void;
}

/** The entries of a change list, deletions as they are. */
class ChangeList implements Source {
  private i = 0;
  constructor(private readonly root: string, private readonly opts: ScanOptions, private readonly list: Change[]) {}
  next(): Next {
    for (;;) {
      if (this.i >= this.list.length) return null;
      const c = this.list[this.i++];
      const rel = c.path.replace(/^\/+/, '');
      if (c.kind === ChangeKind.Delete) return { deleted: rel };
      const s = scanEntry(this.root, rel, this.opts, true);
      if (s) return s;
    }
  }
  wait(): Promise<void> {
    return Promise.resolve();
  }
  close(): void {}
}

/**
 * A whole-tree walk: in this thread at first; past HANDOFF_AFTER entries a
 * worker (scan-worker.ts) is started, and once it has loaded, the rest of the
 * walk (the scanner's stack) is handed to it. Its batches are taken with
 * receiveMessageOnPort; when none is there, next() says PENDING and wait()
 * waits without blocking this thread (Atomics.waitAsync), so the worker's
 * 'error' and 'exit' events still arrive. In 'auto' mode a worker that fails
 * to load is dropped and the walk stays here; after the handoff its failure
 * is the export's.
 */
class Walk implements Source {
  private scanner: TreeScanner | null;
  private worker: Worker | null = null;
  private ctl: Int32Array | null = null;
  private port: MessagePort | null = null;
  private batch: Scanned[] = [];
  private bi = 0;
  private received = 0;
  private readonly stats: WalkStats = { inThread: 0, byWorker: 0 };
  private ended = false;
  /** why the worker is gone (its error, or its exit): final once the port is drained */
  private dead: Error | null = null;
  private wake: (() => void) | null = null;

  constructor(
    private readonly root: string,
    private readonly opts: ScanOptions,
    private readonly parallel: 'auto' | 'always' | 'never',
    private readonly onEnd?: (stats: WalkStats) => void,
  ) {
    this.scanner = new TreeScanner(root, opts);
    if (parallel === 'always') this.startWorker();
  }

  next(): Next {
    if (this.scanner) {
      if (this.parallel === 'auto' && !this.ctl && this.stats.inThread >= (scanWorkerTesting.handOffAfter ?? HANDOFF_AFTER)) this.startWorker();
      if (this.dead) {
        if (this.parallel === 'always') throw this.dead;
        this.dropWorker(); // 'auto': carry on in this thread
      }
      if (this.worker && Atomics.load(this.ctl!, READY) === 1) this.handOff();
      else if (this.worker && (this.parallel === 'always' || scanWorkerTesting.waitAtHandOff)) return PENDING;
      else {
        const s = this.scanner.next();
        if (s) this.stats.inThread++;
        else this.end();
        return s;
      }
    }
    return this.fromWorker();
  }

  wait(): Promise<void> {
    if (!this.worker || this.dead) return Promise.resolve(); // next() will say what happened
    // before the handoff we wait for the worker to load, after it for its next post
    const [index, seen] = this.scanner ? [READY, 0] : [POSTED, this.received];
    const w = Atomics.waitAsync(this.ctl!, index, seen, WORKER_SILENCE_MS);
    const changed = (w.async ? w.value : Promise.resolve(w.value)).then((r) => {
      if (r === 'timed-out') throw new Error(`export of ${displayPath(this.root)}: the scan worker did nothing for ${WORKER_SILENCE_MS / 1000} s`);
    });
    const died = new Promise<void>((resolve) => (this.wake = resolve));
    // waitAsync alone does not keep the process alive; the worker does while we wait for it
    // (and only then: a stream nobody reads must not hold the process open)
    const w2 = this.worker;
    w2.ref();
    return Promise.race([changed, died]).finally(() => {
      this.wake = null;
      w2.unref();
    });
  }

  /** The worker failed or exited: what it posted before still counts, then this is the error. */
  private die(e: Error): void {
    this.dead ??= e;
    this.wake?.();
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    this.close();
    this.onEnd?.(this.stats);
  }

  private startWorker(): void {
    this.ctl = new Int32Array(new SharedArrayBuffer(16));
    const { exitAfterBatches, failToLoad } = scanWorkerTesting;
    const options = { workerData: { strataScan: true, ctl: this.ctl, exitAfterBatches, failToLoad } };
    try {
      if (FROM_SOURCES) {
        // a TypeScript checkout: the worker needs tsx, which (registered in this thread by
        // flag or by API) does not reach workers on Node 20; registered there only if needed
        const tsx = JSON.stringify(import.meta.resolve('tsx/esm/api'));
        const entry = new URL('./scan-worker.ts', import.meta.url).href;
        // (a failed import stays failed for its URL: the retry asks for another one)
        this.worker = new Worker(
          `import(${JSON.stringify(entry)}).catch((e) => { if (e?.code !== 'ERR_UNKNOWN_FILE_EXTENSION') throw e; ` +
          `return import(${tsx}).then((t) => { t.register(); return import(${JSON.stringify(entry + '?tsx')}); }); })`,
          { ...options, eval: true },
        );
      } else {
        this.worker = new Worker(new URL('./scan-worker.js', import.meta.url), options);
      }
    } catch (e) {
      this.die(e as Error);
      return;
    }
    this.worker.on('error', (e) => this.die(new Error(`export of ${displayPath(this.root)}: the scan worker failed: ${e?.message ?? e}`, { cause: e })));
    this.worker.on('exit', (code) => this.die(new Error(`export of ${displayPath(this.root)}: the scan worker exited (code ${code}) before the walk ended`)));
    this.worker.unref();
  }

  private dropWorker(): void {
    this.close();
    this.dead = null;
  }

  private handOff(): void {
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    const start: StartMessage = { root: this.root, opts: this.opts, stack: this.scanner!.stack, port: port2 };
    this.worker!.postMessage(start, [port2]);
    this.scanner = null;
  }

  private fromWorker(): Next {
    if (this.bi < this.batch.length) return this.batch[this.bi++];
    if (this.ended) return null;
    const got = receiveMessageOnPort(this.port!);
    if (!got) {
      if (this.dead) {
        this.ended = true;
        this.close();
        throw this.dead;
      }
      return PENDING;
    }
    this.received++;
    const m = got.message as BatchMessage;
    if ('batch' in m) {
      Atomics.add(this.ctl!, TAKEN, 1);
      Atomics.notify(this.ctl!, TAKEN);
      this.batch = unpackBatch(m.batch);
      this.stats.byWorker += this.batch.length;
      this.bi = 0;
      return this.batch[this.bi++];
    }
    if ('done' in m) {
      this.end();
      return null;
    }
    this.ended = true;
    this.close();
    // the worker's error as the in-thread walk would have thrown it (code, errno, syscall, path)
    throw Object.assign(new Error(m.error.message), m.error.props);
  }

  close(): void {
    if (!this.worker) return;
    const w = this.worker;
    this.worker = null;
    w.removeAllListeners('exit');
    w.removeAllListeners('error');
    w.on('error', () => undefined);
    // Let it finish by itself: worker.terminate() while it is inside an ffi-rs call
    // makes ffi-rs panic and abort the whole process. STOP ends a handed-over walk
    // between batches; a worker still waiting for its start message gets none.
    Atomics.store(this.ctl!, STOP, 1);
    Atomics.notify(this.ctl!, TAKEN);
    if (this.scanner) w.postMessage({ stop: true });
    this.port?.close();
    this.wake?.(); // a pending wait() settles (the stream is gone or done by now)
  }

}

class TarProducer {
  private readonly opaqueXattr: string | null;
  private buf = Buffer.allocUnsafe(CHUNK);
  private pos = 0;
  private fd = -1;
  private fileLeft = 0;
  private padLeft = 0;
  private done = false;
  private readonly seen = new Map<string, string>(); // dev:ino → first path, for hardlinks

  constructor(private readonly root: string, opts: ExportOptions, private readonly source: Source) {
    this.opaqueXattr = overlayOpaqueXattr(opts.whiteouts ?? 'none');
  }

  stream(): Readable {
    const self = this;
    return new Readable({
      highWaterMark: CHUNK,
      read() {
        const pump = (): void => {
          if (this.destroyed) return;
          try {
            const chunk = self.fill();
            if (chunk === PENDING) {
              // nothing to give yet (the scan worker is behind): come back when it has posted
              self.source.wait().then(pump, (e: Error) => {
                self.close();
                this.destroy(e);
              });
              return;
            }
            this.push(chunk);
            if (chunk !== null && self.done && self.pos === 0) this.push(null);
          } catch (e) {
            self.close();
            this.destroy(e as Error);
          }
        };
        pump();
      },
      destroy(err, cb) {
        self.close();
        cb(err);
      },
    });
  }

  /** Release everything: the open file and the source (its worker). */
  private close(): void {
    this.closeFile();
    this.source.close();
  }

  private closeFile(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }

  /** Produce the next chunk: null at the end, a short one (or PENDING) when the source has to wait. */
  private fill(): Buffer | null | typeof PENDING {
    let pending = false;
    while (!this.done && this.pos < CHUNK) {
      if (!this.step()) {
        pending = true;
        break;
      }
    }
    if (this.pos === 0) return pending ? PENDING : null;
    const out = this.buf.subarray(0, this.pos);
    this.buf = Buffer.allocUnsafe(CHUNK);
    this.pos = 0;
    return out;
  }

  /** One step of work; false when the source has nothing yet. */
  private step(): boolean {
    if (this.fd >= 0 || this.padLeft) {
      this.copyFile();
      return true;
    }
    const s = this.source.next();
    if (s === PENDING) return false;
    if (s === null) this.finish();
    else if ('deleted' in s) this.whiteoutFor(s.deleted);
    else this.entry(s);
    return true;
  }

  private finish(): void {
    // end of archive: two zero blocks
    this.reserve(BLOCK * 2);
    this.buf.fill(0, this.pos, this.pos + BLOCK * 2);
    this.pos += BLOCK * 2;
    this.done = true;
    this.source.close();
  }

  private entry(s: Scanned): void {
    const { rel } = s;
    const ifmt = s.mode & sys.S_IFMT;
    if (ifmt === sys.S_IFSOCK) return; // sockets are not archived (GNU tar and moby skip them)
    const h: TarHeader = {
      name: rel, type: 'file', mode: s.mode & 0o7777, uid: s.uid, gid: s.gid, size: 0,
      mtimeSec: s.mtimeSec, mtimeNsec: s.mtimeNsec, linkname: '', devmajor: 0, devminor: 0,
      xattrs: s.xattrs ? new Map(s.xattrs) : null,
    };
    let type: EntryType;
    switch (ifmt) {
      case sys.S_IFDIR: type = 'dir'; h.name = rel + '/'; break;
      case sys.S_IFLNK: type = 'symlink'; h.linkname = s.linkname; break;
      case sys.S_IFCHR: type = 'char'; break;
      case sys.S_IFBLK: type = 'block'; break;
      case sys.S_IFIFO: type = 'fifo'; break;
      default: type = 'file';
    }
    h.type = type;
    if (type === 'char' || type === 'block') {
      h.devmajor = sys.major(s.rdev);
      h.devminor = sys.minor(s.rdev);
      if (type === 'char' && s.rdev === 0 && this.opaqueXattr) {
        // overlay whiteout → `.wh.<name>`, as moby's overlayWhiteoutConverter writes it
        const [d, b] = splitRel(rel);
        h.name = (d === '' ? '' : d + '/') + WHITEOUT_PREFIX + b;
        h.type = 'file';
        h.mode = 0o600;
        h.xattrs = null;
      }
    }
    if (s.linkKey) {
      const first = this.seen.get(s.linkKey);
      if (first !== undefined) {
        h.type = 'link';
        h.linkname = first;
        return this.header(h);
      }
      this.seen.set(s.linkKey, rel);
    }
    if (type === 'file') {
      h.size = s.size;
      this.header(h);
      if (h.size > 0) {
        this.fd = fs.openSync(fsPath(this.root + '/' + rel), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
        this.fileLeft = h.size;
        this.padLeft = (BLOCK - (h.size % BLOCK)) % BLOCK;
      }
      return;
    }
    this.header(h);
    if (s.opaque) {
      // the opaque marker inherits the dir's owner and permissions (moby)
      this.header({
        name: rel + '/' + WHITEOUT_OPAQUE_DIR, type: 'file', mode: h.mode & 0o777, uid: h.uid, gid: h.gid, size: 0,
        mtimeSec: 0, mtimeNsec: 0, linkname: '', devmajor: 0, devminor: 0, xattrs: null,
      });
    }
  }

  private whiteoutFor(rel: string): void {
    const [d, b] = splitRel(rel);
    // moby stamps these with time.Now(); epoch 0 keeps the export reproducible
    this.header({
      name: (d === '' ? '' : d + '/') + WHITEOUT_PREFIX + b, type: 'file', mode: 0, uid: 0, gid: 0, size: 0,
      mtimeSec: 0, mtimeNsec: 0, linkname: '', devmajor: 0, devminor: 0, xattrs: null,
    });
  }

  private header(h: TarHeader): void {
    this.reserve(headerSpace(h));
    this.pos += encodeHeader(h, this.buf, this.pos);
  }

  /** Make room for `n` header bytes in the staging buffer (grows it past CHUNK only for the rare overflow). */
  private reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const grown = Buffer.allocUnsafe(Math.max(CHUNK, this.pos + n));
    this.buf.copy(grown, 0, 0, this.pos);
    this.buf = grown;
  }

  private copyFile(): void {
    const room = this.buf.length - this.pos;
    if (room <= 0) return;
    if (this.fd >= 0) {
      const want = Math.min(room, this.fileLeft);
      let n = fs.readSync(this.fd, this.buf, this.pos, want, null);
      if (n === 0) {
        // the file shrank while we read it: pad with zeros like GNU tar, keep the archive valid
        this.buf.fill(0, this.pos, this.pos + want);
        n = want;
      }
      this.pos += n;
      this.fileLeft -= n;
      if (this.fileLeft === 0) this.closeFile();
      return;
    }
    const pad = Math.min(room, this.padLeft);
    this.buf.fill(0, this.pos, this.pos + pad);
    this.pos += pad;
    this.padLeft -= pad;
  }
}
