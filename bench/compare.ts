// compare: the sample image through the whole tar engine, with digest checks.
//
// For each on-disk whiteout format the image's layers are applied into per-layer diff
// dirs ('aufs', 'overlay') or flattened into one dir ('none'); every result is exported
// back with exportDir, the export re-applied into a fresh dir, and the two trees' digests
// must match. Two cross-checks tie the engine to other implementations: our layer size
// must equal the sum of entry sizes tar-stream reads, and (as root, with GNU tar) the
// base layer applied by us must digest like GNU tar's extraction of the same tar.
//
// Then the image goes through every storage driver this host supports (probeDrivers): each
// layer created and filled with applyDiff, diffed back with diff, and the top layer's mounted
// tree must digest like the flattened tree (directory mtimes left out: unions change them).
//
// Everything runs under one work dir, removed at the end unless `keep` is set.
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { createReadStream, createWriteStream, lstatSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pipeline } from 'node:stream/promises';
import { extract } from 'tar-stream';
import { applyLayer } from '../archive/apply.ts';
import { exportDir } from '../archive/export.ts';
import { chainIds } from '../layerstore/digests.ts';
import { treeDigest, treeManifest, manifestDiff } from '../archive/digest.ts';
import type { WhiteoutFormat } from '../archive/types.ts';
import '../drivers/all.ts';
import { getDriver, probeDrivers } from '../drivers/registry.ts';
import { makeScratch, removeStaleScratch } from '../drivers/scratch.ts';
import type { Driver } from '../drivers/driver.ts';
import { sampleLayers, REPLACED_DIR, type SampleLayer } from '../fixtures/sample-image.ts';

/** Where a tree comes from, for the `tamper` hook and for messages. */
export interface Stage {
  format: WhiteoutFormat;
  /** layer name, or 'flat' for the flattened tree */
  layer: string;
  phase: 'apply' | 'reapply' | 'gnu-tar' | 'driver';
  /** the storage driver, for phase 'driver' (the tree is its mounted top layer) */
  driver?: string;
}

export interface CompareOptions {
  /** Parent for the work dir (default: the OS temp dir). */
  parent?: string;
  /** Keep the work dir (its path is in the report). */
  keep?: boolean;
  /** The image (default: the embedded sample). */
  layers?: SampleLayer[];
  /**
   * Called with each tree after it is written and before it is digested. For tests:
   * a hook that changes a tree must make a check fail.
   */
  tamper?: (stage: Stage, dir: string) => void | Promise<void>;
}

export interface LayerRun {
  format: WhiteoutFormat;
  /** layer name; for 'none' the layer applied onto the flattened tree, 'flat' for the round trip */
  layer: string;
  /** bytes of the input tar (layer tar, or the export for 'flat') */
  tarBytes: number;
  applyMs: number;
  /** applyLayer's return: moby's size */
  size: number;
  exportMs?: number;
  exportBytes?: number;
  reapplyMs?: number;
  digest?: string;
  reapplyDigest?: string;
  /** 'yes': digests equal; 'NO' */
  match?: 'yes' | 'NO';
}

export interface Check {
  name: string;
  ok: boolean;
  detail?: string;
}

export interface DriverLayerRun {
  layer: string;
  /** Docker's chain ID of the layer, used as the driver's layer id */
  id: string;
  applyMs: number;
  /** applyDiff's return (naive path: Σ tar header sizes; native paths: the layer dir's size) */
  size: number;
  diffMs: number;
  diffBytes: number;
}

export interface DriverRun {
  driver: string;
  usable: boolean;
  /** why the driver cannot run here (probeDrivers), or the error that stopped the run */
  reason?: string;
  layers: DriverLayerRun[];
  /** digest of the mounted top layer (dirMtimes: false) */
  topDigest?: string;
  getMs?: number;
}

export interface CompareReport {
  ok: boolean;
  /** the work dir when kept, else null (it was removed) */
  workDir: string | null;
  image: { name: string; description: string; bytes: number; diffId: string; entries: number; entrySizes: number }[];
  runs: LayerRun[];
  drivers: DriverRun[];
  checks: Check[];
}

const FORMATS_PER_LAYER: WhiteoutFormat[] = ['aufs', 'overlay'];
/** `<parent>/strata-compare-<holder>-XXXXXX` while it runs (drivers/scratch.ts) */
const WORK_PREFIX = 'strata-compare';

