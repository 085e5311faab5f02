// npx tsx bench/inspect.ts [--root DIR] [--runs 7] [--keep] [--images 1000 --layers 5000]
//
// Speed of offline inspection on a large store: the issue's goals are
// `strata images` < 0.5 s and `strata df` < 2 s for 1,000 images / 5,000
// layers. Without --root, a synthetic store of that size is written first
// (fixtures/synthetic-store.ts, through the overlay2 driver, ~15 s) in a
// scratch dir under /tmp, removed at the end unless --keep.
//
// Measured, interleaved per round so host noise hits every variant alike:
//   images (library)  openStore + imageRows + renderImages, in this process
//   df (library)      openStore + diskUsage + renderDf -v, in this process
//   images (CLI)      `bin/strata.js images --root …` (the compiled CLI when dist/ is current), whole process
//   df (CLI)          the same for `df -v`
//   startup (CLI)     `strata version`: what Node and module loading cost before any work
// Runs after the first are warm-cache (the store was just written or read);
// the first run is reported apart. Output: a table and bench/out/inspect.json.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { writeSyntheticStore } from '../fixtures/synthetic-store.ts';
import { diskUsage, renderDf } from '../inspect/df.ts';
import { imageRows, renderImages } from '../inspect/images.ts';
import { openStore } from '../layerstore/store.ts';
import { cpuPressure, f1, measureInProcess, stats, timeProcess, type Sample } from './lib/measure.ts';

const repo = fileURLToPath(new URL('..', import.meta.url));

const argv = await yargs(hideBin(process.argv))
  .option('root', { type: 'string', describe: 'an existing Docker data root to measure (default: generate a synthetic one)' })
  .option('runs', { type: 'number', default: 7 })
  .option('keep', { type: 'boolean', default: false, describe: 'keep the generated store' })
  .option('images', { type: 'number', default: 1000 })
  .option('layers', { type: 'number', default: 5000 })
  .strict()
  .parse();

let scratch: string | null = null;
let root = argv.root ?? '';
let generateMs: number | null = null;
const cleanup = () => {
  if (scratch && !argv.keep) fs.rmSync(scratch, { recursive: true, force: true });
};
process.on('SIGINT', () => {
  cleanup();
  process.exit(130);
});

try {
  if (!root) {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-bench-inspect-'));
    root = path.join(scratch, 'root');
    const t0 = performance.now();
    process.stderr.write(`writing a synthetic store (${argv.images} images, ${argv.layers} layers) in ${root} …\n`);
    await writeSyntheticStore(root, 'overlay2', { images: argv.images, layers: argv.layers });
    generateMs = performance.now() - t0;
  }
  const first = openStore(root);
  const shape = { images: first.images.size, layers: first.layers.size, containers: first.containers.length, driver: first.driver };

  // the strata command as installed: bin/strata.js runs dist/ when it is current (npm run build)
  const cli = (args: string[]) => timeProcess([process.execPath, path.join(repo, 'bin', 'strata.js'), ...args]);
  const variants: Record<string, () => Promise<Sample> | Sample> = {
    'images (library)': () => measureInProcess(async () => {
      const m = openStore(root);
      renderImages(m, imageRows(m));
    }),
    'df -v (library)': () => measureInProcess(async () => {
      const m = openStore(root);
      renderDf(await diskUsage(m), true);
    }),
    'images (CLI)': () => cli(['images', '--root', root]),
    'df -v (CLI)': () => cli(['df', '-v', '--root', root]),
    'startup (CLI: strata version)': () => cli(['version']),
  };
  const names = Object.keys(variants);
  const samples = new Map<string, Sample[]>(names.map((n) => [n, []]));
  for (let r = 0; r < argv.runs; r++) {
    const order = names.map((_, i) => names[(i + r) % names.length]);
    for (const n of order) samples.get(n)!.push(await variants[n]());
  }
  const goals: Record<string, number> = { 'images (library)': 500, 'df -v (library)': 2000, 'images (CLI)': 500, 'df -v (CLI)': 2000 };
  const rows = names.map((n) => {
    const s = samples.get(n)!;
    const later = s.slice(1).map((x) => x.wallMs);
    const st = stats(later.length ? later : s.map((x) => x.wallMs));
    const goal = goals[n];
    return { name: n, firstMs: s[0].wallMs, medianMs: st.median, minMs: st.min, cpuMedianMs: stats(s.map((x) => x.cpuMs)).median, goalMs: goal ?? null, meets: goal === undefined ? null : st.median < goal };
  });
  const out = {
    date: new Date().toISOString(), host: { cpus: os.cpus().length, kernel: os.release(), node: process.version, cpuPressure: cpuPressure(), load: os.loadavg() },
    root: argv.root ?? 'synthetic', shape, generateMs, runs: argv.runs, results: rows,
  };
  process.stdout.write(`store: ${shape.images} images, ${shape.layers} layers, ${shape.containers} containers (${shape.driver})${generateMs ? `, written in ${f1(generateMs / 1000)} s` : ''}\n`);
  process.stdout.write(`host: ${os.cpus().length} CPUs, load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}, ${cpuPressure()}\n\n`);
  process.stdout.write(`${'what'.padEnd(32)} ${'first ms'.padStart(9)} ${'median ms'.padStart(10)} ${'min ms'.padStart(8)} ${'cpu ms'.padStart(8)}  goal\n`);
  for (const r of rows) {
    process.stdout.write(`${r.name.padEnd(32)} ${f1(r.firstMs).padStart(9)} ${f1(r.medianMs).padStart(10)} ${f1(r.minMs).padStart(8)} ${f1(r.cpuMedianMs).padStart(8)}  ${r.goalMs === null ? '' : `< ${r.goalMs} ms: ${r.meets ? 'met' : 'NOT met'}`}\n`);
  }
  fs.mkdirSync(path.join(repo, 'bench', 'out'), { recursive: true });
  fs.writeFileSync(path.join(repo, 'bench', 'out', 'inspect.json'), JSON.stringify(out, null, 2) + '\n');
  if (argv.keep && scratch) process.stdout.write(`\nkept: ${root}\n`);
} finally {
  cleanup();
}
