// Parse a tar in a worker thread that the caller can terminate: a parser that
// loops (the class-2 defect of issue 8: a negative size moved it backwards
// forever) must fail its test instead of blocking the test process.
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { TarParser } from '../../archive/tar-reader.ts';

export type ParseOutcome =
  | { kind: 'ok'; names: string[] }
  | { kind: 'error'; errorName: string; message: string; names: string[] }
  | { kind: 'timeout' };

/** Parse `tar` (pushed in `chunk`-byte pieces) in a worker; `timeout` if it has not ended after `ms`. */
export function parseInWorker(tar: Buffer, ms = 5000, chunk = 700): Promise<ParseOutcome> {
  return new Promise((resolve, reject) => {
    // workers do not inherit the tsx loader: register it there first (as archive/walk.ts does)
    const tsx = JSON.stringify(import.meta.resolve('tsx/esm/api'));
    const self = JSON.stringify(import.meta.url + '?worker');
    const w = new Worker(`import(${tsx}).then((t) => { t.register(); return import(${self}); })`, { eval: true, workerData: { tar, chunk } });
    const timer = setTimeout(() => {
      void w.terminate();
      resolve({ kind: 'timeout' });
    }, ms);
    w.once('message', (m: ParseOutcome) => {
      clearTimeout(timer);
      void w.terminate();
      resolve(m);
    });
    w.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

if (!isMainThread && parentPort) {
  const { tar, chunk } = workerData as { tar: Uint8Array; chunk: number };
  const buf = Buffer.from(tar);
  const names: string[] = [];
  const p = new TarParser({ entry: (h) => void names.push(h.name), data: () => {}, entryEnd: () => {} });
  try {
    for (let i = 0; i < buf.length && !p.ended; i += chunk) p.push(buf.subarray(i, i + chunk));
    p.end();
    parentPort.postMessage({ kind: 'ok', names });
  } catch (e) {
    parentPort.postMessage({ kind: 'error', errorName: (e as Error).name, message: (e as Error).message, names });
  }
}
