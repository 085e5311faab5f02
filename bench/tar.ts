// npm run bench [-- --size 100M --runs 3 --peer containers-storage --drop-caches --skip-ext4]
//
// Our tar engine against GNU tar (and optionally containers-storage), in one run on the same data:
//   apply:  applyLayer(tar, dir, { whiteouts: 'none' })  vs  tar -xf  and  tar --xattrs --xattrs-include='*' -xf
//           (as root GNU tar restores owners: --same-owner is its default)
//   export: exportDir(dir) → file (and with parallel 'never')  vs  tar -cf  and  tar --xattrs --xattrs-include='*' -cf
//           (our export always reads xattrs, so the --xattrs row is the like-for-like one)
// each into tmpfs (/dev/shm) and onto ext4 (a dir under /tmp). Data: a copy of /usr/share plus 300
// hardlinks (default), or a generated tree of --size bytes (fixtures/big-tree.ts); the tar every
// extractor reads is GNU `tar -cf` of that tree and stays on tmpfs, so only the target differs.
//
// Method: every variant of one operation and filesystem runs in interleaved rounds (ours, GNU tar,
// GNU tar --xattrs[, containers-storage], rotating the order each round) after the same number
// of warmup rounds, so drift on a shared, noisy host hits all of them alike. Ours runs in-process
// (wall, and CPU = process.cpuUsage user+sys of all threads); peers run as whole processes,
// hyperfine style (wall around the spawn, CPU user+sys of the command from bash `times`).
// Before every run the target is emptied (untimed); on ext4 `sync` runs first (untimed), and with
// --drop-caches also `echo 3 > /proc/sys/vm/drop_caches` (cold reads; affects the whole host).
// No run fsyncs: ext4 timings are to the page cache, which is what tar -x does too.
// tinybench measures what suits it: many in-process iterations of a small layer (the sample
// image's base layer) applied and exported, with its statistics (p50, margin of error).
// Ratios are speed ratios, peer time / our time: > 1 means we are faster.
// Peak RSS: a fresh child process per operation and data size (small generated tree vs the main
// data), process.resourceUsage().maxRSS, to show memory does not grow with layer size.
//
// Output: a table on stdout and JSON in bench/out/tar.json. Everything temporary lives in one
// dir under /dev/shm and one under /tmp, both removed at the end (also on Ctrl-C).
import { execFileSync, spawnSync } from 'node:child_process';
import {
  createReadStream, createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statfsSync, writeFileSync,
} from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { Bench } from 'tinybench';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import type { applyLayer as ApplyLayer } from '../archive/apply.ts';
import type { exportDir as ExportDir } from '../archive/export.ts';
import { treeDigest, treeManifest, manifestDiff } from '../archive/digest.ts';
import { copyTreeWithHardlinks, countTree, generateLargeFiles, generateTree, gnuTar, type TreeStats } from '../fixtures/big-tree.ts';
import { writeSampleLayers } from '../fixtures/sample-image.ts';
import { cpuPressure, f1, f2, freshDir, measureInProcess, measurePeak, sh, stats, timeProcess, unmountUnder, type Sample, type Stats } from './lib/measure.ts';

const repo = fileURLToPath(new URL('..', import.meta.url));
const TMPFS_MAGIC = 0x01021994;
const SECTIONS = ['verify', 'apply', 'export', 'tinybench', 'rss'];
const EXT4_MAGIC = 0xef53;

// The engine under test: the TypeScript sources (through tsx, as the tests run them) or, with
// --engine dist, the compiled build `npm run build` makes (what the strata command runs). They
// differ where the engine starts a worker thread: one loads its modules through tsx again.
let applyLayer: typeof ApplyLayer;
let exportDir: typeof ExportDir;
async function loadEngine(kind: string): Promise<void> {
  const dist = kind === 'dist';
  if (dist && !existsSync(join(repo, 'dist/archive/export.js'))) throw new Error('--engine dist: run `npm run build` first');
  ({ applyLayer } = await import(dist ? '../dist/archive/apply.js' : '../archive/apply.ts'));
  ({ exportDir } = await import(dist ? '../dist/archive/export.js' : '../archive/export.ts'));
}

// ---- child mode: one operation in a fresh process, for peak RSS ----------

