// The JSON `strata bench --json` prints (schema strata-bench/1, documented in
// bench/README.md): the machine, then per workload × variant its samples,
// median, spread, ratio to the reference peer, CPU and peak RSS.
import type { Sample } from './types.ts';

export interface VariantResult {
  name: string;
  kind: 'strata' | 'peer';
  /** in a sweep: the line (driver or peer) and the x of this point */
  series?: string;
  at?: number;
  samples: Sample[];
  /** medians over the samples */
  wallMs: number;
  cpuMs: number;
  rssKB: number;
  /** wall min and max over the samples */
  spread: { min: number; max: number };
  /** wall median ÷ the reference's wall median (< 1: faster than the peer); null when no reference ran */
  ratio: number | null;
}

export interface WorkloadResult {
  name: string;
  group: string;
  description: string;
  reference: string | null;
  /** set for a sweep: what `at` counts (e.g. 'layers') */
  sweep?: string;
  variants: VariantResult[];
}

export interface BenchReport {
  schema: 'strata-bench/1';
  date: string;
  quick: boolean;
  rounds: { warmup: number; measured: number };
  /** how rssKB is measured, for peers and for strata's rows */
  rss: { peer: string; strata: string };
  machine: { cpu: string; cores: number; memoryBytes: number; node: string };
  kernel: string;
  /** the file system the work dir is on (and the one btrfs ran on, if any) */
  fs: { workDir: string; type: string; btrfs: string | null };
  drivers: { name: string; usable: boolean; ran: boolean; reason: string }[];
  peers: string[];
  workloads: WorkloadResult[];
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function summarise(v: { name: string; kind: 'strata' | 'peer'; series?: string; at?: number }, samples: Sample[]): Omit<VariantResult, 'ratio'> {
  const wall = samples.map((s) => s.wallMs);
  return {
    name: v.name, kind: v.kind, ...(v.series === undefined ? {} : { series: v.series, at: v.at }), samples,
    wallMs: median(wall), cpuMs: median(samples.map((s) => s.cpuMs)), rssKB: median(samples.map((s) => s.rssKB)),
    spread: { min: Math.min(...wall), max: Math.max(...wall) },
  };
}
