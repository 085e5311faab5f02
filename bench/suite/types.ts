// The shapes `strata bench` works with: a workload (one file per group in
// workloads/) gives variants, one per driver and per peer, over the same data;
// the runner interleaves them and turns their samples into a result.
import type { Driver } from '../../drivers/driver.ts';

/** One timed run: wall and CPU (user+sys) in ms; peak RSS in KiB of the process that did it. */
export interface Sample { wallMs: number; cpuMs: number; rssKB: number }

export interface Variant {
  /** e.g. `overlay2`, `GNU tar -x`, `containers-storage vfs` */
  name: string;
  kind: 'strata' | 'peer';
  /** untimed, before every run (fresh targets) */
  before?: () => void | Promise<void>;
  run: () => Promise<Sample>;
  /** untimed, after every run */
  after?: () => void | Promise<void>;
}

/** A driver the bench runs, open in its own home under the work dir. */
export interface BenchDriver { name: string; driver: Driver }

/** containers-storage on one of its drivers, with its own graph and run root. */
export interface CsPeer {
  name: string;
  /** `containers-storage -g … -R … -s <driver> <args>` as an argv */
  argv: (...args: string[]) => string[];
  /** run it to completion, stdout back (setup only; timed runs go through timeChild) */
  call: (...args: string[]) => string;
  /** `create-layer [parent]` + `applydiff -f tar` (setup), the new layer's id back */
  layer: (parent: string | null, tar?: string) => string;
}

export interface BenchContext {
  /** the work dir: everything the bench makes lives below it */
  dir: string;
  quick: boolean;
  drivers: BenchDriver[];
  cs: CsPeer[];
  log: (msg: string) => void;
}

export interface Workload {
  name: string;
  group: string;
  /** what one sample times, for the report */
  description: string;
  /** the variant the ratios are taken against (a peer's name), when it runs */
  reference: string;
  /** build the data (untimed) and the variants; resources live under ctx.dir */
  setup: (ctx: BenchContext) => Promise<Variant[]>;
}
