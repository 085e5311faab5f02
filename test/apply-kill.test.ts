// Issue 8: `strata layer apply` killed with SIGKILL at seeded random points.
// The tar is hostile (dirs later swapped for symlinks to the sentinel, files
// written through them, aufs plnk links), so a kill can land between an entry
// and the work it defers. After each kill nothing outside the layer changed,
// the layer holds nothing the apply made for itself (no plnk temp dir), a
// second apply of the same tar into the partial layer succeeds, and `layer rm`
// removes it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { treeManifest, manifestDiff } from '../archive/digest.ts';
import { asRoot } from './helpers/require.ts';
import { strata } from './helpers/strata-cli.ts';
import { packTar, tempDir, type Entry } from './helpers/tar.ts';
import { makeSentinel } from './helpers/apply-fuzz-worker.ts';
import { Rng } from './helpers/random-layer-ops.ts';

const SEED = Number(process.env.STRATA_FUZZ_SEED ?? 0x6b1119);
const KILLS = 5;
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function hostileEntries(victim: string): Entry[] {
  const e: Entry[] = [{ name: '.wh..wh.plnk/1', content: 'plnk' }];
  for (let d = 0; d < 40; d++) {
    e.push({ name: `p${d}/`, type: 'directory', mtime: new Date(1e12 + d) });
    e.push({ name: `p${d}/sub/`, type: 'directory', pax: { mtime: '1600000000.5' } });
    for (let f = 0; f < 60; f++) e.push({ name: `p${d}/sub/f${f}`, content: 'x'.repeat(f * 17), mode: 0o4755, uid: 7 });
    e.push({ name: `p${d}/copy`, type: 'link', linkname: '.wh..wh.plnk/1' });
    // the parent swapped for a symlink to the sentinel, then written through (contained)
    e.push({ name: `p${d}`, type: 'symlink', linkname: victim });
    e.push({ name: `p${d}/sub/through`, content: 'contained' });
  }
  return e;
}

/** Run `strata layer apply` and SIGKILL it after `ms` (or let it finish); resolves with its exit code or signal. */
function applyAndKill(args: string[], ms: number): Promise<{ code: number | null; signal: string | null }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(repo, 'cli', 'main.ts'), ...args], { cwd: repo, stdio: 'ignore' });
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
  });
}

asRoot({ serial: true })(`layer apply killed at ${KILLS} seeded points (seed ${SEED}): nothing outside changes, apply again and rm work`, async (t) => {
  t.timeout(85_000);
  const { dir: top, cleanup } = tempDir('strata-apply-kill-');
  t.teardown(cleanup);
  const victim = path.join(top, 'victim');
  makeSentinel(victim);
  const home = path.join(top, 'vfs');
  const tarFile = path.join(top, 'hostile.tar');
  fs.writeFileSync(tarFile, await packTar(hostileEntries(victim)));
  const outside = { ignore: (rel: string) => rel === '/vfs' || rel.startsWith('/vfs/') };
  const create = (k: number) => t.is(strata(['layer', 'create', 'L', '--driver', 'vfs', '--home', home]).code, 0, `seed ${SEED} round ${k}: create`);
  create(0); // makes the home: the baseline comes after it
  const before = await treeManifest(top, outside);
  const args = ['layer', 'apply', 'L', '--driver', 'vfs', '--home', home, '--file', tarFile];
  const layerDir = path.join(home, 'dir', 'L');
  const rng = new Rng(SEED);
  let killed = 0;
  for (let k = 0; k < KILLS; k++) {
    const ms = 600 + rng.int(2400); // process start (tsx) is most of the first second
    const r = await applyAndKill(args, ms);
    if (r.signal === 'SIGKILL') killed++;
    const after = await treeManifest(top, outside);
    t.deepEqual(after, before, `seed ${SEED} round ${k} (kill after ${ms} ms): outside the layer changed:\n${manifestDiff(before, after)}`);
    if (fs.existsSync(layerDir)) {
      t.deepEqual(fs.readdirSync(layerDir).filter((n) => n.startsWith('.strata-plnk-')), [], `seed ${SEED} round ${k}: a plnk temp dir was left in the layer`);
    }
    const again = strata(args, { timeoutMs: 30_000 });
    t.is(again.code, 0, `seed ${SEED} round ${k}: apply after the kill: ${again.stderr}`);
    t.deepEqual(await treeManifest(top, outside), before, `seed ${SEED} round ${k}: the second apply changed the outside`);
    t.is(fs.readFileSync(path.join(layerDir, victim, 'sub', 'through'), 'utf8'), 'contained');
    const rm = strata(['layer', 'rm', 'L', '--driver', 'vfs', '--home', home]);
    t.is(rm.code, 0, `seed ${SEED} round ${k}: rm: ${rm.stderr}`);
    t.false(fs.existsSync(layerDir));
    if (k + 1 < KILLS) create(k + 1);
  }
  t.log(`seed ${SEED}: ${KILLS} rounds, ${killed} killed mid-run (the others had finished)`);
  t.true(killed >= 1, 'at least one kill landed while the apply ran');
});
