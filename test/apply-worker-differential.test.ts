// The apply worker (archive/apply-offload.ts) creating files into an empty
// layer must give, on any tar, what the in-thread apply gives: the fuzzer's
// seeded hostile tars (names reused as files, dirs, symlinks, hardlinks and
// whiteouts, reaching through each other) applied both ways in every
// whiteout format, compared by tree manifest and by outcome (the same error
// line, naming the same entry), with no fd left open and the sentinel
// outside untouched. STRATA_FUZZ_SEED replays a run. Directory mtimes are
// not compared (a missing parent's is the time it was made), and times that
// are "now" in both are alike.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { applyLayer, applyLayerFile } from '../archive/apply.ts';
import { treeManifest, manifestDiff } from '../archive/digest.ts';
import type { WhiteoutFormat } from '../archive/types.ts';
import { asRoot } from './helpers/require.ts';
import { tempDir } from './helpers/tar.ts';
import { makeSentinel } from './helpers/apply-fuzz-worker.ts';
import { hostileTar } from './helpers/hostile-tar.ts';
import { Rng } from './helpers/random-layer-ops.ts';
import { fdsUnder } from './helpers/fds.ts';
import { forceApplyWorker } from './helpers/apply-worker.ts';

const SEED = Number(process.env.STRATA_FUZZ_SEED ?? 0xd1ff);
const CASES = 1200;
const FORMATS: WhiteoutFormat[] = ['aufs', 'overlay', 'none'];

/** overlay xattrs compared; security.capability not (the kernel refuses to read back some values the fuzzer sets) */
const MANIFEST = { dirMtimes: false, ignoreXattrs: (n: string) => n === 'security.capability' };

async function outcome(run: () => Promise<number>): Promise<string> {
  try {
    return `applied, size ${await run()}`;
  } catch (e) {
    return `refused: ${(e as Error).message}`;
  }
}

/**
 * Manifest lines with the times this case set to "now" (a file changed after
 * its times were set, by a later entry) written as `now`: the two applies ran
 * at different instants. The fuzzer's header times fall in these seconds with a
 * chance of a few in a billion.
 */
function nowAsNow(lines: string[], since: number): string[] {
  const until = Math.ceil(Date.now() / 1000);
  return lines.map((l) => l.replace(/mtime=(\d+)\.\d+/, (m, sec: string) => (Number(sec) >= since && Number(sec) <= until ? 'mtime=now' : m)));
}

function emptyDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir);
}

asRoot({ serial: true })(`apply worker vs in-thread: ${CASES} hostile tars (seed ${SEED}), the same tree and the same outcome`, async (t) => {
  t.timeout(120_000);
  const { dir: top, cleanup } = tempDir('strata-apply-diff-');
  t.teardown(cleanup);
  const victim = path.join(top, 'victim');
  makeSentinel(victim);
  const before = await treeManifest(victim);
  const inThread = path.join(top, 'in-thread');
  const byWorker = path.join(top, 'by-worker');
  const tarFile = path.join(top, 'layer.tar');
  forceApplyWorker(t);
  const rng = new Rng(SEED);
  let applied = 0;
  for (let i = 0; i < CASES; i++) {
    const format = FORMATS[i % FORMATS.length];
    const { tar } = hostileTar(rng, victim, top);
    fs.writeFileSync(tarFile, tar);
    emptyDir(inThread);
    emptyDir(byWorker);
    // the kernel stamps files from its coarse clock, which trails Date.now() by up to a tick:
    // a file made just after a second began here can carry the second before
    const t0 = Math.floor(Date.now() / 1000) - 1;
    const a = await outcome(() => applyLayer(tar, inThread, { whiteouts: format })); // a Buffer: never the worker
    const b = await outcome(() => applyLayerFile(tarFile, byWorker, { whiteouts: format }));
    const where = `case ${i} (${format}, seed ${SEED})`;
    if (a !== b.replaceAll(byWorker, inThread)) {
      fs.copyFileSync(tarFile, `/tmp/strata-apply-diff-${SEED}-${i}.tar`);
      t.fail(`${where}: in-thread ${a}; by the worker ${b} (tar kept in /tmp)`);
      return;
    }
    // directory mtimes aside: those of dirs no header names (missing parents) are "now"
    const ma = nowAsNow(await treeManifest(inThread, MANIFEST), t0);
    const mb = nowAsNow(await treeManifest(byWorker, MANIFEST), t0);
    if (ma.join('\n') !== mb.join('\n')) {
      fs.copyFileSync(tarFile, `/tmp/strata-apply-diff-${SEED}-${i}.tar`);
      t.fail(`${where}: the trees differ (tar kept in /tmp)\n${manifestDiff(ma, mb)}`);
      return;
    }
    if (a.startsWith('applied')) applied++;
  }
  t.deepEqual(fdsUnder(top), [], 'no fd left open');
  t.deepEqual(await treeManifest(victim), before, 'the sentinel outside is as it was');
  t.log(`seed ${SEED}: ${CASES} tars, ${applied} applied, ${CASES - applied} refused, all alike both ways`);
  t.true(applied > CASES / 10 && applied < CASES * 0.9, `applied ${applied}`);
});
