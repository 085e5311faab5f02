// Per-layer costs of the devicemapper driver on real dm-thin (run in the VM:
// vm/run.sh node --import=tsx bench/devicemapper-costs.ts [layers]): pool + base
// device setup, create (snapshot of the parent), get (activate + mount) and put
// (unmount + deactivate), and one bare dmsetup call. Prints one JSON line.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { init } from '../drivers/devicemapper/devicemapper.ts';
import * as dm from '../drivers/devicemapper/dm.ts';

const n = Number(process.argv[2] ?? 20);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-dm-costs-'));
const ms = (t0: number) => performance.now() - t0;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
try {
  let t0 = performance.now();
  const d = await init(path.join(tmp, 'devicemapper'), ['dm.basesize=512M', 'dm.loopdatasize=8G', 'dm.loopmetadatasize=128M']);
  const setup = ms(t0);
  const create: number[] = [], get: number[] = [], put: number[] = [], call: number[] = [];
  let parent: string | null = null;
  for (let i = 0; i < n; i++) {
    const id = `layer${i}`;
    t0 = performance.now();
    await d.create(id, parent);
    create.push(ms(t0));
    t0 = performance.now();
    const dir = await d.get(id);
    get.push(ms(t0));
    fs.writeFileSync(path.join(dir, `f${i}`), 'x'.repeat(4096));
    t0 = performance.now();
    await d.put(id);
    put.push(ms(t0));
    parent = id;
  }
  const pool = d.status()[0]![1];
  for (let i = 0; i < n; i++) {
    t0 = performance.now();
    dm.status(pool);
    call.push(ms(t0));
  }
  await d.cleanup();
  const r = (x: number) => Math.round(x * 10) / 10;
  console.log(JSON.stringify({ layers: n, setupMs: r(setup), createMs: r(median(create)), getMs: r(median(get)), putMs: r(median(put)), dmsetupCallMs: r(median(call)) }));
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}
