// npx tsx bench/aufs-reads.ts [--layers 20] [--files 200] [--kib 64] [--runs 5]   (root; data on /dev/shm)
//
// What reading through an aufs stack costs where the kernel has no aufs: the
// same 20-layer stack (each layer adds `files` files of `kib` KiB; the base's
// are the ones read) built through strata's aufs driver (the FUSE union,
// fuse-overlayfs) and through overlay2 (the kernel's overlayfs), then, per
// round and driver, the top layer mounted afresh (get) and
//   first read   open+read of one base file right after the mount: the
//                lookup through every lower, the union's first-touch cost
//   throughput   every base file read whole, MB/s (a second pass: warm union)
// Rounds alternate the drivers so drift on a shared host hits both alike;
// medians are printed. Everything is removed at the end.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import type { Driver } from '../drivers/driver.ts';
import { init as aufsInit } from '../drivers/aufs/aufs.ts';
import { init as overlay2Init } from '../drivers/overlay2/overlay2.ts';

const { values } = parseArgs({ options: { layers: { type: 'string', default: '20' }, files: { type: 'string', default: '200' }, kib: { type: 'string', default: '64' }, runs: { type: 'string', default: '5' } } });
const LAYERS = Number(values.layers);
const FILES = Number(values.files);
const KIB = Number(values.kib);
const RUNS = Number(values.runs);

async function buildStack(d: Driver): Promise<string> {
  let parent: string | null = null;
  for (let i = 0; i < LAYERS; i++) {
    const id = `layer-${i}`;
    await d.create(id, parent);
    const root = await d.get(id);
    const dir = path.join(root, `l${i}`);
    fs.mkdirSync(dir);
    for (let f = 0; f < FILES; f++) fs.writeFileSync(path.join(dir, `f${f}`), Buffer.alloc(KIB * 1024, (i * 31 + f) & 0xff));
    await d.put(id);
    parent = id;
  }
  return parent!;
}

function readAll(dir: string): number {
  let bytes = 0;
  for (const n of fs.readdirSync(dir)) bytes += fs.readFileSync(path.join(dir, n)).length;
  return bytes;
}

interface Sample { firstMs: number; coldMBs: number; warmMBs: number }

async function round(d: Driver, top: string): Promise<Sample> {
  const root = await d.get(top);
  try {
    const base = path.join(root, 'l0');
    let t = process.hrtime.bigint();
    fs.readFileSync(path.join(base, 'f0'));
    const firstMs = Number(process.hrtime.bigint() - t) / 1e6;
    t = process.hrtime.bigint();
    const cold = readAll(base);
    const coldS = Number(process.hrtime.bigint() - t) / 1e9;
    t = process.hrtime.bigint();
    const warm = readAll(base);
    const warmS = Number(process.hrtime.bigint() - t) / 1e9;
    return { firstMs, coldMBs: cold / 1e6 / coldS, warmMBs: warm / 1e6 / warmS };
  } finally {
    await d.put(top);
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  const work = fs.mkdtempSync('/dev/shm/strata-aufs-bench-');
  const drivers: { name: string; d: Driver; top: string; samples: Sample[] }[] = [];
  try {
    for (const [name, make] of [['aufs (fuse-overlayfs)', aufsInit], ['overlay2 (kernel)', overlay2Init]] as const) {
      const d = await make(path.join(work, name.split(' ')[0]), []);
      drivers.push({ name, d, top: await buildStack(d), samples: [] });
    }
    for (let r = 0; r < RUNS; r++) {
      for (const x of r % 2 ? [...drivers].reverse() : drivers) x.samples.push(await round(x.d, x.top));
    }
    console.log(`${LAYERS} layers, ${FILES} files × ${KIB} KiB read from the base through the top; ${RUNS} rounds, medians`);
    console.log('driver                  first read ms   read MB/s (after mount)   read MB/s (warm)');
    for (const x of drivers) {
      const s = x.samples;
      console.log(`${x.name.padEnd(24)}${median(s.map((v) => v.firstMs)).toFixed(3).padStart(10)}${median(s.map((v) => v.coldMBs)).toFixed(0).padStart(24)}${median(s.map((v) => v.warmMBs)).toFixed(0).padStart(19)}`);
    }
  } finally {
    for (const x of drivers) await x.d.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

await main();
