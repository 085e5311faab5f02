// The store fuzzer (issue 8), seeded and bounded: hundreds of damaged copies
// of the fixture stores — modern overlay2 and vfs (fixtures/modern-store.ts),
// Docker 1.9 on aufs (docker19-store.ts), Docker 0.6 (legacy-store.ts), a
// registry v1 tree (registry-v1-store.ts) — each with one to three entries
// replaced (store-mutations.ts), every reader run on each through the library
// API in a child (store-fuzz-runner.ts; a case that does not end within its
// bound is killed and named with its seed), plus a sample through the real
// CLI for exit codes, one-line stderr and peak RSS.
//
// Replay one case: node --import tsx test/helpers/store-fuzz-runner.ts <kind> <seed> <cases> <empty dir> <case>
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { sampleStoreSpec, writeModernStore } from '../../fixtures/modern-store.ts';
import { strataBounded } from '../helpers/bounded-cli.ts';
import { isRoot, when } from '../helpers/require.ts';
import { copyStore } from '../helpers/store-copy.ts';
import { candidates, mutate, rng } from '../helpers/store-mutations.ts';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const runner = path.join(repo, 'test', 'helpers', 'store-fuzz-runner.ts');
const SEED = 0x5eed08;
/** per kind: cases */
const PLAN: [string, number][] = [['modern-overlay2', 100], ['docker19', 50], ['modern-vfs', 30], ['legacy', 30], ['registry-v1', 30]];
/**
 * Per kind, no case starts once this much time has gone after its fixture is
 * written (the whole plan takes ~40 s on a quiet 2-core host). On a loaded
 * host fewer cases run — a prefix of each kind's seeded sequence, so still
 * replayable — and the file stays under 90 s: two runners at a time, at most
 * three kinds in a row, each its fixture (a few s) plus this budget.
 */
const KIND_BUDGET_MS = 18_000;
/** fewest cases per kind for the run to count */
const MIN_CASES = 8;
/** writing the fixture (the legacy one holds 311 MB, the registry one gzips 830 MB) */
const FIXTURE_BOUND_MS = 30_000;
/** one case: every reader on one damaged store (they take ~0.1-0.3 s) */
const CASE_BOUND_MS = 10_000;
const RUNNER_RSS_BOUND = 600 << 20;
const CLI_SAMPLE = 8;
const CLI_BOUND_MS = 20_000;
const CLI_RSS_BOUND = 400 << 20;

const rootTest = when(isRoot && fs.existsSync('/sys/module/overlay'), 'root and the overlay module (the overlay2 and aufs fixtures)');

interface KindResult { kind: string; cases: number; problems: number; failures: string[]; peakRss: number | null; ms: number }

function runKind(kind: string, cases: number): Promise<KindResult> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), `strata-fuzz-${kind}-`));
  const t0 = Date.now();
  const child = spawn(process.execPath, ['--import', 'tsx', runner, kind, String(SEED), String(cases), work, '', String(KIND_BUDGET_MS)], { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => { if (stderr.length < 8192) stderr += d; });
  const res: KindResult = { kind, cases: 0, problems: 0, failures: [], peakRss: null, ms: 0 };
  const replay = (n: number) => `(replay: node --import tsx test/helpers/store-fuzz-runner.ts ${kind} ${SEED} ${cases} <empty dir> ${n})`;
  let next = 0;
  let timer: NodeJS.Timeout;
  const arm = (ms: number) => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      res.failures.push(`${kind} case ${next} (seed ${(SEED + next * 7919) >>> 0}) did not end within ${ms} ms ${replay(next)}`);
      child.kill('SIGKILL');
    }, ms);
  };
  arm(FIXTURE_BOUND_MS);
  const rl = readline.createInterface({ input: child.stdout });
  rl.on('line', (line) => {
    const d = JSON.parse(line) as { baseline?: true; errors?: string[]; done?: true; peakRss?: number; case?: number; seed?: number; mutations?: string[]; ms?: number; bad?: string[]; problems?: number };
    if (d.baseline) {
      if (d.errors!.length || d.bad!.length) res.failures.push(`${kind}: the undamaged store does not read clean: ${[...d.errors!, ...d.bad!].slice(0, 3).join('; ')}`);
    } else if (d.done) {
      res.peakRss = d.peakRss!;
    } else {
      res.cases++;
      res.problems += d.problems!;
      next = d.case! + 1;
      const why = [...d.bad!];
      if (d.ms! > CASE_BOUND_MS) why.push(`took ${d.ms} ms`);
      if (why.length) res.failures.push(`${kind} case ${d.case} (seed ${d.seed}, ${d.mutations!.join(', ')}): ${why.join('; ').slice(0, 2000)} ${replay(d.case!)}`);
    }
    arm(CASE_BOUND_MS);
  });
  return new Promise((resolve) => {
    child.on('close', (code) => {
      clearTimeout(timer);
      res.ms = Date.now() - t0;
      if (code !== 0 && !res.failures.length) res.failures.push(`${kind}: runner exited ${code}: ${stderr.slice(0, 2000)}`);
      if (res.peakRss !== null && res.peakRss > RUNNER_RSS_BOUND) res.failures.push(`${kind}: peak RSS ${res.peakRss} bytes over ${RUNNER_RSS_BOUND}`);
      fs.rmSync(work, { recursive: true, force: true });
      resolve(res);
    });
  });
}

