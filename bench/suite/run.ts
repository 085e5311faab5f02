// strata bench: probe the drivers, open every one that runs here (btrfs on a
// loop-mounted image when the work dir is not btrfs), set up the peers, then
// run each workload's variants in interleaved rounds (the order rotated each
// round, so host noise hits all alike). Everything lives in one work dir that
// is removed at the end, and on SIGINT (then exit 130).
import { execFile, execFileSync, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import '../../drivers/all.ts';
import { getDriver, probeDrivers } from '../../drivers/registry.ts';
import { detachLoop, loopMount, type LoopMount } from '../../sys/loop.ts';
import { waitForExit } from '../../sys/syscalls.ts';
import { unmountUnder } from '../lib/measure.ts';
import { WORKLOADS } from './registry.ts';
import { summarise, type BenchReport, type WorkloadResult } from './result.ts';
import type { BenchContext, BenchDriver, CsPeer, Sample, Variant } from './types.ts';

export interface BenchOptions {
  quick: boolean;
  /** driver names to run (default: every usable one but devicemapper) */
  drivers?: string[];
  workloads?: string[];
  /** peers: 'containers-storage' (GNU tar always runs where a workload has it) */
  peers: string[];
  /** parent of the work dir (default /dev/shm) */
  tmpdir: string;
  /** progress (the CLI shows it on a terminal) */
  log: (msg: string) => void;
  /** one line the user must see whatever stderr is: a driver asked for that cannot run, a device left behind */
  warn: (msg: string) => void;
}

const CS = 'containers-storage';
const FS_NAMES: Record<number, string> = { 0x01021994: 'tmpfs', 0xef53: 'ext4', 0x9123683e: 'btrfs', 0x58465342: 'xfs' };
const fsType = (p: string) => { const t = statfsSync(p).type; return FS_NAMES[t] ?? `0x${t.toString(16)}`; };

const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

export const workloadNames = (): string[] => WORKLOADS.map((w) => w.name);

/** How the RSS column is measured (the report carries it: the two are not the same quantity). */
export const RSS_METHOD = {
  peer: 'max RSS of the whole peer process (wait4 rusage, through /usr/bin/time)',
  strata: 'in-process: peak RSS of the bench process (node and all it holds included) sampled every 5 ms during the operation and at its end',
};

/** The work dir's prefix: `<tmpdir>/strata-bench-XXXXXX` (a test checks nothing with it is left). */
export const WORK_PREFIX = 'strata-bench-';

// one process per layer: import-layer is create-layer + applydiff
const layerArgs = (parent: string | null, tar?: string) => [...(tar ? ['import-layer', '-f', tar] : ['create-layer']), ...(parent ? [parent] : [])];

class Env {
  readonly drivers: BenchDriver[] = [];
  readonly cs: CsPeer[] = [];
  private loop: LoopMount | null = null;
  private csRoots: string[][] = [];
  private readonly running = new Set<ChildProcess>();
  btrfsDir: string | null = null;
  constructor(readonly dir: string, private readonly warn: (m: string) => void) {}

  async btrfsRoot(): Promise<string> {
    const img = join(this.dir, 'btrfs.img');
    const mnt = join(this.dir, 'btrfs');
    mkdirSync(mnt);
    writeFileSync(img, '');
    execFileSync('truncate', ['-s', '4G', img]);
    execFileSync('mkfs.btrfs', ['-q', '-f', img]);
    this.loop = loopMount(img, mnt, { type: 'btrfs' });
    this.btrfsDir = mnt;
    return mnt;
  }

  addCs(driver: string, root: string): void {
    const g = join(root, `cs-${driver}`, 'graph');
    const r = join(root, `cs-${driver}`, 'run');
    const argv = (...args: string[]) => [CS, '-g', g, '-R', r, '-s', driver, ...args];
    const call = (...args: string[]) => execFileSync(CS, argv(...args).slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 256 << 20 });
    this.csRoots.push(argv('shutdown').slice(1));
    this.cs.push({
      name: `${CS} ${driver}`, argv, call,
      layer: (parent, tar) => call(...layerArgs(parent, tar)).trim().split(/\s+/)[0],
      importLayer: (parent, tar) => this.inFlight(argv(...layerArgs(parent, tar)).slice(1)).then((out) => out.trim().split(/\s+/)[0]),
    });
  }

  /** Synchronous, so the SIGINT handler can run it: mounts go lazily, then the dir. */
  /** A peer process that runs while the bench goes on; Ctrl-C ends it (by pid) before the work dir goes. */
  private inFlight(args: string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      const child = execFile(CS, args, { encoding: 'utf8', maxBuffer: 256 << 20 }, (err, stdout, stderr) => {
        this.running.delete(child);
        if (err) reject(new Error(`${CS} ${args.join(' ')}: ${stderr.trim().split('\n').slice(-3).join(' | ') || err.message}`));
        else resolve(stdout);
      });
      this.running.add(child);
    });
  }

  teardownSync(): void {
    for (const c of this.running) {
      c.kill('SIGKILL');
      if (c.pid !== undefined) waitForExit(c.pid, 10_000);
    }
    this.running.clear();
    for (const args of this.csRoots.splice(0)) spawnSync(CS, args, { stdio: 'ignore' });
    unmountUnder(this.dir);
    // the btrfs mount went (lazily) with the rest above: the device must be detached too
    const loop = this.loop;
    this.loop = null;
    try {
      if (loop) detachLoop(loop.device, loop.image);
    } catch (e) {
      // a process that made a mount namespace while btrfs was mounted holds a copy of the mount
      this.warn(`${(e as Error).message}: a mount namespace made during the run still holds the btrfs mount; the kernel frees the device (autoclear) when it goes`);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  async teardown(log: (m: string) => void): Promise<void> {
    for (const d of this.drivers.splice(0)) await d.driver.cleanup().catch((e: Error) => log(`cleanup of ${d.name}: ${e.message}`));
    this.teardownSync();
  }
}

async function rounds(variants: Variant[], warmup: number, measured: number): Promise<Sample[][]> {
  const out: Sample[][] = variants.map(() => []);
  for (let round = 0; round < warmup + measured; round++) {
    for (let k = 0; k < variants.length; k++) {
      const j = (round + k) % variants.length;
      const v = variants[j];
      await v.before?.();
      const s = await v.run();
      await v.after?.();
      if (round >= warmup) out[j].push(s);
    }
  }
  return out;
}

export async function runBench(opts: BenchOptions): Promise<BenchReport> {
  if (process.getuid?.() !== 0) throw new Error('strata bench needs root (driver mounts, trusted.* xattrs, loop devices)');
  const known = new Set(workloadNames());
  for (const w of opts.workloads ?? []) if (!known.has(w)) throw new Error(`no workload named ${w} (workloads: ${[...known].join(', ')})`);
  const dir = mkdtempSync(join(opts.tmpdir, WORK_PREFIX));
  opts.log(`work dir ${dir}`);
  const env = new Env(dir, opts.warn);
  const onSigint = () => {
    env.teardownSync();
    process.exit(130);
  };
  process.on('SIGINT', onSigint);
  try {
    return await runIn(env, opts);
  } finally {
    await env.teardown(opts.log);
    process.off('SIGINT', onSigint);
  }
}

async function runIn(env: Env, opts: BenchOptions): Promise<BenchReport> {
  const { dir, drivers } = env;
  const probes = await probeDrivers(dir);
  const wanted = (n: string) => (opts.drivers?.length ? opts.drivers.includes(n) : n !== 'devicemapper');
  const report: BenchReport['drivers'] = [];
  for (const p of probes) {
    let usable = p.usable;
    let reason = p.reason;
    let root = join(dir, 'drivers');
    if (!usable && p.name === 'btrfs' && wanted('btrfs')) {
      root = await env.btrfsRoot(); // the work dir is not btrfs: a loop-mounted image is
      usable = true;
      reason = `on a loop-mounted btrfs image (${root})`;
    }
    if (!usable && p.name === 'devicemapper' && opts.drivers?.includes('devicemapper')) {
      reason += `; not run: the VM harness (vm/run.sh) has device-mapper but emulates the CPU (TCG), so its times would not compare with this host's`;
      opts.warn(`devicemapper: ${reason}`);
    }
    const ran = usable && wanted(p.name);
    if (ran) drivers.push({ name: p.name, driver: await getDriver(p.name, root) });
    report.push({ name: p.name, usable, ran, reason: ran || usable ? reason : reason || 'not asked for' });
  }
  for (const n of opts.drivers ?? []) if (!probes.some((p) => p.name === n)) throw new Error(`no driver named ${n} (drivers: ${probes.map((p) => p.name).join(', ')})`);
  opts.log(`drivers: ${drivers.map((d) => d.name).join(', ') || 'none'}`);

  if (opts.peers.includes(CS)) {
    if (spawnSync(CS, ['--help'], { stdio: 'ignore' }).error) throw new Error(`${CS} is not installed (apt-get install ${CS})`);
    env.addCs('vfs', dir);
    env.addCs('overlay', dir);
    if (env.btrfsDir) env.addCs('btrfs', env.btrfsDir);
  }

  mkdirSync(join(dir, 'tars'));
  const ctx: BenchContext = { dir, quick: opts.quick, drivers, cs: env.cs, log: opts.log };
  // quick: no warmup round, the median of 3 absorbs one cold sample
  const warmup = opts.quick ? 0 : 1;
  const measured = opts.quick ? 3 : 7;
  const results: WorkloadResult[] = [];
  const selected = opts.workloads?.length ? opts.workloads : workloadNames();
  for (const w of WORKLOADS.filter((x) => selected.includes(x.name))) {
    const began = performance.now();
    opts.log(`${w.name}: setting up …`);
    const variants = await w.setup(ctx);
    if (!variants.length) continue;
    const setUp = performance.now();
    opts.log(`${w.name}: set up in ${secs(setUp - began)}; ${variants.map((v) => v.name).join(', ')}`);
    const samples = await rounds(variants, warmup, measured);
    const rows = variants.map((v, i) => summarise(v, samples[i]));
    opts.log(`${w.name}: measured in ${secs(performance.now() - setUp)}`);
    // in a sweep each point is compared with the reference's point at the same x
    const refOf = (r: (typeof rows)[number]) => rows.find((x) => (r.at === undefined ? x.name === w.reference : x.series === w.reference && x.at === r.at));
    const ran = rows.some((r) => refOf(r));
    results.push({
      name: w.name, group: w.group, description: w.description, reference: ran ? w.reference : null, ...(w.sweep ? { sweep: w.sweep } : {}),
      variants: rows.map((r) => {
        const ref = refOf(r);
        return { ...r, ratio: ref && ref.wallMs > 0 ? r.wallMs / ref.wallMs : null };
      }),
    });
  }
  return {
    schema: 'strata-bench/1', date: new Date().toISOString(), quick: opts.quick, rounds: { warmup, measured }, rss: RSS_METHOD,
    machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, memoryBytes: totalmem(), node: process.version },
    kernel: release(), fs: { workDir: dir, type: fsType(dir), btrfs: env.btrfsDir ? 'btrfs (loop image)' : null },
    drivers: report, peers: ['GNU tar', ...env.cs.map((c) => c.name)], workloads: results,
  };
}
