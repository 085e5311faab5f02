// The store fuzzer's child (run by test/inspect/store-fuzz.test.ts, which
// bounds its time): build one fixture store, then per case damage a working
// copy (store-mutations.ts), run every reader through the library API —
// images -a (+ tree), history, inspect, diff CONTAINER, diff IMAGE IMAGE,
// df -v, verify — and check that each ends with a result or a clean one-line
// error, that every problem names a path inside the root, and that the store
// is unchanged (mtime/ctime/atime of every entry, atimes set back first so a
// read without O_NOATIME would show; treeManifest every fifth case). One JSON line
// per case on stdout; the last line carries the peak RSS.
//
//   node --import tsx test/helpers/store-fuzz-runner.ts <kind> <seed> <cases> <workdir> [only-case|''] [budget-ms]
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { buffer } from 'node:stream/consumers';
import * as zlib from 'node:zlib';
import { treeManifest, manifestDiff } from '../../archive/digest.ts';
import { writeDocker19Store } from '../../fixtures/docker19-store.ts';
import { packLayer } from '../../fixtures/layer-tar.ts';
import { writeLegacyStore } from '../../fixtures/legacy-store.ts';
import { sampleStoreSpec, writeModernStore } from '../../fixtures/modern-store.ts';
import { writeRegistryV1Store } from '../../fixtures/registry-v1-store.ts';
import { describe } from '../../inspect/describe.ts';
import { diskUsage, renderDf } from '../../inspect/df.ts';
import { containerChanges, diffImages, renderChanges, renderImageDiff } from '../../inspect/diff.ts';
import { imageHistory, renderHistory } from '../../inspect/history.ts';
import { imageRows, imageTree, renderImageTree, renderImages } from '../../inspect/images.ts';
import type { StoreModel } from '../../layerstore/model.ts';
import { openStore } from '../../layerstore/store.ts';
import { renderVerify, verifyStore } from '../../inspect/verify.ts';
import { candidates, mutate, restore, rng, statSnapshot } from './store-mutations.ts';

export type StoreKind = 'modern-overlay2' | 'modern-vfs' | 'docker19' | 'legacy' | 'registry-v1';

export async function writeFixture(kind: StoreKind, root: string): Promise<void> {
  switch (kind) {
    case 'modern-overlay2': await writeModernStore(root, 'overlay2', sampleStoreSpec()); break;
    case 'modern-vfs': await writeModernStore(root, 'vfs', sampleStoreSpec()); break;
    case 'docker19': await writeDocker19Store(root); break;
    case 'legacy': await writeLegacyStore(root, 'built'); break;
    case 'registry-v1': await writeRegistryV1Store(root); await shrinkRegistryBlobs(root); break;
  }
}

/**
 * The registry fixture's blobs hold 830 MB of zeros, which every verify would
 * decompress: each is replaced by a one-file layer, its json Size and
 * _checksum updated to match, so the tree stays clean and a case takes
 * milliseconds.
 */
async function shrinkRegistryBlobs(root: string): Promise<void> {
  for (const id of fs.readdirSync(path.join(root, 'images'))) {
    const dir = path.join(root, 'images', id);
    const note = `layer of ${id}\n`;
    const blob = zlib.gzipSync(await buffer(packLayer([{ name: `etc/strata-layer-${id.slice(0, 12)}`, content: note, mtime: new Date(0) }])));
    fs.writeFileSync(path.join(dir, 'layer'), blob);
    const json = JSON.parse(fs.readFileSync(path.join(dir, 'json'), 'utf8')) as Record<string, unknown>;
    json.Size = Buffer.byteLength(note);
    const jsonBytes = Buffer.from(JSON.stringify(json));
    fs.writeFileSync(path.join(dir, 'json'), jsonBytes);
    fs.writeFileSync(path.join(dir, '_checksum'), `sha256:${createHash('sha256').update(jsonBytes).update('\n').update(blob).digest('hex')}`);
  }
}

/** A programming error escaping a reader (not a clean report of damage). */
function isCrash(e: unknown): boolean {
  if (!(e instanceof Error)) return true;
  if (e instanceof TypeError || e instanceof RangeError || e instanceof ReferenceError || e instanceof SyntaxError) return true;
  return e.message === '' || e.message.includes('\n');
}

interface CaseResult {
  case: number;
  seed: number;
  mutations: string[];
  ms: number;
  /** per command: 'ok' or the error's message */
  outcomes: Record<string, string>;
  /** what broke the rules: crashes, problems not naming a path in the root, a written store */
  bad: string[];
  problems: number;
}

