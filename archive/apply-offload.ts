// The main thread's side of apply-worker.ts: a read ring the tar is read into
// and an op queue, both shared with a worker that creates regular files under
// directory handles this thread resolved, writes their data and finishes them
// (owner, mode, times, close) while this thread parses the next entries and
// does every path-resolving call itself.
//
// Workers are pooled per process (idle ones unref'd: they never hold the
// process open) and one serves one apply at a time. A session begins when
// the worker is up: until then, and whenever the queue is nearly full (the
// worker fell behind), apply.ts writes the file itself — so a small tar never
// waits for a worker to start.
import * as fs from 'node:fs';
import { MessageChannel, receiveMessageOnPort, Worker } from 'node:worker_threads';
import {
  CLOSE, CREATE, DEAD, END, FAILED, SEQ, FINISH, HEAD, PATH_SLOT, QUEUE, READY, REC, SLEEPING, SLOTS, TAIL, WRITE,
  type OpError, type SessionMessage,
} from './apply-worker.ts';

/** ring slots of one read each */
export const RING_SLOTS = 8;
export const SLOT_BYTES = 1 << 20;
/**
 * ops the worker may lag behind before this thread stops handing files over
 * and writes them itself (about two ring slots of small files), so that it
 * seldom waits for the worker
 */
const MAX_LAG = 1024;
/** directory handles left to the worker to close before this thread waits for it */
const MAX_CLOSES = 64;
/** how long 'always' waits for the worker to start before going on without it */
const READY_WAIT_MS = 10_000;

const FROM_SOURCES = new URL(import.meta.url).pathname.endsWith('.ts');
const idle: Worker[] = [];

function spawn(): Worker {
  // trackUnmanagedFds off: the worker closes fds the main thread opened (node would warn on each)
  const options = { workerData: { strataApply: true }, trackUnmanagedFds: false };
  let w: Worker;
  if (FROM_SOURCES) {
    // a TypeScript checkout: tsx, registered in this thread, does not reach workers on Node 20
    const tsx = JSON.stringify(import.meta.resolve('tsx/esm/api'));
    const entry = new URL('./apply-worker.ts', import.meta.url).href;
    w = new Worker(
      `import(${JSON.stringify(entry)}).catch((e) => { if (e?.code !== 'ERR_UNKNOWN_FILE_EXTENSION') throw e; ` +
      `return import(${tsx}).then((t) => { t.register(); return import(${JSON.stringify(entry + '?tsx')}); }); })`,
      { ...options, eval: true },
    );
  } else {
    w = new Worker(new URL('./apply-worker.js', import.meta.url), options);
  }
  w.unref();
  // a worker that fails to load or dies never sets READY: the apply goes on in this thread
  w.on('error', () => undefined);
  w.on('exit', () => {
    const i = idle.indexOf(w);
    if (i >= 0) idle.splice(i, 1);
  });
  return w;
}

/** An op's failure on the worker: the `tag` and `seq` it was handed over with, and node:fs's error. */
export interface OffloadError<T> { tag: T; seq: number; error: Error }

/**
 * One apply's ring and queue. Each op carries a tag `T` and a number `seq`
 * (apply.ts: the entry's name and how many entries came before it), which come
 * back with the first failing op's error.
 */
export class ApplyOffload<T> {
  private readonly ctl = new Int32Array(new SharedArrayBuffer(4 * (SLOTS + RING_SLOTS)));
  private readonly ops = new Float64Array(new SharedArrayBuffer(8 * REC * QUEUE));
  private readonly ring = new SharedArrayBuffer(RING_SLOTS * SLOT_BYTES);
  private readonly paths = new SharedArrayBuffer(QUEUE * PATH_SLOT);
  private readonly pathBytes = Buffer.from(this.paths);
  /** the op count just past the last CREATE: until the worker passes it, a name may be in the making */
  private createEnd = 0;
  /** a CREATEd file not finished yet */
  private fileOpen = false;
  /** CLOSE ops since the last drain */
  private closesQueued = 0;
  private readonly tags: (T | undefined)[] = new Array(QUEUE);
  private readonly port;
  private head = 0;
  private slot = -1;
  private worker: Worker | null;
  private failure: OffloadError<T> | null = null;

  /** `waitReady` (tests): block until the worker runs, so that even a small tar is handed over. */
  constructor(waitReady = false) {
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    this.worker = idle.pop() ?? spawn();
    const m: SessionMessage = { ctl: this.ctl, ops: this.ops, ring: this.ring, paths: this.paths, port: port2 };
    this.worker.postMessage(m, [port2]);
    // bounded: a worker that cannot start (EMFILE, say) never says so while this thread is blocked
    if (waitReady) Atomics.wait(this.ctl, READY, 0, READY_WAIT_MS);
  }

  /** The next ring slot to read into, once the worker has written out what it held. */
  nextSlot(): Buffer {
    this.flush();
    this.slot = (this.slot + 1) % RING_SLOTS;
    this.waitWhile(SLOTS + this.slot, (v) => v !== 0);
    return Buffer.from(this.ring, this.slot * SLOT_BYTES, SLOT_BYTES);
  }

  /** Whether a file may be handed over now: the worker runs and is not far behind. */
  accepts(): boolean {
    if (Atomics.load(this.ctl, READY) !== 1 || this.failure) return false;
    return ((this.head - Atomics.load(this.ctl, TAIL)) | 0) <= MAX_LAG;
  }

