// Where an export's entries come from: a change list (exportChanges), or a
// whole-tree walk (exportDir) done in this thread at first and, for a big tree,
// handed to a scan worker (scan-worker.ts) that runs ahead while the producer
// in export.ts reads file data. The worker side of the protocol is described
// in scan-worker.ts; this is the main-thread side.
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { scanEntry, TreeScanner, unpackBatch, type ScanOptions, type Scanned } from './scan.ts';
import { POSTED, READY, STOP, TAKEN, type BatchMessage, type StartMessage } from './scan-worker.ts';
import { ChangeKind, displayPath, type Change } from './types.ts';

export interface WalkStats { inThread: number; byWorker: number }

/**
 * For tests: the in-thread entries before a handoff in 'auto' mode (and whether
 * the walk then waits for the worker instead of going on meanwhile), and faults
 * for the scan workers started from now on (exit with code 3 after posting this
 * many batches, or throw while loading).
 */
export const scanWorkerTesting: { handOffAfter?: number; waitAtHandOff?: boolean; exitAfterBatches?: number; failToLoad?: boolean } = {};

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

/** What a source can say: an entry, a deletion (whiteout) to write, the end (null), or "not yet". */
export const PENDING = Symbol('pending');
export type Next = Scanned | { deleted: string } | null | typeof PENDING;

/** Where the producer's entries come from. */
export interface Source {
  next(): Next;
  /** resolves once next() may have more than PENDING to say; rejects if it never will */
  wait(): Promise<void>;
  close(): void;
}

/** The entries of a change list, deletions as they are. */
export class ChangeList implements Source {
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
export class Walk implements Source {
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