/**
 * Digest options for comparing a tree with its own re-apply: everything except the root dir's
 * own metadata, including trusted.overlay.* xattrs (the opaque marker is what is being checked).
 */
const DIGEST = { dirMtimes: true, rootMetadata: false, ignoreXattrs: () => false };

export async function compareSample(opts: CompareOptions = {}): Promise<CompareReport> {
  const layers = opts.layers ?? sampleLayers();
  // the work dir is named after its holder: one a killed compare left (mounts in it
  // included) is removed here; a kept one is renamed untagged at the end, and stays
  const parent = opts.parent ?? tmpdir();
  removeStaleScratch(parent, [WORK_PREFIX], { untagged: false });
  let work = makeScratch(parent, WORK_PREFIX);
  const report: CompareReport = { ok: false, workDir: opts.keep ? work : null, image: [], runs: [], drivers: [], checks: [] };
  const check = (name: string, ok: boolean, detail?: string) => report.checks.push(detail === undefined ? { name, ok } : { name, ok, detail });
  /** Run one step; a throw becomes a failed check named after the step. */
  const step = async <T>(name: string, fn: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await fn();
    } catch (e) {
      check(name, false, e instanceof Error ? e.message : String(e));
      return undefined;
    }
  };
  const tamper = async (stage: Stage, dir: string) => {
    if (opts.tamper) await opts.tamper(stage, dir);
  };

  try {
    // The image itself, read by a different parser (tar-stream): entry count, sizes, DiffID.
    const tars: string[] = [];
    mkdirSync(join(work, 'image'));
    for (const [i, layer] of layers.entries()) {
      const path = join(work, 'image', `${i + 1}-${layer.name}.tar`);
      const info = await writeAndInspect(layer, path);
      tars.push(path);
      report.image.push({ name: layer.name, description: layer.description, ...info });
    }

    // Per-layer diff dirs in the aufs and overlay formats, each round-tripped through export.
    for (const format of FORMATS_PER_LAYER) {
      for (const [i, layer] of layers.entries()) {
        const base = join(work, format, `${i + 1}-${layer.name}`);
        const label = `${format} ${layer.name}`;
        const run = await step(`${label}: apply, export, re-apply`, () => roundTrip(tars[i], base, format, layer.name, tamper));
        if (!run) continue;
        report.runs.push(run);
        check(`${label}: applyLayer size = tar-stream entry sizes`, run.size === report.image[i].entrySizes,
          `${run.size} vs ${report.image[i].entrySizes}`);
        await digestCheck(check, `${label}: re-applied export = first apply`, join(base, 'diff'), join(base, 'reapply'), run);
      }
    }

    // The flattened tree: every layer applied in order with whiteouts removing, then round-tripped.
    const flat = join(work, 'none', 'rootfs');
    mkdirSync(flat, { recursive: true });
    let flatOk = true;
    for (const [i, layer] of layers.entries()) {
      const run = await step(`none ${layer.name}: apply onto the flattened tree`, async () => {
        const t0 = performance.now();
        const size = await applyLayer(fileStream(tars[i]), flat, { whiteouts: 'none' });
        return { format: 'none' as const, layer: layer.name, tarBytes: report.image[i].bytes, applyMs: performance.now() - t0, size };
      });
      if (!run) {
        flatOk = false;
        break;
      }
      report.runs.push(run);
      check(`none ${layer.name}: applyLayer size = tar-stream entry sizes`, run.size === report.image[i].entrySizes,
        `${run.size} vs ${report.image[i].entrySizes}`);
    }
    if (flatOk) {
      await tamper({ format: 'none', layer: 'flat', phase: 'apply' }, flat);
      const base = join(work, 'none');
      const rt = await step('none flat: export, re-apply', () => exportAndReapply(flat, base, 'none', 'flat', tamper));
      if (rt) {
        report.runs.push(rt);
        await digestCheck(check, 'none flat: re-applied export = flattened tree', flat, join(base, 'reapply'), rt);
        if (!opts.layers) {
          // What the sample's layers 2 and 3 promise, seen in the flattened tree.
          for (const gone of ['etc/motd', `${REPLACED_DIR}/changelog.gz`]) check(`none flat: whiteout removed ${gone}`, !exists(join(flat, gone)));
          check(`none flat: ${REPLACED_DIR} has its new content`, exists(join(flat, REPLACED_DIR, 'examples/dircolors.sample')));
          check('none flat: etc/passwd has the edit layer\'s content', readFileSync(join(flat, 'etc/passwd'), 'latin1').includes('\nuser:x:1000:'));
        }
      }
    }

    // Reader cross-check: the base layer, applied by us and by GNU tar (root: owners, xattrs, mknod).
    if (process.getuid?.() === 0 && hasGnuTar()) {
      await step('base: applyLayer = GNU tar -x', async () => {
        const ours = join(work, 'gnu', 'ours');
        const theirs = join(work, 'gnu', 'tar');
        mkdirSync(ours, { recursive: true });
        mkdirSync(theirs, { recursive: true });
        await applyLayer(fileStream(tars[0]), ours, { whiteouts: 'none' });
        const r = spawnSync('tar', ['--xattrs', '--xattrs-include=*', '--same-owner', '-xf', tars[0], '-C', theirs], { encoding: 'utf8' });
        if (r.status !== 0) throw new Error(`tar -xf ${tars[0]}: ${r.stderr || `exit ${r.status}`}`);
        await tamper({ format: 'none', layer: layers[0].name, phase: 'gnu-tar' }, theirs);
        await digestCheck(check, `${layers[0].name}: applyLayer = GNU tar -x (same tar)`, ours, theirs);
      });
    }

    // Every storage driver this host supports, against the flattened tree.
    if (flatOk) {
      const flatDigest = await treeDigest(flat, MERGED);
      const root = join(work, 'drivers');
      mkdirSync(root);
      const chain = chainIds(report.image.map((l) => l.diffId));
      for (const probe of await probeDrivers(root)) {
        if (!probe.usable) {
          report.drivers.push({ driver: probe.name, usable: false, reason: probe.reason, layers: [] });
          continue;
        }
        const run: DriverRun = { driver: probe.name, usable: true, layers: [] };
        report.drivers.push(run);
        await step(`driver ${probe.name}: create, applyDiff, diff, get`, async () => {
          try {
            await driverRun(await getDriver(probe.name, root), run, layers, tars, chain, tamper);
          } catch (e) {
            run.reason = e instanceof Error ? e.message : String(e);
            throw e;
          }
        });
        if (run.topDigest !== undefined) {
          check(`driver ${probe.name}: mounted top layer = flattened tree (dir mtimes aside)`, run.topDigest === flatDigest,
            run.topDigest === flatDigest ? flatDigest : `${run.topDigest} vs ${flatDigest}`);
        }
      }
      const digests = report.drivers.filter((d) => d.topDigest !== undefined);
      check('drivers: at least one usable driver ran', digests.length > 0,
        digests.length > 0 ? digests.map((d) => d.driver).join(', ') : report.drivers.map((d) => `${d.driver}: ${d.reason}`).join('; '));
      if (digests.length > 0) {
        const same = digests.every((d) => d.topDigest === digests[0].topDigest);
        check(`drivers: every driver's top layer has the same digest (${digests.map((d) => d.driver).join(', ')})`, same,
          digests.map((d) => `${d.driver} ${d.topDigest}`).join(', '));
      }
    }
  } finally {
    if (!opts.keep) rmSync(work, { recursive: true, force: true });
    else {
      const kept = mkdtempSync(join(parent, `${WORK_PREFIX}-kept-`));
      renameSync(work, kept);
      work = report.workDir = kept;
    }
  }
  report.ok = report.checks.length > 0 && report.checks.every((c) => c.ok);
  return report;
}