/** Every reader command through the CLI on a few damaged overlay2 stores: exit 0 or 1, stderr lines all "strata: …", no stack, bounded. */
async function cliSample(): Promise<{ runs: number; failures: string[] }> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-fuzz-cli-'));
  const failures: string[] = [];
  try {
    const base = path.join(tmp, 'root');
    await writeModernStore(base, 'overlay2', sampleStoreSpec());
    const commands = [['images', '-a'], ['history', 'strata/app:1.0'], ['inspect', 'strata/app:2.0', 'web'], ['diff', 'web'], ['diff', 'strata/app:1.0', 'strata/app:2.0'], ['df', '-v'], ['verify'], ['images', '--tree']];
    const c = candidates(base);
    for (let i = 0; i < CLI_SAMPLE; i++) {
      const seed = (SEED ^ 0xc11) + i;
      const r = rng(seed);
      const copy = copyStore(base);
      try {
        const { done } = mutate(copy.root, c, r);
        const args = commands[i % commands.length];
        const res = await strataBounded([...args, '--root', copy.root], CLI_BOUND_MS);
        const what = `CLI ${args.join(' ')} (seed ${seed}, ${done.join(', ')})`;
        if (res.timedOut) failures.push(`${what}: still running after ${CLI_BOUND_MS} ms`);
        else if (res.code !== 0 && res.code !== 1) failures.push(`${what}: exit ${res.code}: ${res.stderr.slice(0, 500)}`);
        else if (res.stderr.includes('    at ')) failures.push(`${what}: a stack trace: ${res.stderr.slice(0, 500)}`);
        else if (res.stderr.split('\n').some((l) => l !== '' && !l.startsWith('strata: '))) failures.push(`${what}: stderr not one line per message: ${res.stderr.slice(0, 500)}`);
        else if (res.code === 1 && res.stderr === '') failures.push(`${what}: exit 1 without a message`);
        if (res.peakRss !== null && res.peakRss > CLI_RSS_BOUND) failures.push(`${what}: peak RSS ${res.peakRss}`);
      } finally {
        copy.cleanup();
      }
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return { runs: CLI_SAMPLE, failures };
}

rootTest('store fuzz: damaged stores never hang, crash, exhaust memory or get written by a reader', async (t) => {
  // hangs are caught per fixture, case and CLI run (the bounds above); this only
  // ends a run gone wrong as a whole. 88 s (2x a quiet run) failed in CI beside
  // the devicemapper VM, which keeps one of the two cores busy
  t.timeout(240_000);
  const t0 = Date.now();
  // two at a time (2 cores): the runners' queue, and the CLI sample beside them
  const queue = [...PLAN];
  const results: KindResult[] = [];
  const worker = async () => {
    for (let job = queue.shift(); job; job = queue.shift()) results.push(await runKind(job[0], job[1]));
  };
  const [, , cli] = await Promise.all([worker(), worker(), cliSample()]);
  const failures = [...results.flatMap((r) => r.failures), ...cli.failures];
  const total = results.reduce((s, r) => s + r.cases, 0);
  t.log(`seed ${SEED}: ${total} damaged stores (${results.map((r) => `${r.kind} ${r.cases} in ${r.ms} ms, peak RSS ${Math.round((r.peakRss ?? 0) / 2 ** 20)} MiB`).join('; ')}), ${results.reduce((s, r) => s + r.problems, 0)} problems reported, ${cli.runs} CLI runs; ${Date.now() - t0} ms`);
  t.deepEqual(failures, []);
  for (const r of results) t.true(r.cases >= MIN_CASES, `${r.kind}: only ${r.cases} cases within the budget`);
});
