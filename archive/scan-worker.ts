// Worker thread for export.ts: continues a TreeScanner walk handed over by the
// main thread and streams the scanned entries back in batches.
//
// Protocol (ctl is an Int32Array over a SharedArrayBuffer):
//   ctl[READY]    set to 1 once this module (and the FFI bindings) are loaded
//   ctl[POSTED]   batches posted on `port`, bumped and notified after each post
//   ctl[TAKEN]    batches the main thread has taken; we wait when POSTED - TAKEN
//                 reaches MAX_AHEAD, so memory stays bounded however big the tree
//   ctl[STOP]     set by the main thread to make us quit early (then nothing more is posted);
//                 never terminate() us: ffi-rs aborts the process if a call is cut short
// Before the walk: one message on parentPort, StartMessage or { stop: true }.
// Messages: { batch } (entries packed by packBatch), then { done: true } or { error }.
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { packBatch, TreeScanner, type PackedBatch, type ScanFrame, type ScanOptions, type Scanned } from './scan.ts';

export const READY = 0;
export const POSTED = 1;
export const TAKEN = 2;
export const STOP = 3;
export const MAX_AHEAD = 16;
export const BATCH = 256;

export interface StartMessage { root: string; opts: ScanOptions; stack: ScanFrame[]; port: MessagePort }
/** An error as the in-thread walk would have thrown it: message plus Node's errno fields. */
export interface WorkerError { message: string; props: { code?: string; errno?: number; syscall?: string; path?: string } }
export type BatchMessage = { batch: PackedBatch } | { done: true } | { error: WorkerError };

if (parentPort && workerData?.strataScan) {
  if (workerData.failToLoad) throw new Error('scan worker: failing to load (fault injection)');
  const ctl = workerData.ctl as Int32Array;
  parentPort.once('message', (m: StartMessage | { stop: true }) => {
    if (!('stop' in m)) run(ctl, m, workerData.exitAfterBatches as number | undefined);
  });
  Atomics.store(ctl, READY, 1);
  Atomics.notify(ctl, READY);
}

function run(ctl: Int32Array, m: StartMessage, exitAfterBatches?: number): void {
  const post = (msg: BatchMessage) => {
    m.port.postMessage(msg);
    Atomics.add(ctl, POSTED, 1);
    Atomics.notify(ctl, POSTED);
    // fault injection (tests): die the way a crashed worker would, mid-walk
    if (exitAfterBatches !== undefined && Atomics.load(ctl, POSTED) >= exitAfterBatches) process.exit(3);
  };
  let entries: Scanned[] = [];
  try {
    const scanner = new TreeScanner(m.root, m.opts, m.stack);
    for (;;) {
      if (Atomics.load(ctl, STOP)) break;
      // The reader has at most one batch in hand: it is waiting for us, so we leave regular
      // files' xattrs (one FFI call each, the dearest part of a scan) to it for this batch.
      const later = Atomics.load(ctl, POSTED) - Atomics.load(ctl, TAKEN) <= 1;
      let s: Scanned | null = null;
      while (entries.length < BATCH && (s = scanner.next(later)) !== null) entries.push(s);
      if (entries.length) {
        if (!waitForRoom(ctl)) break;
        post({ batch: packBatch(entries) });
        entries = [];
      }
      if (s === null) {
        post({ done: true });
        break;
      }
    }
  } catch (e) {
    // what was scanned before the failure goes first, as the in-thread walk would have yielded it
    if (entries.length && waitForRoom(ctl)) post({ batch: packBatch(entries) });
    const err = e as NodeJS.ErrnoException;
    post({ error: { message: err.message, props: { code: err.code, errno: err.errno, syscall: err.syscall, path: err.path } } });
  }
  m.port.close();
}

/** Wait until we are fewer than MAX_AHEAD batches ahead of the reader; false if told to stop. */
function waitForRoom(ctl: Int32Array): boolean {
  for (let taken = Atomics.load(ctl, TAKEN); Atomics.load(ctl, POSTED) - taken >= MAX_AHEAD; taken = Atomics.load(ctl, TAKEN)) {
    if (Atomics.load(ctl, STOP)) return false;
    Atomics.wait(ctl, TAKEN, taken, 1000);
  }
  return !Atomics.load(ctl, STOP);
}
