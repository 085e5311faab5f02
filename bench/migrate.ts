// strata migrate's costs (npm run bench:migrate; not a test): aufs → overlay2
// (the hard-link fast path: its time should not grow with the bytes, so its
// sizes are 512 MiB and 3 GiB) and vfs → overlay2 (the copying path) at two
// store sizes (wall time, MB/s of store data moved, peak RSS of the migrate
// process), and `cp -a` of the same vfs home for scale.
// Stores are written by fixtures/modern-store.ts: `layers` layers of 4 × 16 MiB
// files each, plus one container.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeModernStore, type StoreSpec } from '../fixtures/modern-store.ts';
import { f1 } from './lib/measure.ts';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const T = new Date('2024-01-01T00:00:00Z');

function spec(layers: number): StoreSpec {
  return {
    images: [{
      name: 'big', tags: ['bench/big:latest'], created: T.toISOString(),
      layers: Array.from({ length: layers }, (_, i) => ({
        createdBy: `layer ${i}`,
        entries: [{ name: `l${i}`, type: 'directory' as const, mtime: T },
          ...Array.from({ length: 4 }, (_, k) => ({ name: `l${i}/f${k}`, zeros: 16 << 20, mtime: T }))],
      })),
    }],
    containers: [{ name: 'c', image: 'big', created: T.toISOString(), change: (r) => fs.writeFileSync(path.join(r, 'changed'), 'x') }],
  };
}

/** One migrate run in a child: wall seconds, tar bytes moved, peak RSS (kB). */
function migrate(root: string, to: string): { secs: number; bytes: number; rssKB: number } {
  const rssFile = path.join(os.tmpdir(), `strata-bench-rss-${process.pid}`);
  const t0 = performance.now();
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--import', path.join(repo, 'test/helpers/peak-rss.mjs'), path.join(repo, 'cli/main.ts'),
    'migrate', '--root', root, '--to', to, '--json'], { encoding: 'utf8', env: { ...process.env, STRATA_PEAK_RSS_FILE: rssFile }, maxBuffer: 64 << 20 });
  const secs = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`migrate failed: ${r.stderr}`);
  const result = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
  const rssKB = Number(fs.readFileSync(rssFile, 'utf8'));
  fs.rmSync(rssFile, { force: true });
  return { secs, bytes: result.bytes, rssKB };
}

function cpA(src: string, dst: string): number {
  const t0 = performance.now();
  const r = spawnSync('cp', ['-a', src, dst]);
  if (r.status !== 0) throw new Error(`cp -a failed: ${r.stderr}`);
  spawnSync('sync');
  return (performance.now() - t0) / 1000;
}

const base = fs.mkdtempSync(path.join(process.env.BENCH_DIR ?? '/var/tmp', 'strata-bench-migrate-'));
try {
  console.log('source  -> target    store    wall s   MB/s   peak RSS MB   cp -a s');
  const runs: [string, number][] = [['aufs', 8], ['aufs', 48], ['vfs', 2], ['vfs', 8]];
  for (const [from, layers] of runs) {
    const mb = layers * 64;
    const root = path.join(base, `${from}-${layers}`);
    await writeModernStore(root, from, spec(layers));
    spawnSync('sync');
    const cp = from === 'vfs' ? f1(cpA(path.join(root, 'vfs'), path.join(base, `cp-${layers}`))) : '-';
    const m = migrate(root, 'overlay2');
    console.log(`${from.padEnd(7)} -> overlay2  ${String(mb).padStart(4)} MiB  ${f1(m.secs).padStart(6)}  ${f1((mb * 1048576) / 1e6 / m.secs).padStart(6)}  ${f1(m.rssKB / 1024).padStart(11)}   ${cp}`);
    fs.rmSync(root, { recursive: true, force: true });
    fs.rmSync(path.join(base, `cp-${layers}`), { recursive: true, force: true });
  }
} finally {
  fs.rmSync(base, { recursive: true, force: true });
}
