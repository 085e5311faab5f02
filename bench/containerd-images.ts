// npm run bench:containerd [-- --images 1000 --runs 7 --keep | --root DIR]   (root: containerd unpacks with overlayfs)
//
// `strata images` on a containerd image store of 1,000 images (issue 14's
// goal: < 0.5 s). The store is made by containerd itself: one `ctr images
// import` of a docker-archive holding N images (each its own config and
// manifest, all on one small shared layer, as tags of one base usually are),
// unpacked by the overlayfs snapshotter; containerd is then stopped and
// strata reads the root offline. `--root` measures an existing containerd
// root instead (a kept one, or a host's /var/lib/containerd).
//
// Measured, interleaved per round:
//   images (library)  readContainerdStore + imageRows + renderImages, in this process
//   images (CLI)      `bin/strata.js images --root …`, whole process (dist/ when current)
//   startup (CLI)     `strata version`, what the process costs before any work
// Output: a table and bench/out/containerd-images.json.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pack } from 'tar-stream';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { packLayer } from '../fixtures/layer-tar.ts';
import { imageRows, renderImages } from '../inspect/images.ts';
import { readContainerdStore } from '../layerstore/containerd/store.ts';
import { digestHex, sha256Digest } from '../layerstore/digests.ts';
import { startContainerd } from '../fixtures/containerd.ts';
import { cpuPressure, f1, goalRounds, goalTable, measureInProcess, timeProcess, type Sample } from './lib/measure.ts';

const repo = fileURLToPath(new URL('..', import.meta.url));

const argv = await yargs(hideBin(process.argv))
  .option('images', { type: 'number', default: 1000 })
  .option('runs', { type: 'number', default: 7 })
  .option('keep', { type: 'boolean', default: false, describe: 'keep the containerd root (its path is printed)' })
  .option('root', { type: 'string', describe: 'measure this containerd root instead of making one' })
  .strict()
  .parse();

/** A docker-archive of `n` images sharing one layer: N configs, one manifest.json entry each. */
async function writeManyImages(file: string, n: number): Promise<void> {
  const parts: Buffer[] = [];
  for await (const c of packLayer([{ name: 'hello.txt', content: 'hello\n', mtime: new Date(1_700_000_000_000) }])) parts.push(c as Buffer);
  const layer = Buffer.concat(parts);
  const diffId = sha256Digest(layer);
  const p = pack();
  const out = fs.createWriteStream(file);
  const done = new Promise<void>((resolve, reject) => { out.on('finish', resolve); out.on('error', reject); });
  (p as unknown as NodeJS.ReadableStream).pipe(out);
  const entry = (name: string, body: Buffer) => new Promise<void>((resolve, reject) => p.entry({ name, mode: 0o644 }, body, (e) => (e ? reject(e) : resolve())));
  await entry(`${digestHex(diffId)}/layer.tar`, layer);
  const manifest: unknown[] = [];
  for (let i = 0; i < n; i++) {
    const created = new Date(Date.UTC(2024, 0, 1) + i * 60_000).toISOString();
    const cfg = Buffer.from(JSON.stringify({
      architecture: 'amd64', os: 'linux', created, config: { Cmd: ['/hello'], Labels: { n: String(i) } },
      rootfs: { type: 'layers', diff_ids: [diffId] }, history: [{ created, created_by: `image ${i}` }],
    }));
    const name = `${digestHex(sha256Digest(cfg))}.json`;
    await entry(name, cfg);
    manifest.push({ Config: name, RepoTags: [`bench/img-${String(i).padStart(4, '0')}:latest`], Layers: [`${digestHex(diffId)}/layer.tar`] });
  }
  await entry('manifest.json', Buffer.from(JSON.stringify(manifest)));
  p.finalize();
  await done;
}

const c = argv.root === undefined ? await startContainerd() : null;
let kept = false;
const cleanup = async () => {
  if (!kept) await c?.cleanup();
  else await c?.stop();
};
process.on('SIGINT', () => void cleanup().then(() => process.exit(130)));
try {
  const t0 = performance.now();
  if (c) {
    const archive = path.join(c.dir, 'many.tar');
    await writeManyImages(archive, argv.images);
    c.ctr('--namespace', 'moby', 'images', 'import', archive);
    await c.stop();
  }
  const generateMs = c ? performance.now() - t0 : null;
  const root = c?.root ?? argv.root!;
  const first = readContainerdStore(root);
  const shape = { images: first.images.size, names: first.containerd.ns.images.length, blobs: first.containerd.ns.blobs.size, snapshots: first.containerd.ns.snapshots.get('overlayfs')?.size ?? 0 };
  if (c && shape.names !== argv.images) throw new Error(`containerd holds ${shape.names} images, expected ${argv.images}`);

  const cli = (args: string[]) => timeProcess([process.execPath, path.join(repo, 'bin', 'strata.js'), ...args]);
  const variants: Record<string, () => Promise<Sample> | Sample> = {
    'images (library)': () => measureInProcess(async () => {
      const m = readContainerdStore(root);
      renderImages(m, imageRows(m));
    }),
    'images (CLI)': () => cli(['images', '--root', root]),
    'startup (CLI: strata version)': () => cli(['version']),
  };
  const goals: Record<string, number> = { 'images (library)': 500, 'images (CLI)': 500 };
  const rows = await goalRounds(variants, argv.runs, goals);
  const out = {
    date: new Date().toISOString(), host: { cpus: os.cpus().length, kernel: os.release(), node: process.version, cpuPressure: cpuPressure(), load: os.loadavg() },
    shape, generateMs, runs: argv.runs, results: rows,
  };
  process.stdout.write(`containerd store: ${shape.names} images, ${shape.blobs} blobs, ${shape.snapshots} snapshots, ${generateMs === null ? `(${root})` : `made by ctr import in ${f1(generateMs / 1000)} s`}\n`);
  process.stdout.write(`host: ${os.cpus().length} CPUs, load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}, ${cpuPressure()}\n\n`);
  process.stdout.write(goalTable(rows));
  fs.mkdirSync(path.join(repo, 'bench', 'out'), { recursive: true });
  fs.writeFileSync(path.join(repo, 'bench', 'out', 'containerd-images.json'), JSON.stringify(out, null, 2) + '\n');
  if (argv.keep && c) {
    kept = true;
    process.stdout.write(`\nkept: ${root} (remove ${c.dir} when done)\n`);
  }
} finally {
  await cleanup();
}