  /**
   * Create the file at `at` (a /proc/<pid>/fd/<dir>/<name> path as a raw byte
   * string of at most PATH_SLOT bytes, whose directory handle stays open until
   * the worker passed this op: see release) with permission bits `mode`; the
   * write()s and the finish() that follow act on it.
   */
  create(at: string, mode: number, tag: T, seq: number): void {
    if (at.length > PATH_SLOT) throw new Error(`internal: a path of ${at.length} bytes handed to the apply worker`);
    const r = this.record(tag, seq);
    this.ops[r] = CREATE;
    this.ops[r + 1] = this.pathBytes.write(at, (r / REC) * PATH_SLOT, PATH_SLOT, 'latin1');
    this.ops[r + 2] = mode;
    this.publish();
    this.createEnd = this.head;
    this.fileOpen = true;
  }

  /** Whether a CREATE handed over may not be done yet (a name may be in the making). */
  creating(): boolean {
    return this.worker !== null && ((this.createEnd - Atomics.load(this.ctl, TAIL)) | 0) > 0;
  }

  /** Close a directory handle: at once, or once the worker passed the CREATEs that may use it. */
  release(fd: number): void {
    if (!this.creating()) return fs.closeSync(fd);
    const r = this.record(undefined, 0);
    this.ops[r] = CLOSE;
    this.ops[r + 1] = fd;
    this.publish();
    // the worker sees ops once per ring slot: a slot of tiny files in new dirs would pile handles up
    if (++this.closesQueued >= MAX_CLOSES) this.drain();
  }

  /** Write `chunk` (a slice of the current ring slot) to the file created last. */
  write(chunk: Buffer, tag: T, seq: number): void {
    const r = this.record(tag, seq);
    this.ops[r] = WRITE;
    this.ops[r + 1] = this.slot;
    this.ops[r + 2] = chunk.byteOffset;
    this.ops[r + 3] = chunk.length;
    Atomics.add(this.ctl, SLOTS + this.slot, 1);
    this.publish();
  }

  /** The file created last: fchown (uid < 0: none), fchmod (mode < 0: none), futimes to `time`, then close. */
  finish(uid: number, gid: number, mode: number, time: number, tag: T, seq: number): void {
    const r = this.record(tag, seq);
    this.ops[r] = FINISH;
    this.ops[r + 1] = uid;
    this.ops[r + 2] = gid;
    this.ops[r + 3] = mode;
    this.ops[r + 4] = time;
    this.publish();
    this.fileOpen = false;
  }

  /** The first op that failed on the worker so far, if one did. */
  failed(): OffloadError<T> | null {
    if (this.failure === null && Atomics.load(this.ctl, FAILED) === 1) {
      const m = receiveMessageOnPort(this.port)!.message as OpError;
      const i = m.at & (QUEUE - 1);
      this.failure = { tag: this.tags[i]!, seq: this.ops[i * REC + SEQ], error: Object.assign(new Error(m.message), m.props) };
    }
    return this.failure;
  }

  /** Wait until every op handed over is done; then failed() says whether all went well. */
  drain(): void {
    if (this.worker === null) return;
    this.flush();
    this.waitWhile(TAIL, (v) => v !== this.head);
    this.closesQueued = 0;
  }

  /**
   * End the session (after draining): the worker goes back to the pool. A
   * session cut off mid-file waits until the worker has closed that file, so
   * no fd into the layer outlives the apply. A dead worker is terminated and
   * the error thrown.
   */
  close(): void {
    if (this.worker === null) return;
    const w = this.worker;
    try {
      this.drain();
      // a worker still starting gets it first thing: its session ends at once
      this.ops[this.record(undefined, 0)] = END;
      this.publish();
      this.flush();
      if (this.fileOpen) this.waitWhile(TAIL, (v) => v !== this.head);
    } catch (e) {
      this.worker = null;
      void w.terminate();
      throw e;
    }
    this.worker = null;
    this.tags.fill(undefined);
    this.port.close();
    idle.push(w);
  }

  private record(tag: T | undefined, seq: number): number {
    if (((this.head - Atomics.load(this.ctl, TAIL)) | 0) >= QUEUE) {
      this.flush(); // a large file's WRITEs can fill it
      this.waitWhile(TAIL, (v) => ((this.head - v) | 0) >= QUEUE);
    }
    // the failed op's record may be the one reused now: its tag is read first (FAILED is set before TAIL passes it)
    this.failed();
    this.tags[this.head & (QUEUE - 1)] = tag;
    const r = (this.head & (QUEUE - 1)) * REC;
    this.ops[r + SEQ] = seq;
    return r;
  }

  /** One op more; the worker sees it at the next flush(). */
  private publish(): void {
    this.head = (this.head + 1) | 0;
  }

  /**
   * Let the worker see the ops recorded so far: once per ring slot (and before
   * any wait), not per op, so that it works through batches instead of
   * sleeping and being woken for every file.
   */
  private flush(): void {
    if (Atomics.load(this.ctl, HEAD) === this.head) return;
    Atomics.store(this.ctl, HEAD, this.head);
    if (Atomics.load(this.ctl, SLEEPING) === 1) Atomics.notify(this.ctl, HEAD);
  }

  /** Block while `busy(ctl[i])`; a dead worker ends the wait (its ops will never be done). */
  private waitWhile(i: number, busy: (v: number) => boolean): void {
    for (let v = Atomics.load(this.ctl, i); busy(v); v = Atomics.load(this.ctl, i)) {
      if (Atomics.load(this.ctl, DEAD) === 1) throw new Error('the apply worker thread died');
      Atomics.wait(this.ctl, i, v, 1000);
    }
  }
}
