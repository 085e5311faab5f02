// npm run bench:drivers [-- --runs 5 --warmup 1 --files 10000 --only verify ops deep rss --no-peer]
//
// The driver-level benchmark: the DiffDriver methods of overlay2 with its native diff, overlay2
// with the naive diff forced (`overlay2.force_naive_diff=true`) and vfs (always naive), on the
// same data, in one run; containers-storage's overlay driver as the peer; and moby's deep-stack
// benchmarks. Shapes follow moby graphbench (daemon/graphdriver/graphtest/graphbench_unix.go):
//   10k-upper  Diff10KFileUpper: lower = addManyFiles(10, seed 3), upper = addManyFiles(10000, seed 6)
//              (the 10 lower files are rewritten, 9990 files and 99 dirs added)
//   mixed      over a lower of addManyFiles(10000, seed 3) + file-remove.txt + var/lib + opaq/ (100
//              files, a subdir): changeManyFiles(10000, seed 6) (rewrite j%3==0, add j%3==1, delete
//              j%3==2), .wh.file-remove.txt, var/.wh.lib, and opaq/ made opaque with one new file
//   deep       Diff20Layers (diff(top, '') over 20 layers, addFiles(seed 50) base) and Read20Layers /
//              Read128Layers (testfile.txt of the base read through the top of a 20 / 128 layer chain)
// Every layer is built from the same tar files (tar-stream, seeded content, fixed mtimes: the upper's
// are 777 s later than the lower's, so a rewrite of same-size content is a change to a naive diff),
// through each driver's applyDiff and through `containers-storage applydiff`.
// Ops, each parent = the layer's direct parent (the native case): changes(upper, base);
// diff(upper, base) drained; applyDiff into a fresh child of base (the tar: the overlay2-native diff
// of upper, captured once, so every driver and the peer apply the same bytes; the child is created
// and removed untimed); diffSize(upper, base). (moby's own DiffN bench diffs against '' instead,
// which on overlay2 is the naive whole-tree path; the deep section covers that case.)
//
// Method: the variants of one op run in interleaved rounds (warmup rounds first, the order rotated
// each round) so drift on a shared host hits all alike. Each round is one tinybench Bench holding
// every variant as a task (1 iteration each, untimed beforeEach/afterEach for fresh children):
// wall = tinybench's latency sample; CPU = process.cpuUsage (user+sys, all threads) around ours,
// the child's rusage (bash `times`) around a peer process. The peer runs one process per call,
// so its rows include process start and store load; a `containers-storage exists` row shows that
// floor. Ratios are row ÷ overlay2 native of the same op and scenario: > 1 means strata's
// overlay2 native path is faster (for the peer rows: peer / ours). The naive diff sleeps until the
// next whole second after it started before ending its stream (moby's guard for 1-second mtimes), so
// its wall time to the end of the stream includes that sleep; LAST BYTE is the time to the last data.
// Reads (moby DeepLayerRead): testfile.txt read warm (the top mounted once per round; tinybench
// iterations of 100 reads, wall and CPU per read = batch / 100) and with a get/put around each read
// (mount and first lookup through every lower on overlay2; nothing to mount on vfs).
// RSS: a fresh process per driver and op on the mixed scenario, RSS sampled every 5 ms during the op.
//
// Correctness first (exit 1 on FAIL): native and naive changes lists are the same (vfs too); the
// native diff applied into a fresh child gives the same tree digest (archive/digest.ts, dirMtimes
// off) as the naive diff applied into a fresh child, and as the upper itself; the deep stacks hold
// what was written.
//
// Output: a table on stdout and JSON in bench/out/drivers.json. Everything lives in one dir under
// /dev/shm; at the end the drivers' cleanup() runs, containers-storage `shutdown`, mounts left below
// the dir are reported (then lazily unmounted) and the dir is removed (also on Ctrl-C).
import { execFileSync, spawnSync } from 'node:child_process';
import { createReadStream, createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { Bench } from 'tinybench';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { applyLayer } from '../archive/apply.ts';
import { manifestDiff, treeDigest, treeManifest } from '../archive/digest.ts';
import { changeLetter, displayPath, type Change } from '../archive/types.ts';
import '../drivers/all.ts';
import type { Driver } from '../drivers/driver.ts';
import { getDriver } from '../drivers/registry.ts';
import { randomBytes, type SampleEntry } from '../fixtures/sample-image.ts';
import { changeManyFiles, deepId, deepLayers, dirEntry, fileEntry, manyFiles, T_LOWER, T_UPPER, whiteoutEntry, writeTar } from './lib/shapes.ts';
import { cpuPressure, f1, f2, measurePeak, mountsUnder, stats, timeProcess, unmountUnder, type Stats } from './lib/measure.ts';

const repo = fileURLToPath(new URL('..', import.meta.url));
const SECTIONS = ['verify', 'ops', 'deep', 'rss'];
const CS = 'containers-storage';

// ---- the drivers under test ------------------------------------------------------

interface DriverSpec {
  label: string;
  name: string;
  options: string[];
  /** root dir below the scratch dir (the driver's home is <root>/<name>) */
  dir: string;
}

const SPECS: DriverSpec[] = [
  { label: 'overlay2 native', name: 'overlay2', options: [], dir: 'ovl-native' },
  { label: 'overlay2 naive', name: 'overlay2', options: ['overlay2.force_naive_diff=true'], dir: 'ovl-naive' },
  { label: 'vfs', name: 'vfs', options: [], dir: 'vfs' },
];
const BASELINE = SPECS[0].label;
const PEER = 'containers-storage overlay';

// ---- scenarios (layer shapes in lib/shapes.ts) -------------------------------------

interface Scenario {
  key: string;
  description: string;
  lower: SampleEntry[];
  upper: SampleEntry[];
}

function scenarios(files: number): Scenario[] {
  const opaqLower: SampleEntry[] = [dirEntry('opaq', T_LOWER)];
  for (let k = 0; k < 100; k++) opaqLower.push(fileEntry(`opaq/old-${k}`, randomBytes(900 + k, 64), T_LOWER));
  opaqLower.push(dirEntry('opaq/sub', T_LOWER), fileEntry('opaq/sub/x', 'x', T_LOWER));
  return [
    {
      key: '10k-upper',
      description: `Diff10KFileUpper: lower addManyFiles(10, 3), upper addManyFiles(${files}, 6)`,
      lower: manyFiles(10, 3, T_LOWER),
      upper: manyFiles(files, 6, T_UPPER),
    },
    {
      key: 'mixed',
      description: `lower addManyFiles(${files}, 3) + file-remove.txt, var/lib, opaq/ (101 files); ` +
        `upper changeManyFiles(${files}, 6) (modify/add/delete), deletes file-remove.txt and var/lib, opaq/ opaque + 1 file`,
      lower: [
        ...manyFiles(files, 3, T_LOWER),
        fileEntry('file-remove.txt', 'This file should get removed in upper!', T_LOWER),
        dirEntry('var', T_LOWER), dirEntry('var/lib', T_LOWER),
        ...opaqLower,
      ],
      upper: [
        ...changeManyFiles(files, 6, T_UPPER),
        whiteoutEntry('', 'file-remove.txt', T_UPPER),
        dirEntry('var', T_UPPER), whiteoutEntry('var/', 'lib', T_UPPER),
        dirEntry('opaq', T_UPPER), fileEntry('opaq/.wh..wh..opq', Buffer.alloc(0), T_UPPER, 0o755), fileEntry('opaq/fresh.txt', 'fresh', T_UPPER),
      ],
    },
  ];
}


// ---- small helpers -----------------------------------------------------------------

/** Drain a tar stream: bytes, and the time of the last data chunk after `t0`. */
async function drain(s: Readable, t0: number): Promise<{ bytes: number; lastByteMs: number }> {
  let bytes = 0;
  let last = t0;
  for await (const c of s) {
    bytes += (c as Buffer).length;
    last = performance.now();
  }
  return { bytes, lastByteMs: last - t0 };
}

const changeLines = (cs: Change[]) => cs.map((c) => `${changeLetter[c.kind]} ${displayPath(c.path)}`);

/** Lines only in `a` (`- `) and only in `b` (`+ `), at most `max` of each side. */
function lineDiff(a: string[], b: string[], max = 10): string {
  const sa = new Set(a);
  const sb = new Set(b);
  const side = (xs: string[], sign: string) =>
    xs.slice(0, max).map((l) => `${sign} ${l}`).concat(xs.length > max ? [`${sign} … ${xs.length - max} more`] : []);
  return [...side(a.filter((l) => !sb.has(l)), '-'), ...side(b.filter((l) => !sa.has(l)), '+')].join('\n');
}

// ---- measurement -----------------------------------------------------------------

interface Variant {
  driver: string;
  how: string;
  /** a whole process: fn returns its CPU (child rusage); otherwise CPU is taken around fn */
  process?: boolean;
  beforeEach?: () => void | Promise<void>;
  afterEach?: () => void | Promise<void>;
  fn: () => Promise<{ cpuMs?: number; lastByteMs?: number } | void>;
}

interface Measured { wall: number[]; cpu: number[]; lastByte: number[] }

/**
 * warmup + runs rounds; each round is one tinybench Bench with every variant as a task of
 * `iterations` iterations, added starting one later each round (tinybench runs tasks in order).
 */
async function interleaved(variants: Variant[], runs: number, warmup: number, iterations = 1): Promise<Measured[]> {
  const out: Measured[] = variants.map(() => ({ wall: [], cpu: [], lastByte: [] }));
  for (let round = 0; round < warmup + runs; round++) {
    const keep = round >= warmup;
    const bench = new Bench({ iterations, time: 0, warmup: false, retainSamples: true, throws: true });
    for (let k = 0; k < variants.length; k++) {
      const j = (round + k) % variants.length;
      const v = variants[j];
      bench.add(String(j), async () => {
        const c0 = process.cpuUsage();
        const r = await v.fn();
        const c = process.cpuUsage(c0);
        if (!keep) return;
        out[j].cpu.push(v.process ? (r?.cpuMs ?? NaN) : (c.user + c.system) / 1000);
        if (r?.lastByteMs !== undefined) out[j].lastByte.push(r.lastByteMs);
      }, { async: true, beforeEach: v.beforeEach, afterEach: v.afterEach });
    }
    await bench.run();
    if (!keep) continue;
    for (const t of bench.tasks) {
      const r = t.result;
      if (!('latency' in r) || !r.latency.samples) throw new Error(`tinybench task ${variants[Number(t.name)].driver}: ${r.state}`);
      out[Number(t.name)].wall.push(...r.latency.samples);
    }
  }
  return out;
}

interface Row {
  section: 'ops' | 'peer floor' | 'deep';
  scenario: string;
  op: string;
  driver: string;
  how: string;
  runs: number;
  wall: Stats;
  cpu: Stats;
  /** diff rows: time to the last data byte */
  lastByte?: Stats;
  /** row ÷ overlay2 native (same op and scenario); > 1 = overlay2 native faster */
  ratio?: { wall: number; cpu: number };
  samples: Measured;
}

interface ReadRow {
  layers: number;
  driver: string;
  mode: 'warm (mounted once)' | 'get + read + put';
  /** per read, µs */
  wallUs: Stats;
  cpuUs: Stats;
  reads: number;
}

// ---- child mode: one op in a fresh process, for peak RSS --------------------------

async function child(a: { op: string; spec: number; root: string; id: string; parent: string; tar: string; childId: string }): Promise<void> {
  const spec = SPECS[a.spec];
  const d = await getDriver(spec.name, a.root, spec.options);
  try {
    if (a.op === 'applyDiff') await d.create(a.childId, a.parent);
    const { result, m } = await measurePeak(async () => {
      if (a.op === 'changes') return (await d.changes(a.id, a.parent)).length;
      if (a.op === 'diff') return (await drain(d.diff(a.id, a.parent), performance.now())).bytes;
      if (a.op === 'applyDiff') return d.applyDiff(a.childId, a.parent, createReadStream(a.tar, { highWaterMark: 1 << 20 }));
      if (a.op === 'diffSize') return d.diffSize(a.id, a.parent);
      throw new Error(`unknown child op ${a.op}`);
    });
    if (a.op === 'applyDiff') await d.remove(a.childId);
    process.stdout.write(JSON.stringify({ ...m, result }) + '\n');
  } finally {
    await d.cleanup();
  }
}

// ---- main ------------------------------------------------------------------------

async function main(): Promise<void> {
  const argv = await yargs(hideBin(process.argv))
    .scriptName('npm run bench:drivers --')
    .option('runs', { type: 'number', default: 5, describe: 'measured rounds per op' })
    .option('warmup', { type: 'number', default: 1, describe: 'unmeasured rounds before them' })
    .option('files', { type: 'number', default: 10000, describe: 'files of the 10k upper and of the mixed lower (moby: 10000)' })
    .option('read-iterations', { type: 'number', default: 2000, describe: 'warm reads per variant and round (in batches of 100)' })
    .option('peer', { type: 'boolean', default: true, describe: 'containers-storage (overlay) as the peer, when installed' })
    .option('only', { type: 'array', string: true, choices: SECTIONS, describe: 'run only these sections (default: all)' })
    .option('tmpfs', { type: 'string', default: '/dev/shm', describe: 'dir for all data, stores and targets' })
    .option('out', { type: 'string', default: join(repo, 'bench/out/drivers.json') })
    .option('child', { type: 'string', hidden: true })
    .option('spec', { type: 'number', hidden: true })
    .option('root', { type: 'string', hidden: true })
    .option('id', { type: 'string', hidden: true })
    .option('parent', { type: 'string', hidden: true })
    .option('tar', { type: 'string', hidden: true })
    .option('child-id', { type: 'string', hidden: true })
    .strict()
    .help()
    .parse();

  if (argv.child) {
    return child({ op: argv.child, spec: argv.spec ?? 0, root: argv.root ?? '', id: argv.id ?? '', parent: argv.parent ?? '', tar: argv.tar ?? '', childId: argv['child-id'] ?? '' });
  }

  const only = new Set(argv.only?.length ? argv.only : SECTIONS);
  const runs = Math.max(1, argv.runs);
  const warmup = Math.max(0, argv.warmup);
  const log = (s: string) => process.stderr.write(`[bench:drivers] ${s}\n`);
  if (process.getuid?.() !== 0) throw new Error('bench:drivers needs root (overlay mounts, trusted.* xattrs)');

  const tmp = mkdtempSync(join(argv.tmpfs, 'strata-bench-drivers-'));
  const tars = join(tmp, 'tars');
  mkdirSync(tars);
  const drivers: Driver[] = [];
  const csGraph = join(tmp, 'cs', 'graph');
  const csRun = join(tmp, 'cs', 'run');
  const csArgv = (...args: string[]) => [CS, '-g', csGraph, '-R', csRun, '-s', 'overlay', ...args];
  const cs = (...args: string[]) => execFileSync(CS, csArgv(...args).slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  let csUsed = false;
  const csShutdown = () => {
    if (csUsed) spawnSync(CS, csArgv('shutdown').slice(1), { stdio: 'ignore' });
    csUsed = false;
  };
  let mountsLeft: string[] | null = null;
  const finalCleanup = async () => {
    for (const d of drivers.splice(0)) await d.cleanup().catch((e: Error) => log(`cleanup of ${d.name}: ${e.message}`));
    csShutdown();
    mountsLeft = mountsUnder(tmp);
    unmountUnder(tmp);
    rmSync(tmp, { recursive: true, force: true });
  };
  process.on('SIGINT', () => {
    csShutdown();
    unmountUnder(tmp);
    rmSync(tmp, { recursive: true, force: true });
    process.exit(130);
  });

  const verify: { check: string; ok: boolean; detail: string }[] = [];
  const check = (name: string, ok: boolean, detail = '') => {
    verify.push({ check: name, ok, detail });
    log(`  ${ok ? 'ok  ' : 'FAIL'} ${name}${ok || !detail ? '' : '\n' + detail}`);
  };
  const info: string[] = [];
  const note = (s: string) => {
    info.push(s);
    log(`  info: ${s}`);
  };
  const rows: Row[] = [];
  const reads: ReadRow[] = [];
  const rss: Record<string, unknown>[] = [];
  const data: Record<string, unknown>[] = [];
  let csVersion: string | null = null;

  try {
    // -- drivers
    for (const s of SPECS) drivers.push(await getDriver(s.name, join(tmp, s.dir), s.options));
    const [ovl, ovlNaive, vfs] = drivers;
    const nativeStatus = Object.fromEntries(ovl.status());
    if (nativeStatus['Native Overlay Diff'] !== 'true') {
      log(`warning: overlay2 has no native diff here (${nativeStatus['Native Overlay Diff (why not)'] ?? '?'}): its "native" rows run the naive path`);
    }
    const csBin = argv.peer && !spawnSync(CS, ['--help'], { stdio: 'ignore' }).error;
    if (argv.peer && !csBin) log(`${CS} is not installed (apt-get install ${CS}): peer skipped`);
    if (csBin) {
      csUsed = true;
      // (`containers-storage version` prints nothing in this build: ask the package)
      const v = spawnSync('dpkg-query', ['-W', '-f', '${Version}', CS], { encoding: 'utf8' });
      csVersion = v.status === 0 && v.stdout ? v.stdout.trim() : 'unknown';
    }
    const csLayer = (parent?: string) => cs('create-layer', ...(parent ? [parent] : [])).trim().split(/\s+/)[0];

    const addRows = (section: Row['section'], scenario: string, op: string, variants: Variant[], m: Measured[]) => {
      const base = variants.findIndex((v) => v.driver === BASELINE);
      variants.forEach((v, i) => {
        const r: Row = {
          section, scenario, op, driver: v.driver, how: v.how, runs: m[i].wall.length,
          wall: stats(m[i].wall), cpu: stats(m[i].cpu), samples: m[i],
        };
        if (m[i].lastByte.length) r.lastByte = stats(m[i].lastByte);
        if (base >= 0 && i !== base) {
          r.ratio = { wall: r.wall.median / stats(m[base].wall).median, cpu: r.cpu.median / stats(m[base].cpu).median };
        }
        rows.push(r);
        log(`  ${scenario} ${op} ${v.driver}: ${f1(r.wall.median)} ms wall, ${f1(r.cpu.median)} ms CPU`);
      });
    };

    // -- scenarios: tars, layers in every driver and in containers-storage
    const scns = only.has('ops') || only.has('verify') || only.has('rss') ? scenarios(argv.files) : [];
    const built: { s: Scenario; lowerTar: string; upperTar: string; nativeDiffTar: string; csBase?: string; csUpper?: string; csMounted?: string }[] = [];
    for (const s of scns) {
      const lowerTar = join(tars, `${s.key}-lower.tar`);
      const upperTar = join(tars, `${s.key}-upper.tar`);
      const lowerBytes = await writeTar(s.lower, lowerTar);
      const upperBytes = await writeTar(s.upper, upperTar);
      log(`${s.key}: lower ${s.lower.length} entries (${f1(lowerBytes / 1e6)} MB tar), upper ${s.upper.length} entries (${f1(upperBytes / 1e6)} MB tar); building layers …`);
      const base = `${s.key}-base`;
      const upper = `${s.key}-upper`;
      for (const d of drivers) {
        await d.create(base, null);
        await d.applyDiff(base, null, createReadStream(lowerTar, { highWaterMark: 1 << 20 }));
        await d.create(upper, base);
        await d.applyDiff(upper, base, createReadStream(upperTar, { highWaterMark: 1 << 20 }));
      }
      // the tar every applyDiff timing uses: overlay2's native diff of the upper, captured once
      const nativeDiffTar = join(tars, `${s.key}-native-diff.tar`);
      await pipeline(ovl.diff(upper, base), createWriteStream(nativeDiffTar));
      const b: (typeof built)[number] = { s, lowerTar, upperTar, nativeDiffTar };
      if (csBin) {
        b.csBase = csLayer();
        cs('applydiff', '-f', lowerTar, b.csBase);
        b.csUpper = csLayer(b.csBase);
        cs('applydiff', '-f', upperTar, b.csUpper);
        // the same upper written through the layer's mount instead: no stored tar-split, so
        // `diff` has to compute the diff with the driver (applydiff layers replay their tar-split)
        b.csMounted = csLayer(b.csBase);
        const mnt = cs('mount', b.csMounted).trim();
        await applyLayer(createReadStream(upperTar, { highWaterMark: 1 << 20 }), mnt, { whiteouts: 'none' });
        cs('unmount', b.csMounted);
      }
      data.push({ scenario: s.key, description: s.description, lowerEntries: s.lower.length, upperEntries: s.upper.length, lowerTarBytes: lowerBytes, upperTarBytes: upperBytes, nativeDiffTarBytes: statSync(nativeDiffTar).size });
      built.push(b);
    }

    // -- correctness: native = naive
    if (only.has('verify')) {
      log('verifying …');
      const opts = { dirMtimes: false };
      for (const { s, nativeDiffTar } of built) {
        const base = `${s.key}-base`;
        const upper = `${s.key}-upper`;
        const lists = await Promise.all(drivers.map(async (d) => changeLines(await d.changes(upper, base))));
        check(`${s.key}: changes(upper, base) overlay2 native = overlay2 naive (${lists[0].length} changes)`,
          lists[0].join('\n') === lists[1].join('\n'), lineDiff(lists[0], lists[1]));
        check(`${s.key}: changes(upper, base) vfs = overlay2 naive`, lists[2].join('\n') === lists[1].join('\n'), lineDiff(lists[2], lists[1]));
        // each diff applied into a fresh child of base: native diff via native applyDiff, naive via naive
        const naiveDiffTar = join(tars, `${s.key}-naive-diff.tar`);
        const vfsDiffTar = join(tars, `${s.key}-vfs-diff.tar`);
        await pipeline(ovlNaive.diff(upper, base), createWriteStream(naiveDiffTar));
        await pipeline(vfs.diff(upper, base), createWriteStream(vfsDiffTar));
        const child = `${s.key}-verify-child`;
        const pairs: [Driver, string][] = [[ovl, nativeDiffTar], [ovlNaive, naiveDiffTar], [vfs, vfsDiffTar]];
        const sizes: number[] = [];
        for (const [d, tar] of pairs) {
          await d.create(child, base);
          sizes.push(await d.applyDiff(child, base, createReadStream(tar, { highWaterMark: 1 << 20 })));
        }
        const digestOf = async (d: Driver, id: string) => {
          const p = await d.get(id);
          try {
            return { digest: await treeDigest(p, opts) };
          } finally {
            await d.put(id);
          }
        };
        const [nat, nai, vf, up] = [await digestOf(ovl, child), await digestOf(ovlNaive, child), await digestOf(vfs, child), await digestOf(ovl, upper)];
        const detail = async (d1: Driver, d2: Driver, id2: string) => {
          const [p1, p2] = [await d1.get(child), await d2.get(id2)];
          try {
            return manifestDiff(await treeManifest(p1, opts), await treeManifest(p2, opts), 10);
          } finally {
            await d1.put(child);
            await d2.put(id2);
          }
        };
        check(`${s.key}: tree digest of a fresh child + native diff = fresh child + naive diff (${nat.digest})`,
          nat.digest === nai.digest, nat.digest === nai.digest ? '' : await detail(ovl, ovlNaive, child));
        check(`${s.key}: … = fresh vfs child + vfs diff`, vf.digest === nat.digest, vf.digest === nat.digest ? '' : await detail(ovl, vfs, child));
        check(`${s.key}: … = the upper itself`, up.digest === nat.digest, up.digest === nat.digest ? '' : await detail(ovl, ovl, upper));
        for (const d of drivers) await d.remove(child);
        const tarSizes = [nativeDiffTar, naiveDiffTar, vfsDiffTar].map((p) => statSync(p).size);
        const dsz = await Promise.all(drivers.map((d) => d.diffSize(upper, base)));
        note(`${s.key}: diff tar bytes native ${tarSizes[0]}, naive ${tarSizes[1]}, vfs ${tarSizes[2]}; ` +
          `applyDiff sizes native ${sizes[0]} (size of the diff dir), naive ${sizes[1]}, vfs ${sizes[2]} (Σ tar header sizes); ` +
          `diffSize native ${dsz[0]}, naive ${dsz[1]}, vfs ${dsz[2]}`);
        Object.assign(data.find((x) => x.scenario === s.key) ?? {}, {
          changes: lists[0].length, diffTarBytes: { native: tarSizes[0], naive: tarSizes[1], vfs: tarSizes[2] },
          applyDiffSize: { native: sizes[0], naive: sizes[1], vfs: sizes[2] }, diffSize: { native: dsz[0], naive: dsz[1], vfs: dsz[2] },
        });
        for (const p of [naiveDiffTar, vfsDiffTar]) rmSync(p, { force: true });
        const b = built.find((x) => x.s === s);
        if (b?.csUpper) {
          const out = cs('changes', b.csUpper).trim().split('\n').filter(Boolean);
          const letter: Record<string, string> = { Modify: 'C', Add: 'A', Delete: 'D' };
          const theirs = out.map((l) => {
            const m = /^(\w+) "(.*)"$/.exec(l);
            return m ? `${letter[m[1]] ?? m[1]} ${JSON.parse(`"${m[2]}"`) as string}` : l;
          }).sort();
          const ours = [...lists[0]].sort();
          const same = theirs.join('\n') === ours.join('\n');
          note(`${s.key}: ${CS} changes: ${theirs.length} entries, ${same ? 'the same list as ours' : `differs from ours (${ours.length}; - ours only, + theirs only):\n${lineDiff(ours, theirs, 4)}`}`);
        }
      }
    }

    // -- ops: changes, diff, applyDiff, diffSize
    if (only.has('ops')) {
      for (const b of built) {
        const { s, nativeDiffTar } = b;
        const base = `${s.key}-base`;
        const upper = `${s.key}-upper`;
        const ours = (fn: (d: Driver) => Variant['fn'], how: string, extra: (d: Driver) => Partial<Variant> = () => ({})): Variant[] =>
          drivers.map((d, i) => ({ driver: SPECS[i].label, how, fn: fn(d), ...extra(d) }));
        const peer = (how: string, v: Omit<Variant, 'driver' | 'how' | 'process'>): Variant[] => (b.csUpper ? [{ driver: PEER, how, process: true, ...v }] : []);

        const opsList: [string, Variant[]][] = [
          ['changes', [
            ...ours((d) => async () => void (await d.changes(upper, base)), 'changes(upper, base)'),
            ...peer(`${CS} changes UPPER`, { fn: async () => timeProcess(csArgv('changes', b.csUpper!)) }),
          ]],
          ['diff', [
            ...ours((d) => async () => drain(d.diff(upper, base), performance.now()), 'diff(upper, base) drained'),
            ...peer(`${CS} diff -u UPPER (applydiff layer: replays its stored tar-split)`, { fn: async () => timeProcess(csArgv('diff', '-u', b.csUpper!)) }),
            ...(b.csMounted ? [{ driver: `${PEER} (driver diff)`, how: `${CS} diff -u LAYER (layer written through its mount: the driver's native diff)`, process: true,
              fn: async () => timeProcess(csArgv('diff', '-u', b.csMounted!)) }] : []),
          ]],
          ['applyDiff', (() => {
            let n = 0;
            let csChild = '';
            const child = () => `${s.key}-apply-${n}`;
            return [
              ...ours((d) => async () => void (await d.applyDiff(child(), base, createReadStream(nativeDiffTar, { highWaterMark: 1 << 20 }))),
                'applyDiff(fresh child of base, overlay2-native diff tar)', (d) => ({
                  beforeEach: async () => { n++; await d.create(child(), base); },
                  afterEach: async () => { await d.remove(child()); },
                })),
              ...peer(`${CS} applydiff -f TAR CHILD (same tar; create-layer/delete-layer untimed)`, {
                beforeEach: () => { csChild = csLayer(b.csBase); },
                fn: async () => timeProcess(csArgv('applydiff', '-f', nativeDiffTar, csChild)),
                afterEach: () => void cs('delete-layer', csChild),
              }),
            ];
          })()],
          ['diffSize', [
            ...ours((d) => async () => void (await d.diffSize(upper, base)), 'diffSize(upper, base)'),
            ...peer(`${CS} diffsize UPPER`, { fn: async () => timeProcess(csArgv('diffsize', b.csUpper!)) }),
          ]],
        ];
        for (const [op, variants] of opsList) {
          log(`${s.key} ${op}: ${variants.map((v) => v.driver).join(', ')} …`);
          addRows('ops', s.key, op, variants, await interleaved(variants, runs, warmup));
        }
        if (b.csBase) {
          const floor: Variant[] = [{ driver: PEER, how: `${CS} exists LAYER (process start + store load: the floor of every peer row)`, process: true,
            fn: async () => timeProcess(csArgv('exists', b.csBase!)) }];
          addRows('peer floor', s.key, 'exists', floor, await interleaved(floor, runs, warmup));
        }
      }
    }

    // -- deep stacks: diff(top, '') over 20 layers; reads through 20 / 128 layers
    if (only.has('deep')) {
      const depth = 128;
      log(`deep: a chain of ${depth} layers on overlay2 and vfs …`);
      const layerTars = deepLayers(depth);
      const deepDrivers: [string, Driver][] = [[SPECS[0].label, ovl], [SPECS[2].label, vfs]];
      for (let i = 0; i <= depth; i++) {
        const tar = join(tars, `deep-${i}.tar`);
        await writeTar(layerTars[i], tar);
        for (const [, d] of deepDrivers) {
          await d.create(deepId(i), i === 0 ? null : deepId(i - 1));
          await d.applyDiff(deepId(i), i === 0 ? null : deepId(i - 1), createReadStream(tar));
        }
        rmSync(tar);
      }
      // what moby's DeepLayerRead/checkManyLayers check, and overlay2 = vfs at both depths
      for (const n of [20, depth]) {
        const seen: string[] = [];
        for (const [label, d] of deepDrivers) {
          const p = await d.get(deepId(n));
          try {
            const content = readFileSync(join(p, 'testfile.txt'), 'utf8');
            let chain = readFileSync(join(p, 'top-id'), 'utf8') === deepId(n);
            for (let i = n; i >= 1 && chain; i--) chain = readFileSync(join(p, `layer-${i}/layer-id`), 'utf8') === deepId(i) && readFileSync(join(p, `layer-${i}/parent-id`), 'utf8') === deepId(i - 1);
            check(`deep ${n}: ${label} shows testfile.txt = "test content" and the ${n} layers' ids`, content === 'test content' && chain, `testfile.txt = ${JSON.stringify(content)}, chain ${chain ? 'ok' : 'broken'}`);
            seen.push(await treeDigest(p, { dirMtimes: false }));
          } finally {
            await d.put(deepId(n));
          }
        }
        check(`deep ${n}: overlay2 and vfs show the same tree (${seen[0]})`, seen[0] === seen[1], seen.join(' ≠ '));
      }
      const top20 = deepId(20);
      const dv: Variant[] = deepDrivers.map(([label, d]) => ({
        driver: label, how: "diff(top, '') drained: parent '' takes the naive whole-tree path on overlay2 too (moby's isParent)",
        fn: async () => drain(d.diff(top20, ''), performance.now()),
      }));
      log(`deep diff over 20 layers: ${dv.map((v) => v.driver).join(', ')} …`);
      addRows('deep', '20 layers', "diff(top, '')", dv, await interleaved(dv, runs, warmup));

      // warm reads: the top mounted once per round; each tinybench iteration reads the file
      // READ_BATCH times (wall and CPU taken around the batch, so the harness does not count)
      const READ_BATCH = 100;
      const readVariants = deepDrivers.flatMap(([label, d]) => [20, depth].map((n) => ({ label, d, n })));
      const batches = Math.max(1, Math.round(argv['read-iterations'] / READ_BATCH));
      log(`reads through 20 / ${depth} layers (${batches * READ_BATCH} warm reads per variant and round) …`);
      const warm = readVariants.map(() => ({ wall: [] as number[], cpu: [] as number[] }));
      for (let round = 0; round < warmup + runs; round++) {
        const bench = new Bench({ iterations: batches, time: 0, warmup: false, retainSamples: true, throws: true });
        for (let k = 0; k < readVariants.length; k++) {
          const j = (round + k) % readVariants.length;
          const { d, n } = readVariants[j];
          let file = '';
          bench.add(String(j), () => {
            const c0 = process.cpuUsage();
            for (let i = 0; i < READ_BATCH; i++) readFileSync(file);
            const c = process.cpuUsage(c0);
            if (round >= warmup) warm[j].cpu.push((c.user + c.system) / READ_BATCH);
          }, {
            async: false,
            beforeAll: async () => { file = join(await d.get(deepId(n)), 'testfile.txt'); },
            afterAll: async () => { await d.put(deepId(n)); },
          });
        }
        await bench.run();
        if (round < warmup) continue;
        for (const t of bench.tasks) {
          const j = Number(t.name);
          const r = t.result;
          if (!('latency' in r) || !r.latency.samples) throw new Error(`tinybench read task ${j}: ${r.state}`);
          warm[j].wall.push(...r.latency.samples.map((ms) => (ms * 1000) / READ_BATCH));
        }
      }
      readVariants.forEach(({ label, n }, j) => reads.push({
        layers: n, driver: label, mode: 'warm (mounted once)', wallUs: stats(warm[j].wall), cpuUs: stats(warm[j].cpu), reads: warm[j].wall.length * READ_BATCH,
      }));
      // get + read + put per iteration: mount (overlay2) and the first lookup through every lower
      const fresh: Variant[] = readVariants.map(({ label, d, n }) => ({
        driver: label, how: `get(top of ${n}) + read testfile.txt + put`,
        fn: async () => {
          const p = await d.get(deepId(n));
          try {
            readFileSync(join(p, 'testfile.txt'));
          } finally {
            await d.put(deepId(n));
          }
        },
      }));
      const fm = await interleaved(fresh, runs, warmup, 20);
      readVariants.forEach(({ label, n }, j) => reads.push({
        layers: n, driver: label, mode: 'get + read + put', wallUs: stats(fm[j].wall.map((x) => x * 1000)), cpuUs: stats(fm[j].cpu.map((x) => x * 1000)), reads: fm[j].wall.length,
      }));
      for (const r of reads) log(`  read ${r.layers} layers ${r.driver} ${r.mode}: ${f1(r.wallUs.median)} µs wall, ${f1(r.cpuUs.median)} µs CPU`);
    }

    // -- RSS: one op per fresh process, mixed scenario
    const mixed = built.find((b) => b.s.key === 'mixed');
    if (only.has('rss') && mixed) {
      log('RSS (a fresh process per driver and op, mixed scenario) …');
      for (const op of ['changes', 'diff', 'applyDiff', 'diffSize']) {
        for (let i = 0; i < SPECS.length; i++) {
          const r = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', op, '--spec', String(i),
            '--root', join(tmp, SPECS[i].dir), '--id', 'mixed-upper', '--parent', 'mixed-base', '--tar', mixed.nativeDiffTar, '--child-id', 'mixed-rss-child'], {
            cwd: repo, encoding: 'utf8', maxBuffer: 16 << 20,
          });
          if (r.status !== 0) throw new Error(`RSS child ${op} ${SPECS[i].label}: exit ${r.status}\n${r.stderr}`);
          const j = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { wallMs: number; cpuMs: number; beforeBytes: number; peakBytes: number; maxRssKB: number; result: number };
          rss.push({ op, driver: SPECS[i].label, beforeMB: j.beforeBytes / 2 ** 20, peakMB: j.peakBytes / 2 ** 20, growthMB: (j.peakBytes - j.beforeBytes) / 2 ** 20, processMaxRssMB: j.maxRssKB / 1024, wallMs: j.wallMs, cpuMs: j.cpuMs, result: j.result });
        }
      }
    }
  } finally {
    await finalCleanup();
  }

  // -- report
  const host = {
    cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, kernel: release(), node: process.version,
    containersStorage: csVersion, cpuPressure: cpuPressure(), loadavg: readFileSync('/proc/loadavg', 'utf8').trim(),
  };
  const report = {
    date: new Date().toISOString(), host,
    method: {
      runs, warmup, files: argv.files, readIterations: argv['read-iterations'],
      rounds: 'each op: variants interleaved, order rotated each round; every round one tinybench Bench (wall = its latency samples)',
      ours: 'in-process, CPU = process.cpuUsage user+sys (all threads)', peer: 'a process per call, CPU = its rusage user+sys (bash `times`)',
      ratio: 'row median ÷ overlay2 native median of the same op and scenario; > 1 = overlay2 native faster (peer rows: peer / ours)',
      applyDiffInput: 'the overlay2-native diff(upper, base) tar of the scenario, the same bytes for every driver and the peer',
      naiveDiffWall: 'naive diff streams end at the next whole second after they started (moby); lastByte is the time to the last data',
      storage: `everything on ${argv.tmpfs} (tmpfs)`,
    },
    data, verify, info, rows, reads, rss, mountsLeftAtEnd: mountsLeft,
  };
  mkdirSync(dirname(argv.out), { recursive: true });
  writeFileSync(argv.out, JSON.stringify(report, null, 2) + '\n');
  printReport(report);
  process.stdout.write(`\nJSON: ${argv.out}\n`);
  if (verify.some((v) => !v.ok)) process.exitCode = 1;
}

