// npm run bench:tar-goals [-- --shapes small,mixed,large --fs tmpfs,ext4 --runs 5 --only apply,export,version]
//
// Issue 15's table, measured the way the issue says: GNU tar against the strata command and the
// in-process engine on the same tars, in one run, variants interleaved (the order rotates each
// round) after one warmup round, medians of --runs, and the fastest of them: on this guest the
// noise only ever adds time (pages the host took back fault on first touch, its other tenants),
// so the fastest run is the steadier estimate of a tool's own cost; both ratios are reported.
//   apply:  tar -xf T -C D   |  strata layer apply L --driver vfs --file T  |  applyLayerFile(T, D)
//           each with its worker thread (the default on 2 cores: files created, written and finished
//           there) and without it (STRATA_APPLY_WORKER=never / applyOffload 'never'); and, where
//           `cc` is, the floor of the many-file shapes (small, mixed): bench/extract-floor.c, the
//           same files' syscalls alone on 1 and 2 threads (what no extractor here can beat)
//   export: tar -cf O -C D . |  strata layer diff L --driver vfs > O        |  exportDir(D) → O
//           and, where `cc` is, the floor of the many-file shapes: bench/export-floor.c, the
//           syscalls an exporter keeping xattrs must make (listing, lstat, llistxattr, open,
//           fstat, read, write) alone, on 1 and 2 threads
// Shapes: small = 50,000 files of 4,000 B (200 MB); mixed = 20,000 files of Pareto sizes adding
// up to 1.1 GB; large = 10 × 100 MB. Targets: tmpfs, and a journaled ext4 on a loop device of our
// own (/tmp here is ext4 without a journal, where re-extracting right after deleting a big tree
// sets off the deleted-inode scan). The tars, the export outputs and the sources of the tmpfs
// export live on tmpfs; the ext4 export reads a tree on the loop ext4.
// Memory is pre-touched (a tmpfs file as large as the biggest tar, written and removed) since
// pages the guest frees go back to the host and a first touch costs.
// The CLI runs compiled (dist/, built here first: what an installed strata runs); in-process
// runs import the same dist/ modules. Process rows: wall around the spawn, user+sys and peak RSS
// from /usr/bin/time. Ratio = GNU tar time / our time: above 1 strata is faster.
// Start-up: median wall of `strata version` over 15 runs.
// Everything temporary is under one dir on /dev/shm and one loop image in it; removed at the end.
import { execFileSync, spawnSync } from 'node:child_process';
import {
  createWriteStream, mkdirSync, mkdtempSync, openSync, closeSync, rmSync, writeFileSync, writeSync, utimesSync, statSync,
} from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { generateLargeFiles } from '../fixtures/big-tree.ts';
import { prng, randomBytes } from '../fixtures/sample-image.ts';
import { measureInProcess } from './lib/measure.ts';

const repo = fileURLToPath(new URL('..', import.meta.url));
const STRATA = join(repo, 'bin/strata.js');
const SHAPES = ['small', 'mixed', 'large'] as const;
type Shape = (typeof SHAPES)[number];
type FsKind = 'tmpfs' | 'ext4';
const MTIME = new Date(1_700_000_000_000);

/** a run; process runs also give their peak RSS */
interface Sample { wallMs: number; cpuMs: number; rssMB?: number }

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const log = (s: string) => process.stderr.write(`[tar-goals] ${s}\n`);

// ---- data ---------------------------------------------------------------------

function smallTree(dir: string): void {
  const pool = randomBytes(0x5a11, 1 << 20);
  for (let d = 0; d < 500; d++) {
    const sub = join(dir, `d${d}`);
    mkdirSync(sub, { recursive: true });
    for (let f = 0; f < 100; f++) {
      const off = ((d * 100 + f) * 4001) % (pool.length - 4000);
      writeFileSync(join(sub, `f${f}.txt`), pool.subarray(off, off + 4000));
    }
    utimesSync(sub, MTIME, MTIME);
  }
}

/** 20,000 files, Pareto (α 1.2) sizes scaled to 1.1 GB, 200 dirs. */
function mixedTree(dir: string): void {
  const next = prng(0x9a7e);
  const raw = Array.from({ length: 20_000 }, () => Math.pow(1 - next(), -1 / 1.2) - 0.999);
  const cap = 64e6;
  const scale = 1.1e9 / raw.reduce((a, b) => a + b, 0);
  const pool = randomBytes(0x1234, 64 << 20);
  for (let d = 0; d < 200; d++) mkdirSync(join(dir, `d${d}`), { recursive: true });
  raw.forEach((r, i) => {
    const size = Math.min(cap, Math.round(r * scale));
    const off = (i * 7919) % (pool.length - Math.min(size, pool.length));
    const fd = openSync(join(dir, `d${i % 200}`, `f${i}.bin`), 'w');
    for (let o = 0; o < size; o += pool.length) writeSync(fd, pool, off, Math.min(size - o, pool.length - off));
    closeSync(fd);
  });
  for (let d = 0; d < 200; d++) utimesSync(join(dir, `d${d}`), MTIME, MTIME);
}