/** Digest options for a mounted union view: directory mtimes change under unions, the root is the mount's. */
const MERGED = { dirMtimes: false, rootMetadata: false };

/** One driver: the image's layers as a chain, each applied and diffed, then the top mounted and digested. */
async function driverRun(
  d: Driver, run: DriverRun, layers: SampleLayer[], tars: string[], chain: string[], tamper: (s: Stage, dir: string) => Promise<void>,
): Promise<void> {
  const ids = chain.map((c) => c.replace(/^sha256:/, ''));
  const created: string[] = [];
  try {
    for (const [i, layer] of layers.entries()) {
      const parent = i === 0 ? null : ids[i - 1];
      await d.create(ids[i], parent);
      created.push(ids[i]);
      let t0 = performance.now();
      const size = await d.applyDiff(ids[i], parent, fileStream(tars[i]));
      const applyMs = performance.now() - t0;
      t0 = performance.now();
      let diffBytes = 0;
      for await (const chunk of d.diff(ids[i], parent) as AsyncIterable<Buffer>) diffBytes += chunk.length;
      run.layers.push({ layer: layer.name, id: ids[i], applyMs, size, diffMs: performance.now() - t0, diffBytes });
    }
    const top = ids[layers.length - 1];
    const t0 = performance.now();
    const mounted = await d.get(top);
    run.getMs = performance.now() - t0;
    try {
      await tamper({ format: 'none', layer: layers[layers.length - 1].name, phase: 'driver', driver: d.name }, mounted);
      run.topDigest = await treeDigest(mounted, MERGED);
    } finally {
      await d.put(top);
    }
  } finally {
    // Remove top-down; a failed remove is reported (after cleanup), not swallowed.
    let removeError: unknown;
    for (const id of created.reverse()) {
      try {
        await d.remove(id);
      } catch (e) {
        removeError ??= e;
      }
    }
    await d.cleanup();
    if (removeError !== undefined) throw removeError;
  }
}

