// Measurement pieces the benches share: one timed sample (wall + CPU), the
// statistics over samples, timing a whole process, the host's CPU pressure,
// and scratch-dir helpers (fresh dirs, mounts left below a dir).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { mountsUnder as mountsUnderDir } from '../../sys/mountinfo.ts';

/** One run: wall time and CPU time (user + system), both in ms. */
export interface Sample { wallMs: number; cpuMs: number }
export interface Stats { median: number; min: number; mean: number }

export function stats(xs: number[]): Stats {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return {
    median: s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2,
    min: s[0],
    mean: s.reduce((a, b) => a + b, 0) / s.length,
  };
}

/** One in-process run: wall and CPU (process.cpuUsage user+sys, all threads). */
export async function measureInProcess(fn: () => Promise<unknown>): Promise<Sample> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await fn();
  const wallMs = performance.now() - t0;
  const c = process.cpuUsage(c0);
  return { wallMs, cpuMs: (c.user + c.system) / 1000 };
}

/**
 * A whole process, timed hyperfine style: wall around the spawn; CPU = user+sys
 * of the command and the children it waited for (its rusage, read through bash
 * `times`). stdout goes to /dev/null; a non-zero exit throws with its stderr.
 */
export function timeProcess(argv: string[]): Sample {
  const t0 = performance.now();
  const r = spawnSync('bash', ['-c', '"$@"; rc=$?; times >&2; exit $rc', 'bash', ...argv], {
    stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', maxBuffer: 64 << 20,
  });
  const wallMs = performance.now() - t0;
  if (r.status !== 0) throw new Error(`${argv.join(' ')}: exit ${r.status ?? r.signal}\n${r.stderr}`);
  const lines = r.stderr.trim().split('\n');
  const m = /^(\d+)m([\d.]+)s\s+(\d+)m([\d.]+)s$/.exec(lines[lines.length - 1] ?? '');
  if (!m) throw new Error(`cannot read CPU times of ${argv[0]} from: ${lines.slice(-2).join(' | ')}`);
  const cpuMs = (Number(m[1]) * 60 + Number(m[2]) + Number(m[3]) * 60 + Number(m[4])) * 1000;
  return { wallMs, cpuMs };
}

/** First line of /proc/pressure/cpu ('n/a' without PSI). */
export function cpuPressure(): string {
  try {
    return readFileSync('/proc/pressure/cpu', 'utf8').split('\n')[0];
  } catch {
    return 'n/a';
  }
}

export function freshDir(p: string): void {
  rmSync(p, { recursive: true, force: true });
  mkdirSync(p, { recursive: true });
}

export function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8' }).trim();
}

/** Mount points at or below `base` in this process's mount namespace, deepest last (as listed). */
export function mountsUnder(base: string): string[] {
  return mountsUnderDir(base).map((m) => m.mountPoint);
}

/** Lazily unmount everything mounted at or below `base` (last mounted first). */
export function unmountUnder(base: string): void {
  for (const m of mountsUnder(base).reverse()) spawnSync('umount', ['-l', m], { stdio: 'ignore' });
}

export const f1 = (x: number) => x.toFixed(1);
export const f2 = (x: number) => x.toFixed(2);

/** What one operation cost in a child process: time, CPU and resident memory around it. */
export interface PeakMeasure { wallMs: number; cpuMs: number; beforeBytes: number; peakBytes: number; maxRssKB: number }

/**
 * Run `fn` and sample RSS every 5 ms while it runs. `beforeBytes` is taken
 * at the start (not the process's start-up high-water mark, which tsx's
 * compile sets): the engines yield between 1 MiB chunks, so samples land.
 */
export async function measurePeak<T>(fn: () => Promise<T>): Promise<{ result: T; m: PeakMeasure }> {
  const beforeBytes = process.memoryUsage().rss;
  let peakBytes = beforeBytes;
  const sample = () => {
    const r = process.memoryUsage().rss;
    if (r > peakBytes) peakBytes = r;
  };
  const timer = setInterval(sample, 5);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  try {
    const result = await fn();
    const wallMs = performance.now() - t0;
    const c = process.cpuUsage(c0);
    sample();
    return { result, m: { wallMs, cpuMs: (c.user + c.system) / 1000, beforeBytes, peakBytes, maxRssKB: process.resourceUsage().maxRSS } };
  } finally {
    clearInterval(timer);
  }
}

/** One variant's figures against its goal (the inspect benches' table rows). */
export interface GoalRow { name: string; firstMs: number; medianMs: number; minMs: number; cpuMedianMs: number; goalMs: number | null; meets: boolean | null }

/**
 * `runs` rounds of every variant, interleaved in a rotating order so host
 * noise hits all alike; the first run is reported apart (cold), the median of
 * the rest is what meets `goals` (ms) or not.
 */
export async function goalRounds(variants: Record<string, () => Promise<Sample> | Sample>, runs: number, goals: Record<string, number>): Promise<GoalRow[]> {
  const names = Object.keys(variants);
  const samples = new Map<string, Sample[]>(names.map((n) => [n, []]));
  for (let r = 0; r < runs; r++) {
    for (const n of names.map((_, i) => names[(i + r) % names.length])) samples.get(n)!.push(await variants[n]());
  }
  return names.map((n) => {
    const s = samples.get(n)!;
    const later = s.slice(1).map((x) => x.wallMs);
    const st = stats(later.length ? later : s.map((x) => x.wallMs));
    const goal = goals[n];
    return { name: n, firstMs: s[0].wallMs, medianMs: st.median, minMs: st.min, cpuMedianMs: stats(s.map((x) => x.cpuMs)).median, goalMs: goal ?? null, meets: goal === undefined ? null : st.median < goal };
  });
}

/** The rows as the benches print them. */
export function goalTable(rows: GoalRow[]): string {
  const head = `${'what'.padEnd(32)} ${'first ms'.padStart(9)} ${'median ms'.padStart(10)} ${'min ms'.padStart(8)} ${'cpu ms'.padStart(8)}  goal\n`;
  return head + rows.map((r) => `${r.name.padEnd(32)} ${f1(r.firstMs).padStart(9)} ${f1(r.medianMs).padStart(10)} ${f1(r.minMs).padStart(8)} ${f1(r.cpuMedianMs).padStart(8)}  ${r.goalMs === null ? '' : `< ${r.goalMs} ms: ${r.meets ? 'met' : 'NOT met'}`}\n`).join('');
}