async function child(op: string, src: string, dst: string): Promise<void> {
  const { m } = await measurePeak(async () => {
    if (op === 'apply') await applyLayer(createReadStream(src, { highWaterMark: 1 << 20 }), dst, { whiteouts: 'none' });
    else await pipeline(exportDir(src, { whiteouts: 'none' }), createWriteStream(dst));
  });
  process.stdout.write(JSON.stringify({ op, ...m }) + '\n');
}

// ---- measurement ------------------------------------------------------------

interface Row {
  op: 'apply' | 'export';
  fs: 'tmpfs' | 'ext4';
  tool: string;
  cmd: string;
  samples: Sample[];
  wall: Stats;
  cpu: Stats;
  /** file data MB (1e6) per second of median wall */
  mbPerSec: number;
  entriesPerSec: number;
  /** peer median / our median; > 1 = we are faster. Absent on our own rows. */
  speedRatio?: { wall: number; cpu: number };
}

interface Variant {
  tool: string;
  cmd: string;
  /** untimed, after the shared prepare */
  prepare?: () => void;
  run: () => Promise<Sample>;
  /** untimed, before the shared cleanup */
  cleanup?: () => void;
}

/** warmup + runs rounds; each round runs every variant once, starting one later each round. */
async function rounds(variants: Variant[], runs: number, warmup: number, prepare: () => void, cleanup: () => void): Promise<Sample[][]> {
  const out: Sample[][] = variants.map(() => []);
  for (let i = 0; i < warmup + runs; i++) {
    for (let k = 0; k < variants.length; k++) {
      const j = (i + k) % variants.length;
      const v = variants[j];
      prepare();
      v.prepare?.();
      const s = await v.run();
      v.cleanup?.();
      cleanup();
      if (i >= warmup) out[j].push(s);
    }
  }
  return out;
}

/** tinybench over a small layer: many iterations, its own statistics. */
async function microBench(tar: string, scratch: string): Promise<Micro[]> {
  const target = join(scratch, 'micro-target');
  const tree = join(scratch, 'micro-tree');
  const out = join(scratch, 'micro-out.tar');
  freshDir(tree);
  await applyLayer(createReadStream(tar), tree, { whiteouts: 'none' });
  const bench = new Bench({ time: 1500, warmupTime: 300, warmupIterations: 3, iterations: 10, throws: true });
  const fresh = { beforeEach: () => freshDir(target), afterEach: () => rmSync(target, { recursive: true, force: true }) };
  const noOut = { afterEach: () => rmSync(out, { force: true }) };
  bench
    .add('strata applyLayer → tmpfs', async () => void (await applyLayer(createReadStream(tar, { highWaterMark: 1 << 20 }), target, { whiteouts: 'none' })), fresh)
    .add('GNU tar -xf → tmpfs (process)', () => void execFileSync('tar', ['-xf', tar, '-C', target]), fresh)
    .add('strata exportDir → tmpfs', () => pipeline(exportDir(tree, { whiteouts: 'none' }), createWriteStream(out)), noOut)
    .add("GNU tar --xattrs --xattrs-include='*' -cf → tmpfs (process)", () => void execFileSync('tar', ['--xattrs', '--xattrs-include=*', '-cf', out, '-C', tree, '.']), noOut);
  await bench.run();
  rmSync(tree, { recursive: true, force: true });
  return bench.tasks.map((t) => {
    const r = t.result;
    if (!r || !('latency' in r)) throw new Error(`tinybench task ${t.name}: ${r?.state ?? 'no result'}`);
    return { task: t.name, p50Ms: r.latency.p50, meanMs: r.latency.mean, rmePct: r.latency.rme, samples: r.latency.samplesCount };
  });
}

interface RssRow {
  data: string;
  mb: number;
  entries: number;
  op: string;
  /** RSS right before the operation */
  beforeMB: number;
  /** highest RSS sampled (every 5 ms) during the operation */
  peakMB: number;
  growthMB: number;
  /** getrusage maxrss of the whole child, start-up included */
  processMaxRssMB: number;
  wallMs: number;
}

interface Micro { task: string; p50Ms: number; meanMs: number; rmePct: number; samples: number }

// ---- helpers ----------------------------------------------------------------

function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)b?$/i.exec(s.trim());
  if (!m) throw new Error(`--size: cannot read "${s}" (e.g. 100M, 1.5G, 700000000)`);
  return Math.round(Number(m[1]) * 10 ** ({ '': 0, k: 3, m: 6, g: 9, t: 12 }[m[2].toLowerCase()] ?? 0));
}