async function roundTrip(
  tar: string, base: string, format: WhiteoutFormat, layer: string, tamper: (s: Stage, d: string) => Promise<void>,
): Promise<LayerRun> {
  const diff = join(base, 'diff');
  mkdirSync(diff, { recursive: true });
  const t0 = performance.now();
  const size = await applyLayer(fileStream(tar), diff, { whiteouts: format });
  const applyMs = performance.now() - t0;
  await tamper({ format, layer, phase: 'apply' }, diff);
  const rt = await exportAndReapply(diff, base, format, layer, tamper);
  return { ...rt, tarBytes: statSync(tar).size, applyMs, size };
}

/** Export `dir` to `<base>/export.tar`, re-apply it into `<base>/reapply`. */
async function exportAndReapply(
  dir: string, base: string, format: WhiteoutFormat, layer: string, tamper: (s: Stage, d: string) => Promise<void>,
): Promise<LayerRun> {
  const tar = join(base, 'export.tar');
  let t0 = performance.now();
  await pipeline(exportDir(dir, { whiteouts: format }), createWriteStream(tar));
  const exportMs = performance.now() - t0;
  const reapply = join(base, 'reapply');
  mkdirSync(reapply, { recursive: true });
  t0 = performance.now();
  const size = await applyLayer(fileStream(tar), reapply, { whiteouts: format });
  const reapplyMs = performance.now() - t0;
  await tamper({ format, layer, phase: 'reapply' }, reapply);
  const exportBytes = statSync(tar).size;
  return { format, layer, tarBytes: exportBytes, applyMs: reapplyMs, size, exportMs, exportBytes, reapplyMs };
}

async function digestCheck(
  check: (name: string, ok: boolean, detail?: string) => void, name: string, a: string, b: string, run?: LayerRun,
): Promise<void> {
  const [da, db] = await Promise.all([treeDigest(a, DIGEST), treeDigest(b, DIGEST)]);
  if (run) {
    run.digest = da;
    run.reapplyDigest = db;
    run.match = da === db ? 'yes' : 'NO';
  }
  if (da === db) {
    check(name, true, da);
    return;
  }
  const [ma, mb] = await Promise.all([treeManifest(a, DIGEST), treeManifest(b, DIGEST)]);
  check(name, false, `${da} vs ${db}\n${manifestDiff(ma, mb)}`);
}

/** Write the layer tar to `path` and read it back with tar-stream: bytes, sha256, entries, sum of sizes. */
async function writeAndInspect(layer: SampleLayer, path: string) {
  await pipeline(layer.tar(), createWriteStream(path));
  const hash = createHash('sha256');
  let entries = 0;
  let entrySizes = 0;
  const ex = extract();
  const parsed = (async () => {
    for await (const entry of ex) {
      entries++;
      entrySizes += entry.header.size ?? 0;
      for await (const _ of entry as AsyncIterable<Buffer>) void _;
    }
  })();
  const src = fileStream(path);
  src.on('data', (c: Buffer | string) => {
    hash.update(c);
  });
  src.pipe(ex as unknown as NodeJS.WritableStream);
  await parsed;
  return { bytes: statSync(path).size, diffId: 'sha256:' + hash.digest('hex'), entries, entrySizes };
}

function fileStream(path: string) {
  return createReadStream(path, { highWaterMark: 1 << 20 });
}

function exists(p: string): boolean {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

function hasGnuTar(): boolean {
  const r = spawnSync('tar', ['--version'], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.includes('GNU tar');
}
