// Issue 8: `strata layer apply` killed with SIGKILL at seeded points: inside a
// seeded entry's body, the tar fed on stdin only up to there, so where the kill
// lands does not depend on how fast the machine is.
// The tar is hostile (dirs later swapped for symlinks to the sentinel, files
// written through them, aufs plnk links), so a kill can land between an entry
// and the work it defers. After each kill nothing outside the layer changed,
// the layer holds nothing the apply made for itself (no plnk temp dir), a
// second apply of the same tar into the partial layer succeeds, and `layer rm`
// removes it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { treeManifest, manifestDiff } from '../archive/digest.ts';
import { asRoot } from './helpers/require.ts';
import { strata, strataSpawn } from './helpers/strata-cli.ts';
import { packTar, tempDir, type Entry } from './helpers/tar.ts';
import { makeSentinel } from './helpers/apply-fuzz-worker.ts';
import { Rng } from './helpers/random-layer-ops.ts';

const SEED = Number(process.env.STRATA_FUZZ_SEED ?? 0x6b1119);
const KILLS = 5;

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

/**
 * Run `strata layer apply` on stdin, fed only `tar[0, upTo)`, and SIGKILL it
 * once `inside` (a file of the entry the cut lands in) exists: the child can
 * go no further, so the kill lands at that entry whatever the machine's speed.
 */
async function applyAndKillAt(args: string[], tar: Buffer, upTo: number, inside: string): Promise<{ signal: string | null; stderr: string }> {
  const child = strataSpawn(args);
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<string | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
  let gone = false;
  void exited.then(() => (gone = true));
  child.stdin!.on('error', () => undefined); // EPIPE if it died early: reported below
  child.stdin!.write(tar.subarray(0, upTo));
  // the real condition: the entry's file was created (nothing to wait on but the fs; polled)
  while (!gone && !fs.existsSync(inside)) await new Promise((r) => setTimeout(r, 5));
  if (!gone) child.kill('SIGKILL');
  return { signal: await exited, stderr };
}

/** Byte length of the first `n` entries in the packed tar (tar-stream encodes each entry on its own). */
async function prefixLength(entries: Entry[], n: number, full: Buffer): Promise<number> {
  const head = (await packTar(entries.slice(0, n))).subarray(0, -1024); // without the end-of-archive blocks
  if (!full.subarray(0, head.length).equals(head)) throw new Error('packTar is not entry-wise: the cut would be wrong');
  return head.length;
}

asRoot({ serial: true })(`layer apply killed at ${KILLS} seeded points (seed ${SEED}): nothing outside changes, apply again and rm work`, async (t) => {
  t.timeout(85_000);
  const { dir: top, cleanup } = tempDir('strata-apply-kill-');
  t.teardown(cleanup);
  const victim = path.join(top, 'victim');
  makeSentinel(victim);
  const home = path.join(top, 'vfs');
  const tarFile = path.join(top, 'hostile.tar');
  const entries = hostileEntries(victim);
  const tar = await packTar(entries);
  fs.writeFileSync(tarFile, tar);
  const outside = { ignore: (rel: string) => rel === '/vfs' || rel.startsWith('/vfs/') };
  const create = (k: number) => t.is(strata(['layer', 'create', 'L', '--driver', 'vfs', '--home', home]).code, 0, `seed ${SEED} round ${k}: create`);
  create(0); // makes the home: the baseline comes after it
  const before = await treeManifest(top, outside);
  const args = ['layer', 'apply', 'L', '--driver', 'vfs', '--home', home, '--file', tarFile];
  const layerDir = path.join(home, 'dir', 'L');
  const rng = new Rng(SEED);
  let killed = 0;
  for (let k = 0; k < KILLS; k++) {
    // a seeded entry p<d>/sub/f<f> (f >= 1: it has a body), cut inside its body
    const d = rng.int(40);
    const f = 1 + rng.int(59);
    const j = entries.findIndex((e) => e.name === `p${d}/sub/f${f}`);
    const upTo = (await prefixLength(entries, j, tar)) + 512 + rng.int(f * 17);
    const where = `entry ${j} (p${d}/sub/f${f}), byte ${upTo}`;
    const r = await applyAndKillAt(args.slice(0, -2), tar, upTo, path.join(layerDir, `p${d}`, 'sub', `f${f}`));
    t.is(r.signal, 'SIGKILL', `seed ${SEED} round ${k}: the apply ended before the kill at ${where}: ${r.stderr}`);
    if (r.signal === 'SIGKILL') killed++;
    const after = await treeManifest(top, outside);
    t.deepEqual(after, before, `seed ${SEED} round ${k} (killed at ${where}): outside the layer changed:\n${manifestDiff(before, after)}`);
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
  t.log(`seed ${SEED}: ${KILLS} rounds, ${killed} killed mid-apply`);
});
