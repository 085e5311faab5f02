// npm run bench:btrfs [-- --files 100000 --runs 3 --no-peer]
//
// btrfs native changes (BTRFS_IOC_SEND, drivers/btrfs/native-changes.ts) against the naive walk
// (`btrfs.native_changes=false`, what moby and containers/storage do), on a loop-mounted btrfs this
// bench makes and removes: a base layer of --files files (100 per directory, 100-byte bodies) and
// two children of it, one with 10 changed files and one with 10,000 (a third each rewritten with
// the same size and a later mtime, added, deleted). Ops, each against the direct parent:
// changes(child, base) and diff(child, base) drained. The naive diff sleeps into the next whole
// second before ending its stream (moby's guard for 1-second mtimes), so diff is timed to its last
// data byte (LAST BYTE), for both. Variants run in interleaved rounds, each op after an untimed
// `sync` (a walk updates atimes, and the next snapshot would commit them: one variant's leftovers
// would be timed in the other); medians of --runs.
// containers-storage's btrfs driver (`changes`, `diff` of the same shapes, written through its
// `mount`) is the peer where it runs; its rows include its process start and store load.
//
// Correctness first (exit 1 on FAIL): native and naive changes lists and diff bytes are equal.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import { isDeepStrictEqual } from 'node:util';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { init } from '../drivers/btrfs/btrfs.ts';
import type { Driver } from '../drivers/driver.ts';
import { loopMount, type LoopMount } from '../sys/loop.ts';
import { f1, stats, timeProcess, type Sample } from './lib/measure.ts';

const argv = yargs(hideBin(process.argv))
  .option('files', { type: 'number', default: 100_000 })
  .option('runs', { type: 'number', default: 3 })
  .option('peer', { type: 'boolean', default: true, describe: 'containers-storage btrfs as the peer' })
  .strict().parseSync();

const SHAPES = [10, 10_000];
const CS = 'containers-storage';

/** `files` files of 100 bytes, 100 per directory d<k>/. */
function writeBase(root: string, files: number): void {
  const body = Buffer.alloc(100, 0x61);
  for (let i = 0; i < files; i++) {
    const dir = path.join(root, `d${Math.floor(i / 100)}`);
    if (i % 100 === 0) fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, `f${i % 100}`), body);
  }
}

/** `count` changes spread over the tree: j%3 == 0 rewrite (same size, mtime +777 s), 1 add, 2 delete. */
function change(root: string, files: number, count: number): void {
  const step = Math.max(1, Math.floor(files / count));
  const later = new Date(Date.now() + 777_000);
  for (let j = 0; j < count; j++) {
    const i = (j * step) % files;
    const p = path.join(root, `d${Math.floor(i / 100)}`, `f${i % 100}`);
    if (j % 3 === 0) {
      fs.writeFileSync(p, Buffer.alloc(100, 0x62));
      fs.utimesSync(p, later, later);
    } else if (j % 3 === 1) fs.writeFileSync(`${p}.new`, 'added');
    else fs.rmSync(p);
  }
}

async function lastByte(r: Readable): Promise<{ ms: number; bytes: Buffer }> {
  const t0 = performance.now();
  let last = t0;
  const chunks: Buffer[] = [];
  for await (const c of r) {
    chunks.push(c as Buffer);
    last = performance.now();
  }
  return { ms: last - t0, bytes: Buffer.concat(chunks) };
}

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = performance.now();
  const value = await fn();
  return { ms: performance.now() - t0, value };
}

interface Row { op: string; shape: number; variant: string; samples: number[] }