function fsName(p: string): string {
  const t = statfsSync(p).type;
  return t === TMPFS_MAGIC ? 'tmpfs' : t === EXT4_MAGIC ? 'ext4' : `0x${t.toString(16)}`;
}

function syncAndMaybeDrop(drop: boolean): void {
  execFileSync('sync');
  if (drop) writeFileSync('/proc/sys/vm/drop_caches', '3\n');
}


// ---- main -------------------------------------------------------------------

async function main(): Promise<void> {
  const argv = await yargs(hideBin(process.argv))
    .scriptName('npm run bench --')
    .option('size', { type: 'string', describe: 'generate a tree of this many bytes (e.g. 100M) instead of copying /usr/share' })
    .option('runs', { type: 'number', default: 3, describe: 'measured runs per variant' })
    .option('warmup', { type: 'number', default: 1, describe: 'unmeasured runs before them' })
    .option('rss-small', { type: 'string', default: '100M', describe: 'size of the small tree for the peak-RSS comparison' })
    .option('skip-ext4', { type: 'boolean', default: false, describe: 'only the tmpfs runs' })
    .option('drop-caches', { type: 'boolean', default: false, describe: 'drop the page cache before every ext4 run (whole host)' })
    .option('peer', { type: 'array', string: true, default: [] as string[], choices: ['containers-storage'], describe: 'extra peers' })
    .option('tmpfs', { type: 'string', default: '/dev/shm', describe: 'tmpfs dir for data and targets' })
    .option('ext4', { type: 'string', default: tmpdir(), describe: 'ext4 dir for the ext4 targets' })
    .option('only', { type: 'array', string: true, choices: SECTIONS, describe: 'run only these sections (default: all)' })
    .option('out', { type: 'string', default: join(repo, 'bench/out/tar.json') })
    .option('engine', { type: 'string', default: 'sources', choices: ['sources', 'dist'], describe: "the engine's TypeScript sources (tsx) or the compiled dist/ the CLI runs" })
    .option('child', { type: 'string', hidden: true })
    .option('src', { type: 'string', hidden: true })
    .option('dst', { type: 'string', hidden: true })
    .strict()
    .help()
    .parse();

  await loadEngine(argv.engine);
  if (argv.child) return child(argv.child, argv.src ?? '', argv.dst ?? '');

  const only = new Set(argv.only?.length ? argv.only : SECTIONS);
  const runs = Math.max(1, argv.runs);
  const warmup = Math.max(0, argv.warmup);
  const isRoot = process.getuid?.() === 0;
  if (!isRoot) process.stderr.write('warning: not root: GNU tar will not restore owners and the ext4 drop-caches option is unavailable\n');
  const log = (s: string) => process.stderr.write(`[bench] ${s}\n`);

  const fsKinds: ('tmpfs' | 'ext4')[] = argv['skip-ext4'] ? ['tmpfs'] : ['tmpfs', 'ext4'];
  const shm = mkdtempSync(join(argv.tmpfs, 'strata-bench-tar-'));
  const ext = argv['skip-ext4'] ? shm : mkdtempSync(join(argv.ext4, 'strata-bench-tar-'));
  const csPeer = argv.peer.includes('containers-storage');
  const csGraphs: { g: string; r: string }[] = [];
  const cleanup = () => {
    for (const { g, r } of csGraphs) spawnSync('containers-storage', ['-g', g, '-R', r, '-s', 'vfs', 'shutdown'], { stdio: 'ignore' });
    for (const base of new Set([shm, ext])) {
      // Nothing here mounts, but containers-storage could: unmount anything under our dirs first.
      unmountUnder(base);
      rmSync(base, { recursive: true, force: true });
    }
  };
  process.on('SIGINT', () => {
    cleanup();
    process.exit(130);
  });

  try {
    if (fsName(shm) !== 'tmpfs') log(`note: ${argv.tmpfs} is ${fsName(shm)}, not tmpfs`);
    if (!argv['skip-ext4'] && fsName(ext) !== 'ext4') log(`note: ${argv.ext4} is ${fsName(ext)}, not ext4`);

    // -- data
    // The tree is a layer's root: /usr/share goes to <tree>/usr/share, as in an image. (Its
    // relative symlinks such as misc/magic.mgc -> ../../lib/file/magic.mgc would otherwise point
    // outside the layer, which applyLayer refuses like moby does.)
    const tree = join(shm, 'rootfs');
    let data: TreeStats;
    let source: string;
    if (argv.size === undefined && existsSync('/usr/share')) {
      log('copying /usr/share to tmpfs and adding 300 hardlinks …');
      mkdirSync(join(tree, 'usr'), { recursive: true });
      copyTreeWithHardlinks('/usr/share', join(tree, 'usr/share'), 300);
      data = countTree(tree);
      source = 'copy of /usr/share (as usr/share) + 300 hardlinks';
    } else {
      const bytes = parseSize(argv.size ?? '700M');
      log(`generating a ${f1(bytes / 1e6)} MB tree …`);
      data = generateTree(tree, { totalBytes: bytes });
      source = `generated tree (fixtures/big-tree.ts), ${f1(bytes / 1e6)} MB`;
    }
    const tar = join(shm, 'data.tar');
    const tarBytes = gnuTar(tree, tar);
    const entries = data.entries + 1; // + './', which tar -cf -C tree . writes
    const mb = data.bytes / 1e6;
    log(`data: ${data.files} files, ${data.dirs} dirs, ${data.symlinks} symlinks, ${data.hardlinks} hardlinks, ${f1(mb)} MB; tar ${f1(tarBytes / 1e6)} MB`);
    const trees: Record<string, string> = { tmpfs: tree };
    if (fsKinds.includes('ext4') && only.has('export')) {
      trees.ext4 = join(ext, 'rootfs');
      execFileSync('cp', ['-a', tree, trees.ext4]);
    }

    // -- correctness first: a benchmark of a wrong extractor is worthless
    const verify: { check: string; ok: boolean; detail: string }[] = [];
    if (only.has('verify')) {
      log('verifying: our apply vs GNU tar -x, and GNU tar -x of our export vs the tree …');
      const ours = join(shm, 'verify-ours');
      const gnu = join(shm, 'verify-gnu');
      const reread = join(shm, 'verify-export');
      freshDir(ours);
      freshDir(gnu);
      freshDir(reread);
      await applyLayer(createReadStream(tar, { highWaterMark: 1 << 20 }), ours, { whiteouts: 'none' });
      execFileSync('tar', ['--xattrs', '--xattrs-include=*', '-xf', tar, '-C', gnu]);
      const ourTar = join(shm, 'verify-export.tar');
      await pipeline(exportDir(tree, { whiteouts: 'none' }), createWriteStream(ourTar));
      execFileSync('tar', ['--xattrs', '--xattrs-include=*', '-xf', ourTar, '-C', reread]);
      const opts = { rootMetadata: false };
      const pairs: [string, string, string][] = [
        ['applyLayer(GNU tar) = tar -x (GNU tar)', ours, gnu],
        ['tar -x (exportDir(tree)) = tree', reread, tree],
      ];
      for (const [check, a, b] of pairs) {
        const [da, db] = await Promise.all([treeDigest(a, opts), treeDigest(b, opts)]);
        const detail = da === db ? da : manifestDiff(await treeManifest(a, opts), await treeManifest(b, opts), 10);
        verify.push({ check, ok: da === db, detail });
        log(`  ${da === db ? 'ok  ' : 'FAIL'} ${check}${da === db ? '' : '\n' + detail}`);
      }
      for (const p of [ours, gnu, reread, ourTar]) rmSync(p, { recursive: true, force: true });
    }

    const rows: Row[] = [];
    const row = (op: Row['op'], fs: Row['fs'], tool: string, cmd: string, samples: Sample[]): Row => {
      const wall = stats(samples.map((s) => s.wallMs));
      const cpu = stats(samples.map((s) => s.cpuMs));
      const r: Row = { op, fs, tool, cmd, samples, wall, cpu, mbPerSec: mb / (wall.median / 1000), entriesPerSec: entries / (wall.median / 1000) };
      const ours = rows.find((x) => x.op === op && x.fs === fs && x.tool === 'strata');
      if (ours && tool !== 'strata') r.speedRatio = { wall: wall.median / ours.wall.median, cpu: cpu.median / ours.cpu.median };
      rows.push(r);
      log(`  ${op} ${fs} ${tool}: ${f2(wall.median / 1000)} s wall, ${f2(cpu.median / 1000)} s CPU`);
      return r;
    };

    const csBin = csPeer && !spawnSync('containers-storage', ['--help'], { stdio: 'ignore' }).error;
    if (csPeer && !csBin) log('containers-storage is not installed (apt-get install containers-storage): peer skipped');
    let csVersion: string | undefined;
    /** containers-storage with its own graph and run root per filesystem, always vfs. */
    const csFor = (fs: string) => {
      const base = join(fs === 'tmpfs' ? shm : ext, 'cs');
      const g = join(base, 'graph');
      const r = join(base, 'run');
      if (!csGraphs.some((x) => x.g === g)) csGraphs.push({ g, r });
      const cs = (...args: string[]) => execFileSync('containers-storage', ['-g', g, '-R', r, '-s', 'vfs', ...args], { encoding: 'utf8' });
      const argv = (...args: string[]) => ['containers-storage', '-g', g, '-R', r, '-s', 'vfs', ...args];
      csVersion ??= cs('version').split('\n').find((l) => /^Version/.test(l))?.replace(/\s+/g, ' ');
      return { base, cs, argv };
    };

    // -- apply
    for (const fs of only.has('apply') ? fsKinds : []) {
      const target = join(fs === 'tmpfs' ? shm : ext, 'target');
      const prepare = () => {
        freshDir(target);
        if (fs === 'ext4') syncAndMaybeDrop(argv['drop-caches']);
      };
      const clean = () => rmSync(target, { recursive: true, force: true });
      const variants: Variant[] = [
        { tool: 'strata', cmd: "applyLayer(tar, dir, { whiteouts: 'none' })",
          run: () => measureInProcess(() => applyLayer(createReadStream(tar, { highWaterMark: 1 << 20 }), target, { whiteouts: 'none' })) },
        { tool: 'GNU tar', cmd: 'tar -xf TAR -C DIR', run: async () => timeProcess(['tar', '-xf', tar, '-C', target]) },
        { tool: 'GNU tar --xattrs', cmd: "tar --xattrs --xattrs-include='*' -xf TAR -C DIR",
          run: async () => timeProcess(['tar', '--xattrs', '--xattrs-include=*', '-xf', tar, '-C', target]) },
      ];
      if (csBin) {
        const { cs, argv: csArgv } = csFor(fs);
        let layer = '';
        variants.push({
          tool: 'containers-storage', cmd: 'containers-storage -s vfs applydiff -f TAR LAYER',
          prepare: () => {
            layer = cs('create-layer').trim().split(/\s+/)[0];
          },
          run: async () => timeProcess(csArgv('applydiff', '-f', tar, layer)),
          cleanup: () => void cs('delete-layer', layer),
        });
      }
      log(`apply → ${fs}: ${variants.map((v) => v.tool).join(', ')} …`);
      const samples = await rounds(variants, runs, warmup, prepare, clean);
      variants.forEach((v, i) => row('apply', fs, v.tool, v.cmd, samples[i]));
    }

    // -- export
    for (const fs of only.has('export') ? fsKinds : []) {
      const src = trees[fs];
      const out = join(fs === 'tmpfs' ? shm : ext, 'out.tar');
      const prepare = () => {
        rmSync(out, { force: true });
        if (fs === 'ext4') syncAndMaybeDrop(argv['drop-caches']);
      };
      const clean = () => rmSync(out, { force: true });
      const variants: Variant[] = [
        { tool: 'strata', cmd: "exportDir(dir, { whiteouts: 'none' }) → file (walk on a worker thread for big trees)",
          run: () => measureInProcess(() => pipeline(exportDir(src, { whiteouts: 'none' }), createWriteStream(out))) },
        { tool: 'strata, one thread', cmd: "exportDir(dir, { whiteouts: 'none', parallel: 'never' }) → file",
          run: () => measureInProcess(() => pipeline(exportDir(src, { whiteouts: 'none', parallel: 'never' }), createWriteStream(out))) },
        { tool: 'GNU tar', cmd: 'tar -cf OUT -C DIR .', run: async () => timeProcess(['tar', '-cf', out, '-C', src, '.']) },
        { tool: 'GNU tar --xattrs', cmd: "tar --xattrs --xattrs-include='*' -cf OUT -C DIR .",
          run: async () => timeProcess(['tar', '--xattrs', '--xattrs-include=*', '-cf', out, '-C', src, '.']) },
      ];
      let csLayer = '';
      let csCleanup = () => {};
      if (csBin) {
        // diff of one layer filled once (applydiff of the same tar), the whole layer (no parent)
        const { cs, argv: csArgv } = csFor(fs);
        csLayer = cs('create-layer').trim().split(/\s+/)[0];
        cs('applydiff', '-f', tar, csLayer);
        csCleanup = () => void cs('delete-layer', csLayer);
        variants.push({ tool: 'containers-storage', cmd: 'containers-storage -s vfs diff -u -f OUT LAYER',
          run: async () => timeProcess(csArgv('diff', '-u', '-f', out, csLayer)) });
      }
      log(`export ${fs} → ${fs}: ${variants.map((v) => v.tool).join(', ')} …`);
      const samples = await rounds(variants, runs, warmup, prepare, clean);
      variants.forEach((v, i) => row('export', fs, v.tool, v.cmd, samples[i]));
      csCleanup();
    }
    for (const { g, r } of csGraphs) execFileSync('containers-storage', ['-g', g, '-R', r, '-s', 'vfs', 'shutdown'], { stdio: 'ignore' });

    // -- tinybench: a small layer, many in-process iterations
    let tinybench: { layer: string; tarBytes: number; tasks: Micro[] } | undefined;
    if (only.has('tinybench')) {
      log('tinybench: the sample image base layer, apply and export on tmpfs …');
      const sampleTars = await writeSampleLayers(join(shm, 'sample'));
      tinybench = { layer: 'sample image base layer (fixtures/sample-image.ts)', tarBytes: sampleTars[0].bytes, tasks: await microBench(sampleTars[0].path, shm) };
    }

    // -- RSS: fresh child processes, small tree vs the main data
    const rss: RssRow[] = [];
    if (only.has('rss')) {
      log('RSS (child processes) …');
      const smallBytes = Math.min(parseSize(argv['rss-small']), Math.max(1e6, Math.floor(data.bytes / 5)));
      const smallTree = join(shm, 'small-tree');
      const small = generateTree(smallTree, { totalBytes: smallBytes });
      const smallTar = join(shm, 'small.tar');
      gnuTar(smallTree, smallTar);
      // the main data's bytes in a few large files: separates growth with bytes from growth with entries
      const largeTree = join(shm, 'large-tree');
      const large = generateLargeFiles(largeTree, data.bytes);
      const largeTar = join(shm, 'large.tar');
      gnuTar(largeTree, largeTar);
      const sets = [['small (generated)', smallTar, smallTree, small], ['main', tar, tree, data], ['main bytes, 50 MB files', largeTar, largeTree, large]] as const;
      for (const [label, t, dir, st] of sets) {
        for (const op of ['apply', 'export'] as const) {
          const dst = join(shm, op === 'apply' ? 'rss-target' : 'rss-out.tar');
          if (op === 'apply') freshDir(dst);
          const r = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--engine', argv.engine, '--child', op, '--src', op === 'apply' ? t : dir, '--dst', dst], {
            cwd: repo, encoding: 'utf8', maxBuffer: 16 << 20,
          });
          rmSync(dst, { recursive: true, force: true });
          if (r.status !== 0) throw new Error(`RSS child ${op} ${label}: exit ${r.status}\n${r.stderr}`);
          const j = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { beforeBytes: number; peakBytes: number; maxRssKB: number; wallMs: number };
          rss.push({
            data: label, mb: st.bytes / 1e6, entries: st.entries, op, beforeMB: j.beforeBytes / 2 ** 20, peakMB: j.peakBytes / 2 ** 20,
            growthMB: (j.peakBytes - j.beforeBytes) / 2 ** 20, processMaxRssMB: j.maxRssKB / 1024, wallMs: j.wallMs,
          });
        }
      }
    }

    // -- report
    const host = {
      cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, kernel: release(), node: process.version,
      tar: sh('tar', ['--version']).split('\n')[0], containersStorage: csVersion ?? null, root: isRoot, cpuPressure: cpuPressure(),
      loadavg: readFileSync('/proc/loadavg', 'utf8').trim(),
    };
    const report = {
      date: new Date().toISOString(), host,
      data: { source, ...data, contentMB: mb, tarMB: tarBytes / 1e6, entriesInTar: entries },
      method: {
        runs, warmup, rounds: 'variants interleaved, order rotated each round', ours: 'in-process, process.cpuUsage user+sys (all threads)',
        peers: 'whole process per run, CPU user+sys from bash `times`',
        ext4: argv['drop-caches'] ? 'sync + drop_caches before each run (untimed)' : 'sync before each run (untimed), page cache warm',
        engine: argv.engine === 'dist' ? 'compiled dist/' : 'TypeScript sources through tsx',
        tmpfs: 'no sync needed', tarSource: 'GNU tar -cf of the tree, on tmpfs', speedRatio: 'peer median / our median; > 1 = we are faster',
      },
      verify, rows, rss, tinybench: tinybench ?? null,
    };
    mkdirSync(dirname(argv.out), { recursive: true });
    writeFileSync(argv.out, JSON.stringify(report, null, 2) + '\n');
    printReport(report);
    process.stdout.write(`\nJSON: ${argv.out}\n`);
    if (verify.some((v) => !v.ok)) process.exitCode = 1;
  } finally {
    cleanup();
  }
}