function printReport(r: {
  host: { cpu: string; cores: number; kernel: string; cpuPressure: string; loadavg: string; containersStorage: string | null };
  method: { runs: number; warmup: number };
  data: Record<string, unknown>[];
  verify: { check: string; ok: boolean }[];
  info: string[];
  rows: Row[];
  reads: ReadRow[];
  rss: Record<string, unknown>[];
  mountsLeftAtEnd: string[] | null;
}): void {
  const w = (s: string) => process.stdout.write(s + '\n');
  const table = (header: string[], body: string[][]) => {
    const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
    for (const line of [header, ...body]) w(line.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd());
  };
  w(`host: ${r.host.cores} × ${r.host.cpu}, kernel ${r.host.kernel}; load ${r.host.loadavg}; cpu pressure ${r.host.cpuPressure}`);
  w(`peer: ${r.host.containersStorage ? `${CS} ${r.host.containersStorage}, overlay driver` : 'none'}; runs: ${r.method.runs} measured rounds after ${r.method.warmup} warmup; medians (min)`);
  for (const d of r.data) w(`data ${d.scenario}: ${d.description}; ${d.changes ?? '?'} changes; native diff tar ${f1(Number(d.nativeDiffTarBytes) / 1e6)} MB`);
  for (const v of r.verify) w(`verify: ${v.ok ? 'ok' : 'FAIL'} ${v.check}`);
  for (const i of r.info) w(`info: ${i}`);
  w('');
  const ratio = (x: Row) => (x.ratio ? [f2(x.ratio.wall), f2(x.ratio.cpu)] : ['-', '-']);
  table(['SCENARIO', 'OP', 'DRIVER', 'WALL ms', 'CPU ms', 'LAST BYTE ms', '÷NATIVE wall', '÷NATIVE cpu'], r.rows.map((x) => [
    x.scenario, x.op, x.driver, `${f1(x.wall.median)} (${f1(x.wall.min)})`, f1(x.cpu.median), x.lastByte ? f1(x.lastByte.median) : '-', ...ratio(x),
  ]));
  w('÷NATIVE = row median / overlay2-native median (same scenario and op): > 1 means strata overlay2 native is faster;');
  w('  on containers-storage rows it is peer/ours. Peer rows are whole processes (see the `exists` floor row).');
  w("  Naive diff wall runs to the stream's end, which waits for the next whole second (moby); LAST BYTE excludes that.");
  if (r.reads.length) {
    w('');
    table(['READ testfile.txt', 'LAYERS', 'DRIVER', 'WALL µs/read', 'CPU µs/read', 'READS'], r.reads.map((x) => [
      x.mode, String(x.layers), x.driver, `${f1(x.wallUs.median)} (${f1(x.wallUs.min)})`, f1(x.cpuUs.median), String(x.reads),
    ]));
  }
  if (r.rss.length) {
    w('');
    w('RSS, mixed scenario, a fresh process per op (sampled every 5 ms during the op)');
    table(['OP', 'DRIVER', 'RSS before MB', 'peak MB', 'growth MB', 'wall ms', 'result'], r.rss.map((x) => [
      String(x.op), String(x.driver), f1(Number(x.beforeMB)), f1(Number(x.peakMB)), f1(Number(x.growthMB)), f1(Number(x.wallMs)), String(x.result),
    ]));
  }
  w('');
  w(r.mountsLeftAtEnd === null ? 'mounts left: not checked' : r.mountsLeftAtEnd.length ? `mounts left below the scratch dir after cleanup (now lazily unmounted): ${r.mountsLeftAtEnd.join(', ')}` : 'mounts left below the scratch dir after cleanup: none');
}

await main();