async function main(): Promise<number> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-bench-btrfs-'));
  const img = path.join(tmp, 'btrfs.img');
  fs.writeFileSync(img, '');
  fs.truncateSync(img, 8 * 2 ** 30);
  execFileSync('mkfs.btrfs', ['-q', '-f', img]);
  const mnt = path.join(tmp, 'mnt');
  fs.mkdirSync(mnt);
  const loop: LoopMount = loopMount(img, mnt, { type: 'btrfs' });
  const drivers: Driver[] = [];
  let failed = false;
  try {
    const home = path.join(mnt, 'root', 'btrfs');
    const native = await init(home, []);
    drivers.push(native);
    const naive = await init(home, ['btrfs.native_changes=false']);
    drivers.push(naive);
    let t0 = performance.now();
    await native.create('base', null);
    writeBase(await native.get('base'), argv.files);
    console.log(`base: ${argv.files} files in ${f1((performance.now() - t0) / 1000)} s`);
    for (const n of SHAPES) {
      await native.create(`c${n}`, 'base');
      change(await native.get(`c${n}`), argv.files, n);
    }
    execFileSync('sync');

    const rows = new Map<string, Row>();
    const add = (op: string, shape: number, variant: string, ms: number) => {
      const k = `${op}|${shape}|${variant}`;
      if (!rows.has(k)) rows.set(k, { op, shape, variant, samples: [] });
      rows.get(k)!.samples.push(ms);
    };
    for (const n of SHAPES) {
      for (let run = 0; run < argv.runs; run++) {
        // interleaved, order rotated per run
        const variants: [string, Driver][] = run % 2 ? [['naive', naive], ['native', native]] : [['native', native], ['naive', naive]];
        const got: Record<string, { changes: unknown; diff: Buffer }> = {};
        for (const [label, d] of variants) {
          // untimed sync first: a walk dirties atimes, and a snapshot commits whatever is dirty
          execFileSync('sync');
          const c = await timed(() => d.changes(`c${n}`, 'base'));
          add('changes', n, label, c.ms);
          execFileSync('sync');
          const df = await lastByte(d.diff(`c${n}`, 'base'));
          add('diff (last byte)', n, label, df.ms);
          got[label] = { changes: c.value, diff: df.bytes };
        }
        if (!isDeepStrictEqual(got.native.changes, got.naive.changes) || !got.native.diff.equals(got.naive.diff)) {
          console.log(`FAIL: ${n} changed files: native and naive differ`);
          failed = true;
        }
      }
      const fallback = native.status().find(([k]) => k === 'Native Changes (last fallback)');
      if (fallback) {
        console.log(`FAIL: the native path fell back: ${fallback[1]}`);
        failed = true;
      }
    }
    if (argv.peer) peer(tmp, mnt, add);

    console.log(`\n${'op'.padEnd(18)} ${'changed'.padStart(8)} ${'variant'.padEnd(22)} ${'median ms'.padStart(10)} ${'min ms'.padStart(9)}  naive/this`);
    const sorted = [...rows.values()];
    for (const r of sorted) {
      const s = stats(r.samples);
      const naiveRow = rows.get(`${r.op}|${r.shape}|naive`);
      const ratio = naiveRow ? stats(naiveRow.samples).median / s.median : NaN;
      console.log(`${r.op.padEnd(18)} ${String(r.shape).padStart(8)} ${r.variant.padEnd(22)} ${f1(s.median).padStart(10)} ${f1(s.min).padStart(9)}  ${Number.isNaN(ratio) ? '' : `${ratio.toFixed(1)}x`}`);
    }
    fs.mkdirSync(path.join(import.meta.dirname, 'out'), { recursive: true });
    fs.writeFileSync(path.join(import.meta.dirname, 'out', 'btrfs-changes.json'), JSON.stringify({ files: argv.files, runs: argv.runs, kernel: os.release(), rows: sorted }, null, 1));
  } finally {
    for (const d of drivers) await d.cleanup();
    loop.unmount();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return failed ? 1 : 0;
}

/** containers-storage's btrfs driver on the same shapes (one process per call). */
function peer(tmp: string, mnt: string, add: (op: string, shape: number, variant: string, ms: number) => void): void {
  const g = path.join(mnt, 'cs'), r = path.join(tmp, 'cs-run');
  const cs = (...args: string[]) => execFileSync(CS, ['-g', g, '-R', r, '-s', 'btrfs', ...args], { encoding: 'utf8', maxBuffer: 1 << 30 }).trim();
  try {
    cs('version');
  } catch (e) {
    console.log(`peer: ${CS} does not run here: ${(e as Error).message.split('\n')[0]}`);
    return;
  }
  try {
    const base = cs('create-layer').split('\n').pop()!;
    writeBase(cs('mount', base), argv.files);
    cs('unmount', base);
    for (const n of SHAPES) {
      const child = cs('create-layer', base).split('\n').pop()!;
      change(cs('mount', child), argv.files, n);
      cs('unmount', child);
      for (let run = 0; run < argv.runs; run++) {
        const time = (op: string, args: string[]) => add(op, n, `${CS} btrfs`, (timeProcess([CS, '-g', g, '-R', r, '-s', 'btrfs', ...args]) as Sample).wallMs);
        time('changes', ['changes', child]);
        time('diff (last byte)', ['diff', '-u', '-f', '/dev/null', child]);
        time('process floor', ['exists', child]);
      }
    }
  } finally {
    try {
      cs('shutdown');
    } catch {
      // nothing mounted
    }
  }
}

process.exitCode = await main();
