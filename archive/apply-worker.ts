// Worker thread for apply.ts: the syscalls of a regular file's extraction —
// create it, write its data, fchown, fchmod, futimes, close — so that the
// kernel's work overlaps the main thread's parsing and path work. It never
// resolves a path: containment stays with the main thread's in-root.ts
// handles. A file is created here only under a directory handle the main
// thread resolved, by one final name opened O_CREAT|O_EXCL|O_NOFOLLOW through
// that handle's /proc/<pid>/fd magic link (fds are process-wide, so the
// handle is valid here); the main thread keeps the handle open until this
// thread has passed the op (CLOSE).
//
// Protocol (one session per apply; see ApplyOffload in apply-offload.ts):
//   parentPort message { ctl, ops, ring, paths, port } starts a session.
//   ctl (Int32Array over a SharedArrayBuffer):
//     ctl[HEAD]      ops published by the main thread (a count, wrapping as int32)
//     ctl[TAIL]      ops done here; bumped and notified after each
//     ctl[READY]     1 while a session runs
//     ctl[FAILED]    1 once an op failed: its error went to `port` first ({ at, message, props })
//     ctl[SLEEPING]  1 while waiting for HEAD to move (the main thread notifies then)
//     ctl[DEAD]      1 if the loop itself threw (a bug): the main thread stops waiting
//     ctl[SLOTS + s] WRITE ops not yet done that read ring slot s (the main thread reuses it at 0)
//   ops (Float64Array): records of REC numbers at (index & (QUEUE - 1)) * REC:
//     CREATE path length (its bytes at index * PATH_SLOT in `paths`), permission bits: the
//            file the WRITEs and the FINISH that follow act on
//     WRITE  slot, offset in ring, length
//     FINISH uid (-1: no fchown), gid, mode (-1: no fchmod), time (seconds: atime and mtime), then close
//     CLOSE  fd: a directory handle the main thread is done with, closed once the ops before it are
//     END    the session is over: back to idle (an open CREATEd file is closed)
// After a failure every later op only closes what it would have closed, so
// nothing leaks and the main thread's wait for TAIL ends.
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
export const CREATE = 4;
export const CLOSE = 5;

/** numbers per op record */
export const REC = 8;
/** the record's last number: the main thread's, never read here */
export const SEQ = 7;
/** op records in the queue (a power of two) */
export const QUEUE = 4096;
/** bytes of `paths` per op record: /proc/<pid>/fd/<fd>/ and a name of at most NAME_MAX (255) bytes */
export const PATH_SLOT = 320;
/** how a file is created, here and by apply.ts: never over an existing name, never through a symlink */
export const CREATE_FLAGS = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW;

export interface SessionMessage { ctl: Int32Array; ops: Float64Array; ring: SharedArrayBuffer; paths: SharedArrayBuffer; port: MessagePort }
/** A failed op: its index and the error as node:fs threw it (message plus errno fields). */
export interface OpError { at: number; message: string; props: { code?: string; errno?: number; syscall?: string } }

if (parentPort && workerData?.strataApply) {
  parentPort.on('message', (m: SessionMessage) => session(m));
}

/** A session's state across ops. */
interface Session { bytes: Uint8Array; paths: SharedArrayBuffer; failed: boolean; /** the CREATEd file, or -1 */ cur: number }

function session({ ctl, ops, ring, paths, port }: SessionMessage): void {
  const st: Session = { bytes: new Uint8Array(ring), paths, failed: false, cur: -1 };
  let tail = Atomics.load(ctl, TAIL);
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
      const err = run(ops, r, st);
      if (err && !st.failed) {
        st.failed = true;
        const report: OpError = { at: tail, message: err.message, props: { code: err.code, errno: err.errno, syscall: err.syscall } };
        port.postMessage(report);
        Atomics.store(ctl, FAILED, 1);
      }
      if (ops[r] === WRITE) {
        const slot = SLOTS + ops[r + 1];
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
    if (st.cur >= 0) closeQuietly(st.cur); // a session cut off mid-file
    Atomics.store(ctl, READY, 0);
    Atomics.store(ctl, TAIL, tail);
    Atomics.notify(ctl, TAIL);
    port.close();
  }
}

/** Do the op at ops[r] (after a failure: only close what it closes); its error, if any. */
function run(ops: Float64Array, r: number, st: Session): NodeJS.ErrnoException | null {
  const op = ops[r];
  let err: NodeJS.ErrnoException | null = null;
  try {
    if (st.failed || op === CLOSE) {
      // nothing but the close below
    } else if (op === CREATE) {
      st.cur = fs.openSync(Buffer.from(st.paths, (r / REC) * PATH_SLOT, ops[r + 1]), CREATE_FLAGS, ops[r + 2]);
    } else if (op === WRITE) {
      const end = ops[r + 2] + ops[r + 3];
      for (let off = ops[r + 2]; off < end;) off += fs.writeSync(st.cur, st.bytes, off, end - off);
    } else {
      if (ops[r + 1] >= 0) fs.fchownSync(st.cur, ops[r + 1], ops[r + 2]);
      if (ops[r + 3] >= 0) fs.fchmodSync(st.cur, ops[r + 3]);
      fs.futimesSync(st.cur, ops[r + 4], ops[r + 4]);
    }
  } catch (e) {
    err = e as NodeJS.ErrnoException;
  }
  const fd = op === CLOSE ? ops[r + 1] : op === FINISH ? st.cur : -1;
  if (op === FINISH) st.cur = -1;
  if (fd >= 0) {
    try {
      fs.closeSync(fd);
    } catch (e) {
      err ??= e as NodeJS.ErrnoException;
    }
  }
  return err;
}

function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    // the session is over either way
  }
}
