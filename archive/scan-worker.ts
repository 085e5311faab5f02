// Worker thread for export.ts: continues a TreeScanner walk handed over by the
// main thread and streams the scanned entries back in batches.
//
// Protocol (ctl is an Int32Array over a SharedArrayBuffer):
//   ctl[READY]    set to 1 once this module (and the FFI bindings) are loaded
//   ctl[POSTED]   batches posted on `port`, bumped and notified after each post
//   ctl[TAKEN]    batches the main thread has taken; we wait when POSTED - TAKEN
//                 reaches MAX_AHEAD, so memory stays bounded however big the tree
//   ctl[STOP]     set by the main thread to make us quit early
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
export type BatchMessage = { batch: PackedBatch } | { done: true } | { error: { message: string; code?: string } };

if (parentPort && workerData?.strataScan) {
  const ctl = workerData.ctl as Int32Array;
  parentPort.once('message', (m: StartMessage) => run(ctl, m));
  Atomics.store(ctl, READY, 1);
  Atomics.notify(ctl, READY);
}

function run(ctl: Int32Array, m: StartMessage): void {
  const post = (msg: BatchMessage) => {
    m.port.postMessage(msg);
    Atomics.add(ctl, POSTED, 1);
    Atomics.notify(ctl, POSTED);
  };
  try {
    const scanner = new TreeScanner(m.root, m.opts, m.stack);
    for (;;) {
      if (Atomics.load(ctl, STOP)) break;
      const entries: Scanned[] = [];
      let s: Scanned | null = null;
      while (entries.length < BATCH && (s = scanner.next()) !== null) entries.push(s);
      if (entries.length) {
        // stay at most MAX_AHEAD batches ahead of the reader
        for (let taken = Atomics.load(ctl, TAKEN); Atomics.load(ctl, POSTED) - taken >= MAX_AHEAD; taken = Atomics.load(ctl, TAKEN)) {
          if (Atomics.load(ctl, STOP)) return m.port.close();
          Atomics.wait(ctl, TAKEN, taken, 1000);
        }
        post({ batch: packBatch(entries) });
      }
      if (s === null) {
        post({ done: true });
        break;
      }
    }
  } catch (e) {
    post({ error: { message: (e as Error).message, code: (e as NodeJS.ErrnoException).code } });
  }
  m.port.close();
}
