// The apply fuzzer's loop, run in a worker thread so that a case that hangs
// (a parser moving backwards, a symlink loop walked forever) is cut off by
// the caller's watchdog instead of blocking the test process.
//
// Each case: a hostile tar (test/helpers/hostile-tar.ts) applied into
// <top>/layer, beside the sentinel <top>/victim. Held after every case:
// success, or an ApplyError with one line naming the entry or byte offset;
// the sentinel's manifest (contents, modes, owners, xattrs, times) unchanged;
// no fd left open; no aufs plnk temp dir left; the case ended in time.
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { applyLayer, ApplyError } from '../../archive/apply.ts';
import { treeManifest, manifestDiff } from '../../archive/digest.ts';
import type { WhiteoutFormat } from '../../archive/types.ts';
import { lsetxattr } from '../../sys/syscalls.ts';
import { Rng } from './random-layer-ops.ts';
import { hostileTar } from './hostile-tar.ts';

export interface FuzzJob { seed: number; cases: number; formats: WhiteoutFormat[]; top: string; caseMs: number }
export type FuzzProgress =
  | { kind: 'progress'; done: number }
  | { kind: 'done'; cases: number; ok: number; refused: number; ms: number }
  | { kind: 'fail'; index: number; format: WhiteoutFormat; why: string; replay: string };

/** Run `job` in a worker; fails (rejects) naming seed and case when a case breaks a rule or stalls past `stallMs`. */
export function runApplyFuzz(job: FuzzJob, stallMs = 15_000): Promise<Extract<FuzzProgress, { kind: 'done' }>> {
  return new Promise((resolve, reject) => {
    const tsx = JSON.stringify(import.meta.resolve('tsx/esm/api'));
    const me = JSON.stringify(import.meta.url + '?worker');
    const w = new Worker(`import(${tsx}).then((t) => { t.register(); return import(${me}); })`, { eval: true, workerData: job });
    let done = 0;
    let timer: NodeJS.Timeout;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        void w.terminate();
        reject(new Error(`seed ${job.seed}: case ${done} made no progress for ${stallMs} ms (replay with that seed)`));
      }, stallMs);
    };
    arm();
    w.on('message', (m: FuzzProgress) => {
      if (m.kind === 'progress') {
        done = m.done;
        arm();
        return;
      }
      clearTimeout(timer);
      void w.terminate();
      if (m.kind === 'done') resolve(m);
      else reject(new Error(`seed ${job.seed}, case ${m.index} (${m.format}): ${m.why}\nthe tar: ${m.replay}`));
    });
    w.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

const OLD = new Date('2001-02-03T04:05:06Z');

/** The sentinel tree beside the layer: times, modes, owners, an xattr no tar here carries. */
export function makeSentinel(victim: string): void {
  fs.mkdirSync(path.join(victim, 'sub', 'deep'), { recursive: true });
  fs.writeFileSync(path.join(victim, 'hello'), 'hello');
  fs.writeFileSync(path.join(victim, 'sub', 'x'), 'x');
  fs.symlinkSync('hello', path.join(victim, 'link'));
  lsetxattr(path.join(victim, 'sub'), 'user.keep', Buffer.from('1'));
  for (const p of [path.join(victim, 'sub', 'deep'), path.join(victim, 'sub', 'x'), path.join(victim, 'hello'), path.join(victim, 'sub'), victim]) {
    fs.chmodSync(p, 0o751);
    fs.chownSync(p, 1000, 1000);
    fs.utimesSync(p, OLD, OLD);
  }
}

const openFds = () => fs.readdirSync('/proc/self/fd').length;

/** What is wrong with an apply's error, or null when it is a clean refusal. */
export function badError(e: unknown): string | null {
  if (!(e instanceof ApplyError)) return `not an ApplyError: ${(e as Error)?.stack ?? String(e)}`;
  if (e.message.includes('\n')) return `a multi-line message: ${e.message}`;
  if (!/tar entry "|at byte \d+/.test(e.message)) return `the message names no entry or offset: ${e.message}`;
  if (/\bat (file|node):|undefined|\[object /.test(e.message)) return `a message with internals: ${e.message}`;
  return null;
}

async function main(job: FuzzJob): Promise<void> {
  const layer = path.join(job.top, 'layer');
  const victim = path.join(job.top, 'victim');
  const outside = { ignore: (rel: string) => rel === '/layer' || rel.startsWith('/layer/') };
  const baseline = await treeManifest(job.top, outside);
  const rng = new Rng(job.seed);
  const started = Date.now();
  let ok = 0;
  let refused = 0;
  for (let i = 0; i < job.cases; i++) {
    const format = job.formats[i % job.formats.length];
    const { tar } = hostileTar(rng, victim, job.top);
    const fail = (why: string) => {
      const replay = path.join(os.tmpdir(), `strata-apply-fuzz-${job.seed}-${i}.tar`);
      fs.writeFileSync(replay, tar);
      parentPort!.postMessage({ kind: 'fail', index: i, format, why, replay } satisfies FuzzProgress);
    };
    for (const n of fs.readdirSync(layer, { encoding: 'buffer' })) fs.rmSync(Buffer.concat([Buffer.from(layer + '/'), n]), { recursive: true, force: true });
    const fds = openFds();
    const t0 = Date.now();
    try {
      await applyLayer(tar, layer, { whiteouts: format });
      ok++;
    } catch (e) {
      const bad = badError(e);
      if (bad) return fail(bad);
      refused++;
    }
    const ms = Date.now() - t0;
    if (ms > job.caseMs) return fail(`took ${ms} ms (bound ${job.caseMs} ms)`);
    if (openFds() !== fds) return fail(`${openFds() - fds} fds left open`);
    const plnk = fs.readdirSync(layer).filter((n) => n.startsWith('.strata-plnk-'));
    if (plnk.length) return fail(`plnk temp dir left: ${plnk.join(', ')}`);
    const after = await treeManifest(job.top, outside);
    if (after.join('\n') !== baseline.join('\n')) return fail(`outside the layer changed:\n${manifestDiff(baseline, after)}`);
    if (i % 50 === 49) parentPort!.postMessage({ kind: 'progress', done: i + 1 } satisfies FuzzProgress);
  }
  parentPort!.postMessage({ kind: 'done', cases: job.cases, ok, refused, ms: Date.now() - started } satisfies FuzzProgress);
}

if (!isMainThread && parentPort && (workerData as FuzzJob)?.seed !== undefined) {
  main(workerData as FuzzJob).catch((e) => parentPort!.postMessage({ kind: 'fail', index: -1, format: 'none', why: `fuzzer crashed: ${(e as Error).stack}`, replay: '' }));
}
