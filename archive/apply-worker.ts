// Worker thread for apply.ts: the half of a regular file's extraction that acts
// on an fd the main thread already opened — write its data, fchown, fchmod,
// futimes, close — so that the kernel's copy overlaps the main thread's
// parsing and path work. It never resolves a path: containment stays with the
// main thread's in-root.ts handles (fds are process-wide, so an fd opened
// there is valid here).
//
// Protocol (one session per apply; see ApplyOffload in apply-offload.ts):
//   parentPort message { ctl, ops, ring, port } starts a session.
//   ctl (Int32Array over a SharedArrayBuffer):
//     ctl[HEAD]      ops published by the main thread (a count, wrapping as int32)
//     ctl[TAIL]      ops done here; bumped and notified after each
//     ctl[READY]     1 while a session runs
//     ctl[FAILED]    1 once an op failed: its error went to `port` first ({ at, message, props })
//     ctl[SLEEPING]  1 while waiting for HEAD to move (the main thread notifies then)
//     ctl[DEAD]      1 if the loop itself threw (a bug): the main thread stops waiting
//     ctl[SLOTS + s] WRITE ops not yet done that read ring slot s (the main thread reuses it at 0)
//   ops (Float64Array): records of REC numbers at (index & (QUEUE - 1)) * REC:
//     WRITE  fd, slot, offset in ring, length
//     FINISH fd, uid (-1: no fchown), gid, mode (-1: no fchmod), atime, mtime (seconds), then close
//     END    the session is over: back to idle
// After a failure every later op only closes its fd, so nothing leaks and the
// main thread's wait for TAIL ends.
import * as fs from 'node:fs';
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';

export const HEAD = 0;
export const TAIL = 1;
export const READY = 2;
export const FAILED = 3;
export const SLEEPING = 4;
export const DEAD = 5;
export const SLOTS = 8;

export const WRITE = 1;
export const FINISH = 2;
export const END = 3;

/** numbers per op record */
export const REC = 8;
/** the record's last number: the main thread's, never read here */
export const SEQ = 7;
/** op records in the queue (a power of two) */
export const QUEUE = 4096;

export interface SessionMessage { ctl: Int32Array; ops: Float64Array; ring: SharedArrayBuffer; port: MessagePort }
/** A failed op: its index and the error as node:fs threw it (message plus errno fields). */
export interface OpError { at: number; message: string; props: { code?: string; errno?: number; syscall?: string } }

if (parentPort && workerData?.strataApply) {
  parentPort.on('message', (m: SessionMessage) => session(m));
}

function session({ ctl, ops, ring, port }: SessionMessage): void {
  const bytes = new Uint8Array(ring);
  let tail = Atomics.load(ctl, TAIL);
  let failed = false;
  Atomics.store(ctl, READY, 1);
  Atomics.notify(ctl, READY);
  try {
    for (;;) {
      if (Atomics.load(ctl, HEAD) === tail) {
        Atomics.store(ctl, SLEEPING, 1);
        if (Atomics.load(ctl, HEAD) === tail) Atomics.wait(ctl, HEAD, tail);
        Atomics.store(ctl, SLEEPING, 0);
        continue;
      }
      const r = (tail & (QUEUE - 1)) * REC;
      if (ops[r] === END) break;
      const err = run(ops, r, bytes, failed);
      if (err && !failed) {
        failed = true;
        const report: OpError = { at: tail, message: err.message, props: { code: err.code, errno: err.errno, syscall: err.syscall } };
        port.postMessage(report);
        Atomics.store(ctl, FAILED, 1);
      }
      if (ops[r] === WRITE) {
        const slot = SLOTS + ops[r + 2];
        if (Atomics.sub(ctl, slot, 1) === 1) Atomics.notify(ctl, slot);
      }
      tail = (tail + 1) | 0;
      Atomics.store(ctl, TAIL, tail);
      Atomics.notify(ctl, TAIL);
    }
    tail = (tail + 1) | 0; // the END op
  } catch (e) {
    Atomics.store(ctl, DEAD, 1);
    throw e;
  } finally {
    Atomics.store(ctl, READY, 0);
    Atomics.store(ctl, TAIL, tail);
    Atomics.notify(ctl, TAIL);
    port.close();
  }
}

/** Do the op at ops[r] (after a failure: only close its fd); its error, if any. */
function run(ops: Float64Array, r: number, bytes: Uint8Array, failed: boolean): NodeJS.ErrnoException | null {
  const fd = ops[r + 1];
  let err: NodeJS.ErrnoException | null = null;
  try {
    if (failed) {
      // nothing but the close below
    } else if (ops[r] === WRITE) {
      const end = ops[r + 3] + ops[r + 4];
      for (let off = ops[r + 3]; off < end;) off += fs.writeSync(fd, bytes, off, end - off);
    } else {
      if (ops[r + 2] >= 0) fs.fchownSync(fd, ops[r + 2], ops[r + 3]);
      if (ops[r + 4] >= 0) fs.fchmodSync(fd, ops[r + 4]);
      fs.futimesSync(fd, ops[r + 5], ops[r + 6]);
    }
  } catch (e) {
    err = e as NodeJS.ErrnoException;
  }
  if (ops[r] === FINISH) {
    try {
      fs.closeSync(fd);
    } catch (e) {
      err ??= e as NodeJS.ErrnoException;
    }
  }
  return err;
}