function printReport(r: {
  data: { source: string; files: number; dirs: number; symlinks: number; hardlinks: number; contentMB: number; tarMB: number; entriesInTar: number };
  host: { cpu: string; cores: number; kernel: string; cpuPressure: string; loadavg: string };
  method: { runs: number; warmup: number; ext4: string; engine: string };
  verify: { check: string; ok: boolean }[];
  rows: Row[];
  rss: RssRow[];
  tinybench: { layer: string; tarBytes: number; tasks: Micro[] } | null;
}): void {
  const w = (s: string) => process.stdout.write(s + '\n');
  const d = r.data;
  w(`data: ${d.source}: ${d.files} files, ${d.dirs} dirs, ${d.symlinks} symlinks, ${d.hardlinks} hardlinks; ${f1(d.contentMB)} MB of file data, tar ${f1(d.tarMB)} MB, ${d.entriesInTar} entries`);
  w(`host: ${r.host.cores} × ${r.host.cpu}, kernel ${r.host.kernel}; load ${r.host.loadavg}; cpu pressure ${r.host.cpuPressure}`);
  w(`runs: ${r.method.runs} measured after ${r.method.warmup} warmup; ext4: ${r.method.ext4}; engine: ${r.method.engine}; medians (min)`);
  for (const v of r.verify) w(`verify: ${v.ok ? 'ok' : 'FAIL'} ${v.check}`);
  w('');
  const header = ['OP', 'FS', 'TOOL', 'WALL s', 'CPU s', 'MB/s', 'ENTRIES/s', 'OURS/PEER (wall)', 'OURS/PEER (cpu)'];
  const body = r.rows.map((x) => [
    x.op, x.fs, x.tool, `${f2(x.wall.median / 1000)} (${f2(x.wall.min / 1000)})`, f2(x.cpu.median / 1000), f1(x.mbPerSec),
    Math.round(x.entriesPerSec).toString(), x.speedRatio ? f2(x.speedRatio.wall) : '-', x.speedRatio ? f2(x.speedRatio.cpu) : '-',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  for (const line of [header, ...body]) w(line.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd());
  w('OURS/PEER = peer time / our time: > 1 means strata is faster');
  w('');
  if (r.tinybench) w(`tinybench: ${r.tinybench.layer}, ${f1(r.tinybench.tarBytes / 1e6)} MB tar, on tmpfs`);
  for (const t of r.tinybench?.tasks ?? []) {
    w(`  ${t.task.padEnd(62)} p50 ${f1(t.p50Ms).padStart(7)} ms  mean ${f1(t.meanMs).padStart(7)} ms ±${f1(t.rmePct)}%  (${t.samples} samples)`);
  }
  w('');
  w('RSS of our engine (a fresh process per operation and size; sampled every 5 ms)');
  for (const x of r.rss) {
    w(`  ${x.op.padEnd(6)} ${x.data.padEnd(23)} ${f1(x.mb).padStart(7)} MB, ${String(x.entries).padStart(6)} entries: ` +
      `RSS ${f1(x.beforeMB)} MB before, peak ${f1(x.peakMB)} MB during (+${f1(x.growthMB)} MB); process max ${f1(x.processMaxRssMB)} MB`);
  }
}

await main();
