// Samples for the two kinds of variant: an operation in this process, and a
// peer's whole process (GNU tar, containers-storage) through /usr/bin/time,
// which reads the child's wait4 rusage: user+sys CPU and max RSS.
import { spawnSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { measurePeak } from '../lib/measure.ts';
import type { Sample } from './types.ts';

const TIME = '/usr/bin/time';
const MARK = 'strata-bench-rusage';

/** One in-process run: wall, CPU of this process, and its RSS peak sampled during the run. */
export async function timeOurs(fn: () => Promise<unknown>): Promise<Sample> {
  const { m } = await measurePeak(fn);
  return { wallMs: m.wallMs, cpuMs: m.cpuMs, rssKB: Math.round(m.peakBytes / 1024) };
}

/** A whole process: wall around the spawn; CPU and peak RSS from its rusage. Non-zero exit throws. */
export function timeChild(argv: string[]): Sample {
  const t0 = performance.now();
  const r = spawnSync(TIME, ['-f', `${MARK} %U %S %M`, ...argv], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', maxBuffer: 64 << 20 });
  const wallMs = performance.now() - t0;
  if (r.error) throw new Error(`${TIME}: ${r.error.message} (apt-get install time)`);
  if (r.status !== 0) throw new Error(`${argv.join(' ')}: exit ${r.status ?? r.signal}: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  const m = new RegExp(`${MARK} ([\\d.]+) ([\\d.]+) (\\d+)\\s*$`).exec(r.stderr);
  if (!m) throw new Error(`cannot read the rusage of ${argv[0]} from: ${r.stderr.trim().split('\n').slice(-2).join(' | ')}`);
  return { wallMs, cpuMs: (Number(m[1]) + Number(m[2])) * 1000, rssKB: Number(m[3]) };
}

/** Two processes run back to back as one sample (e.g. mount + unmount). */
export function timeChildren(argvs: string[][]): Sample {
  const s = argvs.map(timeChild);
  return { wallMs: s.reduce((a, x) => a + x.wallMs, 0), cpuMs: s.reduce((a, x) => a + x.cpuMs, 0), rssKB: Math.max(...s.map((x) => x.rssKB)) };
}