async function runReaders(root: string, bad: string[]): Promise<{ outcomes: Record<string, string>; problems: number; errors: string[] }> {
  const outcomes: Record<string, string> = {};
  let problems = 0;
  const errors: string[] = [];
  const step = async (name: string, fn: () => unknown) => {
    try {
      await fn();
      outcomes[name] = 'ok';
    } catch (e) {
      outcomes[name] = (e as Error)?.message ?? String(e);
      if (isCrash(e)) bad.push(`${name} crashed: ${(e as Error)?.stack ?? String(e)}`);
    }
  };
  let model: StoreModel | null = null;
  await step('open', async () => (model = await openStore(root)));
  if (model === null) return { outcomes, problems, errors };
  const m: StoreModel = model;
  const now = new Date('2024-01-01T00:00:00Z');
  await step('images', () => renderImages(m, imageRows(m, { all: true, now }), { now }) + renderImageTree(m, imageTree(m)));
  const ids = [...m.images.keys()].sort();
  for (const id of ids.slice(0, 3)) await step(`history ${id.slice(0, 19)}`, () => renderHistory(m, imageHistory(m, id), { now }));
  for (const ref of [ids[0], m.containers[0]?.id, [...m.layers.keys()][0]].filter((x): x is string => !!x)) {
    await step(`inspect ${ref.slice(0, 19)}`, () => JSON.stringify(describe(m, ref)));
  }
  for (const c of m.containers) await step(`diff ${c.id.slice(0, 12)}`, async () => renderChanges(await containerChanges(m, c.id)));
  if (ids.length >= 2) await step('diff images', async () => renderImageDiff(await diffImages(m, ids[0], ids[ids.length - 1])));
  await step('df', async () => renderDf(await diskUsage(m), true, now));
  await step('verify', async () => {
    const r = await verifyStore(await openStore(root));
    problems = r.problems.length;
    errors.push(...r.problems.filter((p) => p.severity === 'error').map((p) => `${p.path}: ${p.message}`));
    for (const p of r.problems) {
      if (!path.isAbsolute(p.path) || !(p.path === root || p.path.startsWith(root + '/'))) bad.push(`problem names no path in the root: ${p.path}: ${p.message}`);
      if (p.message.includes('\n')) bad.push(`problem message spans lines: ${p.path}: ${JSON.stringify(p.message)}`);
    }
    return renderVerify(r);
  });
  return { outcomes, problems, errors };
}

/** Files bigger than this are left out of the manifest (hashing them per case costs too much); statSnapshot still covers them. */
const MANIFEST_FILE_CAP = 1 << 20;

async function manifest(root: string): Promise<string[]> {
  return treeManifest(root, {
    ignore: (rel) => {
      const st = fs.lstatSync(Buffer.concat([Buffer.from(root, 'latin1'), Buffer.from(rel, 'latin1')]), { throwIfNoEntry: false });
      return st !== undefined && st.isFile() && st.size > MANIFEST_FILE_CAP;
    },
  });
}

const OLD_ATIME = 1_000_000_000_123_456_789n; // 2001, with ns

async function main(): Promise<void> {
  const [kind, seedArg, casesArg, work, only, budgetArg] = process.argv.slice(2) as [StoreKind, string, string, string, string | undefined, string | undefined];
  const seed = Number(seedArg);
  const base = path.join(work, 'base');
  const root = path.join(work, 'root');
  await writeFixture(kind, base);
  // cp -a keeps owners, xattrs and devices as the fixtures made them
  execFileSync('cp', ['-a', base, root]);
  const c = candidates(root);
  const cases = Number(casesArg);
  // the undamaged store first: it must read clean, or the cases prove nothing
  const baseBad: string[] = [];
  const baseline = await runReaders(root, baseBad);
  process.stdout.write(JSON.stringify({ baseline: true, errors: baseline.errors, outcomes: baseline.outcomes, bad: baseBad }) + '\n');
  // no new case once the budget (ms, counted from here) is spent: the cases run are a prefix of the seeded sequence
  const deadline = budgetArg ? Date.now() + Number(budgetArg) : Infinity;
  let peakRss = process.memoryUsage().rss;
  for (let i = 0; i < cases; i++) {
    if (only !== undefined && only !== '' && Number(only) !== i) continue;
    if (Date.now() > deadline) break;
    const caseSeed = (seed + i * 7919) >>> 0;
    const r = rng(caseSeed);
    const { done, touched } = mutate(root, c, r);
    const bad: string[] = [];
    // ctime moves on any write to an entry, data or metadata, so the stat
    // snapshots alone catch a reader that writes; the manifest (content,
    // xattrs), every few cases, shows what it wrote
    const withManifest = i % 5 === 0;
    const before = withManifest ? await manifest(root) : [];
    const statsBefore = statSnapshot(root, OLD_ATIME);
    const t0 = Date.now();
    const { outcomes, problems } = await runReaders(root, bad);
    const ms = Date.now() - t0;
    const statsAfter = statSnapshot(root);
    for (const [k, v] of statsBefore) if (statsAfter.get(k) !== v) bad.push(`store changed by a reader: ${k}: ${v} → ${statsAfter.get(k) ?? '(gone)'}`);
    for (const k of statsAfter.keys()) if (!statsBefore.has(k)) bad.push(`store changed by a reader: ${k} is new`);
    if (withManifest) {
      const d = manifestDiff(before, await manifest(root));
      if (d) bad.push(`store manifest changed:\n${d}`);
    }
    restore(root, base, touched);
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
    const res: CaseResult = { case: i, seed: caseSeed, mutations: done, ms, outcomes, bad, problems };
    process.stdout.write(JSON.stringify(res) + '\n');
  }
  const hwm = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  process.stdout.write(JSON.stringify({ done: true, peakRss: hwm ? Number(hwm[1]) * 1024 : peakRss }) + '\n');
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname)) {
  await main();
}
