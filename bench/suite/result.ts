// The JSON `strata bench --json` prints (schema strata-bench/1, documented in
// bench/README.md): the machine, then per workload × variant its samples,
// median, spread, ratio to the reference peer, CPU and peak RSS.
import type { Sample } from './types.ts';

export interface VariantResult {
  name: string;
  kind: 'strata' | 'peer';
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
  variants: VariantResult[];
}

export interface BenchReport {
  schema: 'strata-bench/1';
  date: string;
  quick: boolean;
  rounds: { warmup: number; measured: number };
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

export function summarise(name: string, kind: 'strata' | 'peer', samples: Sample[]): Omit<VariantResult, 'ratio'> {
  const wall = samples.map((s) => s.wallMs);
  return {
    name, kind, samples,
    wallMs: median(wall), cpuMs: median(samples.map((s) => s.cpuMs)), rssKB: median(samples.map((s) => s.rssKB)),
    spread: { min: Math.min(...wall), max: Math.max(...wall) },
  };
}