function makeTree(shape: Shape, dir: string): void {
  if (shape === 'small') smallTree(dir);
  else if (shape === 'mixed') mixedTree(dir);
  else generateLargeFiles(dir, 1e9, 100e6);
}

// ---- runs -------------------------------------------------------------------------

/** A whole process: wall around the spawn, CPU and peak RSS from GNU time. */
function proc(argv: string[], stdoutFile?: string): Sample {
  const out = stdoutFile ? openSync(stdoutFile, 'w') : 'ignore';
  const t0 = performance.now();
  // a source edited during the run would send the CLI through tsx (bin/strata.js): refuse such a row
  const cli = argv[1] === STRATA;
  const env = cli ? { ...process.env, STRATA_TRACE_ENTRY: '1' } : process.env;
  const r = spawnSync('/usr/bin/time', ['-f', '@@ %U %S %M', ...argv], { stdio: ['ignore', out, 'pipe'], encoding: 'utf8', env });
  const wallMs = performance.now() - t0;
  if (typeof out === 'number') closeSync(out);
  const m = /@@ ([\d.]+) ([\d.]+) (\d+)\s*$/.exec(r.stderr);
  if (r.status !== 0 || !m) throw new Error(`${argv.join(' ')}: exit ${r.status ?? r.signal}\n${r.stderr}`);
  if (cli && !r.stderr.includes('running dist/')) throw new Error('a source changed since the build: the strata command now runs through tsx, not dist/');
  return { wallMs, cpuMs: (Number(m[1]) + Number(m[2])) * 1000, rssMB: Number(m[3]) / 1024 };
}

interface Variant { name: string; prepare: () => void; run: () => Promise<Sample> | Sample; cleanup: () => void }

async function interleaved(variants: Variant[], runs: number, sync: boolean): Promise<Sample[][]> {
  const out: Sample[][] = variants.map(() => []);
  for (let i = 0; i < runs + 1; i++) {
    for (let k = 0; k < variants.length; k++) {
      const j = (i + k) % variants.length;
      variants[j].prepare();
      if (sync) execFileSync('sync');
      const s = await variants[j].run();
      variants[j].cleanup();
      if (sync) execFileSync('sync');
      if (i > 0) out[j].push(s);
    }
  }
  return out;
}

const strata = (...args: string[]) => execFileSync(process.execPath, [STRATA, ...args], { stdio: ['ignore', 'ignore', 'inherit'] });

interface Row {
  op: string; shape: Shape; fs: FsKind; tool: string; wallMs: number; minMs: number; cpuMs: number; rssMB?: number;
  /** GNU tar's median over ours, and its fastest run over our fastest */
  ratio?: number; minRatio?: number;
}

function rowsOf(op: string, shape: Shape, fs: FsKind, names: string[], samples: Sample[][]): Row[] {
  const rows = names.map((tool, i) => ({
    op, shape, fs, tool,
    wallMs: median(samples[i].map((s) => s.wallMs)),
    minMs: Math.min(...samples[i].map((s) => s.wallMs)),
    cpuMs: median(samples[i].map((s) => s.cpuMs)),
    rssMB: samples[i][0].rssMB === undefined ? undefined : Math.max(...samples[i].map((s) => s.rssMB!)),
  }));
  for (const r of rows.slice(1) as Row[]) {
    r.ratio = rows[0].wallMs / r.wallMs;
    r.minRatio = rows[0].minMs / r.minMs;
  }
  return rows;
}

/**
 * bench/<name>.c (extract-floor, export-floor) built into `dir` (null, said once, without a C
 * compiler): the file syscalls of an extraction or an export alone, on 1 and 2 threads, as
 * rows beside the tools.
 */
