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
import { cpuPressure, f1, goalRounds, goalTable, measureInProcess, timeProcess, type Sample } from './lib/measure.ts';

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
  const first = await openStore(root);
  const shape = { images: first.images.size, layers: first.layers.size, containers: first.containers.length, driver: first.driver };

  // the strata command as installed: bin/strata.js runs dist/ when it is current (npm run build)
  const cli = (args: string[]) => timeProcess([process.execPath, path.join(repo, 'bin', 'strata.js'), ...args]);
  const variants: Record<string, () => Promise<Sample> | Sample> = {
    'images (library)': () => measureInProcess(async () => {
      const m = await openStore(root);
      renderImages(m, imageRows(m));
    }),
    'df -v (library)': () => measureInProcess(async () => {
      const m = await openStore(root);
      renderDf(await diskUsage(m), true);
    }),
    'images (CLI)': () => cli(['images', '--root', root]),
    'df -v (CLI)': () => cli(['df', '-v', '--root', root]),
    'startup (CLI: strata version)': () => cli(['version']),
  };
  const goals: Record<string, number> = { 'images (library)': 500, 'df -v (library)': 2000, 'images (CLI)': 500, 'df -v (CLI)': 2000 };
  const rows = await goalRounds(variants, argv.runs, goals);
  const out = {
    date: new Date().toISOString(), host: { cpus: os.cpus().length, kernel: os.release(), node: process.version, cpuPressure: cpuPressure(), load: os.loadavg() },
    root: argv.root ?? 'synthetic', shape, generateMs, runs: argv.runs, results: rows,
  };
  process.stdout.write(`store: ${shape.images} images, ${shape.layers} layers, ${shape.containers} containers (${shape.driver})${generateMs ? `, written in ${f1(generateMs / 1000)} s` : ''}\n`);
  process.stdout.write(`host: ${os.cpus().length} CPUs, load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}, ${cpuPressure()}\n\n`);
  process.stdout.write(goalTable(rows));
  fs.mkdirSync(path.join(repo, 'bench', 'out'), { recursive: true });
  fs.writeFileSync(path.join(repo, 'bench', 'out', 'inspect.json'), JSON.stringify(out, null, 2) + '\n');
  if (argv.keep && scratch) process.stdout.write(`\nkept: ${root}\n`);
} finally {
  cleanup();
}
