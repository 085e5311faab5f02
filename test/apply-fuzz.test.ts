// Issue 8's apply fuzzer: thousands of seeded hostile layer tars (see
// test/helpers/hostile-tar.ts) applied in every whiteout format into a layer
// that sits beside a sentinel tree. Each case must end within its bound with
// success or a clean ApplyError naming the entry, and leave the sentinel
// (contents, modes, owners, xattrs, times), the fd table and the layer's aufs
// temp dir as they were. STRATA_FUZZ_SEED replays a run; a failure prints the
// seed, the case and the path of its tar.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { asRoot } from './helpers/require.ts';
import { tempDir } from './helpers/tar.ts';
import { makeSentinel, runApplyFuzz } from './helpers/apply-fuzz-worker.ts';

const SEED = Number(process.env.STRATA_FUZZ_SEED ?? 0x5eed8);
const CASES = Number(process.env.STRATA_FUZZ_CASES ?? 3000);

asRoot({ serial: true })(`apply fuzz: ${CASES} hostile tars (seed ${SEED}) in the aufs, overlay and flat forms`, async (t) => {
  t.timeout(85_000);
  const { dir: top, cleanup } = tempDir('strata-apply-fuzz-');
  t.teardown(cleanup);
  fs.mkdirSync(path.join(top, 'layer'));
  makeSentinel(path.join(top, 'victim'));
  const r = await runApplyFuzz({ seed: SEED, cases: CASES, formats: ['aufs', 'overlay', 'none'], top, caseMs: 3000 });
  t.log(`seed ${SEED}: ${r.cases} tars, ${r.ok} applied, ${r.refused} refused with a clean error, ${r.ms} ms`);
  t.is(r.ok + r.refused, CASES);
  // the generator must reach both outcomes, or it tests little
  t.true(r.ok > CASES / 10 && r.refused > CASES / 10, `applied ${r.ok}, refused ${r.refused}`);
});