function buildFloor(dir: string, name: string): string | null {
  const exe = join(dir, name);
  const r = spawnSync('cc', ['-O2', '-pthread', '-o', exe, join(repo, `bench/${name}.c`)], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  if (r.status === 0) return exe;
  log(`no ${name} rows: cc ${r.error ? 'is not on the PATH' : `failed: ${r.stderr.trim()}`}`);
  return null;
}

/** A built floor's rows, on 1 and 2 threads: `args`, then the thread count (none without the floor). */
function floorVariants(exe: string | null, args: string[], prepare: () => void, cleanup: () => void): Variant[] {
  if (exe === null) return [];
  return [1, 2].map((n) => ({ name: `C floor, ${n} thread${n > 1 ? 's' : ''}`, prepare, run: () => proc([exe, ...args, String(n)]), cleanup }));
}

// ---- main -----------------------------------------------------------------------------

async function main(): Promise<void> {
  const argv = await yargs(hideBin(process.argv))
    .scriptName('npm run bench:tar-goals --')
    .option('shapes', { type: 'string', default: SHAPES.join(','), describe: 'small,mixed,large' })
    .option('fs', { type: 'string', default: 'tmpfs,ext4', describe: 'targets: tmpfs,ext4' })
    .option('only', { type: 'string', default: 'apply,export,version', describe: 'sections: apply,export,version' })
    .option('runs', { type: 'number', default: 5 })
    .option('tmpfs', { type: 'string', default: '/dev/shm' })
    .option('out', { type: 'string', default: join(repo, 'bench/out/tar-goals.json') })
    .strict()
    .help()
    .parse();
  const shapes = argv.shapes.split(',').filter(Boolean) as Shape[];
  for (const s of shapes) if (!SHAPES.includes(s)) throw new Error(`--shapes: unknown shape ${s}`);
  const fsKinds = argv.fs.split(',').filter(Boolean) as FsKind[];
  const only = new Set(argv.only.split(','));
  const runs = Math.max(1, argv.runs);
  if (process.getuid?.() !== 0) throw new Error('tar-goals needs root (loop-mounted ext4, owners restored)');

  log('building dist/ (npm run build) …');
  execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: repo, stdio: 'inherit' });
  const { applyLayerFile, applyOffload } = await import(join(repo, 'dist/archive/apply.js')) as typeof import('../archive/apply.ts');
  const { exportDir } = await import(join(repo, 'dist/archive/export.js')) as typeof import('../archive/export.ts');

  const base = mkdtempSync(join(argv.tmpfs, 'strata-tar-goals-'));
  const mnt = join(base, 'ext4');
  let mounted = false;
  const cleanup = () => {
    if (mounted) spawnSync('umount', [mnt], { stdio: 'inherit' });
    mounted = false;
    rmSync(base, { recursive: true, force: true });
  };
  process.on('SIGINT', () => {
    cleanup();
    process.exit(130);
  });
  const floor = only.has('apply') ? buildFloor(base, 'extract-floor') : null;
  const exportFloor = only.has('export') ? buildFloor(base, 'export-floor') : null;
  const rows: Row[] = [];
  const put = (r: Row[]) => {
    rows.push(...r);
    for (const x of r) log(`${x.op} ${x.shape} ${x.fs} ${x.tool}: ${x.wallMs.toFixed(0)} ms wall (fastest ${x.minMs.toFixed(0)}), ${x.cpuMs.toFixed(0)} ms cpu${x.rssMB ? `, ${x.rssMB.toFixed(0)} MB rss` : ''}${x.ratio ? `, ${x.ratio.toFixed(2)}× (fastest ${x.minRatio!.toFixed(2)}×)` : ''}`);
  };
  try {
    if (fsKinds.includes('ext4') && (only.has('apply') || only.has('export'))) {
      const img = join(base, 'ext4.img');
      execFileSync('truncate', ['-s', '6G', img]);
      execFileSync('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0', img]);
      mkdirSync(mnt);
      execFileSync('mount', ['-o', 'loop', img, mnt]);
      mounted = true;
    }
    const target = (fs: FsKind) => (fs === 'tmpfs' ? join(base, 'target') : join(mnt, 'target'));

    for (const shape of only.has('apply') || only.has('export') ? shapes : []) {
      log(`${shape}: generating the tree and its tar …`);
      const src = join(base, `${shape}-tree`);
      makeTree(shape, src);
      const tar = join(base, `${shape}.tar`);
      execFileSync('tar', ['-cf', tar, '-C', src, '.']);
      // pre-touch: as much memory as the tar, written and freed
      const touch = join(base, 'touch');
      execFileSync('dd', ['if=/dev/zero', `of=${touch}`, 'bs=1M', `count=${Math.ceil(statSync(tar).size / 2 ** 20) * 2}`], { stdio: 'ignore' });
      rmSync(touch);

      for (const fs of fsKinds) {
        const t = target(fs);
        const home = join(t, 'vfs');
        const layerDir = join(home, 'dir', 'L');
        if (only.has('apply')) {
          const fresh = () => mkdirSync(t, { recursive: true });
          const gone = () => rmSync(t, { recursive: true, force: true });
          const variants: Variant[] = [
            { name: 'GNU tar -xf', prepare: fresh, run: () => proc(['tar', '-xf', tar, '-C', t]), cleanup: gone },
            {
              name: 'strata layer apply',
              prepare: () => { fresh(); strata('layer', 'create', 'L', '--driver', 'vfs', '--home', home); },
              run: () => proc([process.execPath, STRATA, 'layer', 'apply', 'L', '--driver', 'vfs', '--home', home, '--file', tar]),
              cleanup: gone,
            },
            {
              name: 'strata layer apply, no worker',
              prepare: () => { fresh(); strata('layer', 'create', 'L', '--driver', 'vfs', '--home', home); },
              run: () => proc(['env', 'STRATA_APPLY_WORKER=never', process.execPath, STRATA, 'layer', 'apply', 'L', '--driver', 'vfs', '--home', home, '--file', tar]),
              cleanup: gone,
            },
            {
              name: 'applyLayerFile',
              prepare: () => { fresh(); applyOffload.mode = 'auto'; },
              run: () => measureInProcess(() => applyLayerFile(tar, t, { whiteouts: 'none' })),
              cleanup: gone,
            },
            {
              name: 'applyLayerFile, no worker',
              prepare: () => { fresh(); applyOffload.mode = 'never'; },
              run: () => measureInProcess(() => applyLayerFile(tar, t, { whiteouts: 'none' })),
              cleanup: () => { applyOffload.mode = 'auto'; gone(); },
            },
          ];
          // not for 100 MB bodies: mapping them costs more there than the copy they save (not a floor)
          if (shape !== 'large') variants.push(...floorVariants(floor, [tar, t], fresh, gone));
          put(rowsOf('apply', shape, fs, variants.map((v) => v.name), await interleaved(variants, runs, fs === 'ext4')));
        }
        if (only.has('export')) {
          // the source: the layer, applied once by the CLI onto this target
          mkdirSync(t, { recursive: true });
          strata('layer', 'create', 'L', '--driver', 'vfs', '--home', home);
          strata('layer', 'apply', 'L', '--driver', 'vfs', '--home', home, '--file', tar);
          const out = join(base, 'out.tar');
          const none = () => {};
          const rmOut = () => rmSync(out, { force: true });
          const variants: Variant[] = [
            { name: 'GNU tar -cf', prepare: none, run: () => proc(['tar', '-cf', out, '-C', layerDir, '.']), cleanup: rmOut },
            { name: 'strata layer diff', prepare: none, run: () => proc([process.execPath, STRATA, 'layer', 'diff', 'L', '--driver', 'vfs', '--home', home], out), cleanup: rmOut },
            { name: 'exportDir', prepare: none, run: () => measureInProcess(() => pipeline(exportDir(layerDir, { whiteouts: 'none' }), createWriteStream(out))), cleanup: rmOut },
          ];
          // the floor's output is the same kind of file in the same place; large bodies are the kernel's copy alone there
          if (shape !== 'large') variants.push(...floorVariants(exportFloor, [layerDir, out], none, rmOut));
          put(rowsOf('export', shape, fs, variants.map((v) => v.name), await interleaved(variants, runs, false)));
          rmSync(t, { recursive: true, force: true });
        }
      }
      rmSync(src, { recursive: true, force: true });
      rmSync(tar);
    }

    if (only.has('version')) {
      const xs: number[] = [];
      proc([process.execPath, STRATA, 'version']);
      for (let i = 0; i < 15; i++) xs.push(proc([process.execPath, STRATA, 'version']).wallMs);
      rows.push({ op: 'start-up', shape: 'small', fs: 'tmpfs', tool: 'strata version', wallMs: median(xs), minMs: Math.min(...xs), cpuMs: 0 });
      log(`strata version: ${median(xs).toFixed(1)} ms (median of 15)`);
    }
  } finally {
    cleanup();
  }

  // the table
  const lines = [
    '| op | data | target | tool | wall ms (median) | fastest ms | cpu ms | peak RSS MB | GNU/ours (median) | GNU/ours (fastest) |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  const x = (v: number | undefined) => (v ? v.toFixed(2) + '×' : '');
  for (const r of rows) {
    const [shape, target] = r.op === 'start-up' ? ['-', '-'] : [r.shape, r.fs];
    lines.push(`| ${r.op} | ${shape} | ${target} | ${r.tool} | ${r.wallMs.toFixed(0)} | ${r.minMs.toFixed(0)} | ${r.cpuMs ? r.cpuMs.toFixed(0) : '-'} | ${r.rssMB ? r.rssMB.toFixed(0) : '-'} | ${x(r.ratio)} | ${x(r.minRatio)} |`);
  }
  process.stdout.write(lines.join('\n') + '\n');
  mkdirSync(join(repo, 'bench/out'), { recursive: true });
  writeFileSync(argv.out, JSON.stringify({ date: new Date().toISOString(), runs, rows }, null, 2) + '\n');
}

await main();
