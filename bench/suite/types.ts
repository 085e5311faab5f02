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
  /** in a sweep (e.g. chain depth): the line this point is on (driver or peer name) and its x */
  series?: string;
  at?: number;
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
  /** `import-layer -f tar [parent]`, or `create-layer [parent]` without a tar (setup), the new layer's id back */
  layer: (parent: string | null, tar?: string) => string;
  /** the same without blocking: setup imports into every peer at once, while the drivers apply */
  importLayer: (parent: string | null, tar: string) => Promise<string>;
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
  /** the variant the ratios are taken against (a peer's name, in a sweep its series), when it runs; null: no peer */
  reference: string | null;
  /** what the sweep's x is (e.g. 'layers'), for workloads whose variants have `at` */
  sweep?: string;
  /** build the data (untimed) and the variants; resources live under ctx.dir */
  setup: (ctx: BenchContext) => Promise<Variant[]>;
}
