// strata migrate: move a whole data root from one storage driver to another,
// offline, images and containers kept (issue 12).
//
//   plan → stage (every layer moved into R/.strata-migrate/root/<to>, each
//   checked; image/<from> copied to root/image/<to>) → switch (renames into R,
//   image/<to> last: the commit) → containers' "Driver" rewritten → done.
//
// The source home is only ever read (through its layout, never its driver), so
// a kill at any point leaves it as it was; --resume continues from the
// journal, --rollback undoes whatever was done (journal.ts).
import * as fs from 'node:fs';
import * as path from 'node:path';
import '../drivers/all.ts';
import { layoutFor } from '../drivers/all.ts';
import { getDriver } from '../drivers/registry.ts';
import { holdsData } from '../drivers/layout.ts';
import { syncDir, writeFileDurable } from '../layerstore/durable.ts';
import { goJson } from '../layerstore/go-json.ts';
import { linkImageLayer, moveContainerLayer, moveImageLayer, type SourceHome } from './convert.ts';
import { Journal, lockMigration, type JournalState } from './journal.ts';
import { moveLegacyLayer, rollbackLegacy, switchLegacyContainers, writeLegacyMetadata } from './legacy.ts';
import { checkContainers, copyMetadata, readContainerConfig } from './metadata.ts';
import { MigrateError, layoutOrFail, lowersIn, planMigration, preflight, type MigrateOptions, type MigrationPlan, type PlannedLayer } from './plan.ts';
import { removeStaged } from './staged-home.ts';

export { planMigration, MigrateError, type MigrateOptions, type MigrationPlan };

export type ProgressEvent =
  | { event: 'plan'; layers: number; containers: number; bytes: number }
  | { event: 'layer'; index: number; total: number; id: string; kind: PlannedLayer['kind']; bytes: number; skipped: boolean }
  | { event: 'switch'; step: string }
  | { event: 'done'; from: string; to: string }
  | { event: 'rollback'; step: string };

export interface MigrationResult {
  action: 'migrated' | 'dry-run' | 'rolled-back';
  plan: MigrationPlan | null;
  layersMoved: number;
  bytes: number;
  seconds: number;
}

/**
 * A test's stop point: STRATA_MIGRATE_CRASH_AT=<step> SIGKILLs this process
 * there (a real kill, nothing cleaned); STRATA_MIGRATE_PAUSE_AT=<step> writes
 * a byte to fd 3 and blocks until one can be read from fd 4 (the test changes
 * the world meanwhile: fills the disk).
 */
function crashPoint(step: string): void {
  if (process.env.STRATA_MIGRATE_CRASH_AT === step) process.kill(process.pid, 'SIGKILL');
  if (process.env.STRATA_MIGRATE_PAUSE_AT === step) {
    fs.writeSync(3, 'p');
    fs.readSync(4, Buffer.alloc(1));
  }
}

/** Run (or with dryRun only plan, or with rollback undo) the migration `opts` describes. */
export async function runMigration(opts: MigrateOptions, onProgress: (e: ProgressEvent) => void = () => {}): Promise<MigrationResult> {
  const lock = lockMigration(path.resolve(opts.root));
  try {
    return await runLocked(opts, onProgress);
  } finally {
    lock.release();
  }
}

async function runLocked(opts: MigrateOptions, onProgress: (e: ProgressEvent) => void): Promise<MigrationResult> {
  const root = path.resolve(opts.root);
  const t0 = performance.now();
  const journal = new Journal(root);
  if (opts.rollback) {
    await rollback(journal, onProgress);
    return { action: 'rolled-back', plan: null, layersMoved: 0, bytes: 0, seconds: (performance.now() - t0) / 1000 };
  }
  let state: JournalState | null = journal.exists() ? journal.read() : null;
  if (state && !opts.resume && state.phase !== 'done') throw new MigrateError(`${journal.dir}: a migration ${state.from} → ${state.to} was started here; run with --resume or --rollback`);
  if (state && opts.resume && state.to !== opts.to) throw new MigrateError(`${journal.dir}: the started migration goes to ${state.to}, not ${opts.to}`);
  if (state?.phase === 'done') {
    // a finished run keeps its staging area (the configs' old inodes) for --rollback: never dropped by another run
    if (state.to === opts.to) return finish(journal, state, opts, null, 0, 0, t0, onProgress);
    throw new MigrateError(`${journal.dir}: holds the finished migration ${state.from} → ${state.to} (for --rollback); remove it to start another`);
  }

  if (state?.phase === 'switching') {
    await switchOver(journal, state, onProgress);
    return finish(journal, state, opts, null, 0, 0, t0, onProgress);
  }
  const plan = await planMigration({ ...opts, from: state?.from ?? opts.from });
  onProgress({ event: 'plan', layers: plan.layers.length, containers: plan.containers.length, bytes: plan.bytesToCopy });
  if (opts.dryRun) return { action: 'dry-run', plan, layersMoved: 0, bytes: 0, seconds: (performance.now() - t0) / 1000 };
  await preflight(plan, state ? journal.moved() : null);
  if (!plan.legacy) checkContainers(root, plan.from, plan.containers);
  if (!state) {
    state = { version: 1, from: plan.from, to: plan.to, phase: 'staging', targetHomeWasEmptyDir: fs.existsSync(path.join(root, plan.to)) };
    journal.create(state);
  }
  crashPoint('staging');
  const { moved, bytes } = await stage(journal, plan, onProgress);
  state = { ...state, phase: 'switching' };
  journal.write(state);
  crashPoint('staged');
  await switchOver(journal, state, onProgress);
  return finish(journal, state, opts, plan, moved, bytes, t0, onProgress);
}

/** Every layer into the staged target home, then the metadata beside it. */
async function stage(journal: Journal, plan: MigrationPlan, onProgress: (e: ProgressEvent) => void): Promise<{ moved: number; bytes: number }> {
  const srcLayout = plan.legacy ? layoutFor(plan.from)! : layoutOrFail(plan.from);
  const src: SourceHome = { layout: srcLayout, home: srcLayout.homeIn(plan.root) };
  const targetLayout = layoutOrFail(plan.to);
  const target = await getDriver(plan.to, journal.stageRoot);
  const done = journal.moved();
  let moved = 0;
  let bytes = 0;
  try {
    const lowersOf = lowersIn(plan.layers);
    for (const [i, l] of plan.layers.entries()) {
      if (done.has(l.id)) {
        if (!target.exists(l.id)) throw new MigrateError(`${journal.log}: lists ${l.kind} layer ${l.id} as moved, but the staged ${plan.to} home has no such layer; run with --rollback`);
        onProgress({ event: 'layer', index: i + 1, total: plan.layers.length, id: l.id, kind: l.kind, bytes: 0, skipped: true });
        continue;
      }
      if (target.exists(l.id)) await target.remove(l.id); // a killed run's half-moved layer
      let size = 0;
      try {
        const r = l.method === 'tar-split' ? await moveImageLayer(src, target, targetLayout, l)
          : l.method === 'v1' ? await moveLegacyLayer(src, target, targetLayout, l, journal)
            : l.method === 'link' ? await linkImageLayer(src, target, targetLayout, l)
              : await moveContainerLayer(src, target, l, lowersOf(l));
        bytes += r.tarBytes;
        size = r.size;
      } catch (e) {
        await target.remove(l.id).catch(() => undefined);
        throw e;
      }
      journal.markMoved(l.id, size);
      moved++;
      onProgress({ event: 'layer', index: i + 1, total: plan.layers.length, id: l.id, kind: l.kind, bytes, skipped: false });
      crashPoint(`layer:${i + 1}`);
    }
  } finally {
    await target.cleanup();
  }
  const sizes = journal.moved();
  if (plan.legacy) writeLegacyMetadata(journal, plan, sizes);
  else {
    copyMetadata(path.join(plan.root, 'image', plan.from), path.join(journal.stageRoot, 'image', plan.to),
      new Map(plan.layers.filter((l) => l.chainId).map((l) => [l.chainId!, sizes.get(l.id)!])));
    backupConfigs(journal, plan);
  }
  crashPoint('metadata');
  return { moved, bytes };
}

/**
 * Each container's config.v2.json kept for --rollback: a hard link to the
 * file itself (the rewrite replaces the name with a new inode, so the old one
 * stays there with its bytes, mode and times); a copy when containers/ is
 * on another file system.
 */
function backupConfigs(journal: Journal, plan: MigrationPlan): void {
  for (const c of plan.containers) {
    const dst = path.join(journal.configs, c.id);
    if (fs.existsSync(dst)) continue;
    try {
      fs.linkSync(c.configPath, dst);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
      fs.copyFileSync(c.configPath, dst);
      fs.utimesSync(dst, fs.statSync(c.configPath).atime, fs.statSync(c.configPath).mtime);
    }
  }
  syncDir(journal.configs);
}

/** Rename `from` to `to` unless that already happened (a resumed switch). */
function renameOnce(from: string, to: string): void {
  if (!fs.existsSync(from)) {
    if (fs.existsSync(to)) return;
    throw new MigrateError(`${from}: missing, and ${to} is not there either: the staging area is damaged`);
  }
  if (fs.existsSync(to)) {
    if (holdsData(to)) throw new MigrateError(`${to}: holds data; the switch would replace it`);
    fs.rmdirSync(to);
  }
  fs.mkdirSync(path.dirname(to), { recursive: true });
  fs.renameSync(from, to);
  syncDir(path.dirname(to));
  syncDir(path.dirname(from));
}

/** The switch: the home, then image/<to> (the commit), then the containers' Driver; each step idempotent. */
async function switchOver(journal: Journal, s: JournalState, onProgress: (e: ProgressEvent) => void): Promise<void> {
  onProgress({ event: 'switch', step: 'home' });
  renameOnce(path.join(journal.stageRoot, s.to), path.join(journal.root, s.to));
  crashPoint('switch:home');
  onProgress({ event: 'switch', step: 'image' });
  renameOnce(path.join(journal.stageRoot, 'image', s.to), path.join(journal.root, 'image', s.to));
  crashPoint('switch:image');
  onProgress({ event: 'switch', step: 'containers' });
  for (const id of journal.keptConfigs()) {
    rewriteDriver(path.join(journal.root, 'containers', id, 'config.v2.json'), s.from, s.to);
    crashPoint(`container:${id}`);
  }
  switchLegacyContainers(journal);
}

/** config.v2.json with "Driver": `to` (already so: left alone). */
function rewriteDriver(file: string, from: string, to: string): void {
  const doc = readContainerConfig(file);
  if (doc.Driver === to) return;
  if (doc.Driver !== from) throw new MigrateError(`${file}: "Driver" is ${JSON.stringify(doc.Driver)}, expected ${from}`);
  doc.Driver = to;
  writeFileDurable(file, goJson(doc), fs.statSync(file).mode & 0o7777);
}

async function finish(journal: Journal, s: JournalState, opts: MigrateOptions, plan: MigrationPlan | null, moved: number, bytes: number, t0: number, onProgress: (e: ProgressEvent) => void): Promise<MigrationResult> {
  // before the source can go: R must hold the switched store, whatever the journal says
  const notSwitched = journal.switchProblem(s);
  if (notSwitched) throw new MigrateError(`${journal.file}: says ${s.phase}, but ${notSwitched}; nothing was removed (run with --rollback)`);
  journal.write({ ...s, phase: 'done' });
  crashPoint('done');
  if (opts.deleteSource) {
    await removeStaged(s.from, journal.root, plan?.layers.map((l) => l.id) ?? null);
    fs.rmSync(path.join(journal.root, 'image', s.from), { recursive: true, force: true });
    fs.rmSync(journal.dir, { recursive: true, force: true });
  }
  onProgress({ event: 'done', from: s.from, to: s.to });
  return { action: 'migrated', plan, layersMoved: moved, bytes, seconds: (performance.now() - t0) / 1000 };
}

/** Undo a migration started (or finished) here: the state before it, exactly. */
async function rollback(journal: Journal, onProgress: (e: ProgressEvent) => void): Promise<void> {
  if (!journal.exists()) {
    if (fs.existsSync(journal.dir)) { fs.rmSync(journal.dir, { recursive: true, force: true }); return; } // killed before its journal
    throw new MigrateError(`${journal.root}: no migration to roll back (no ${journal.dir})`);
  }
  const s = journal.read();
  const staged = path.join(journal.stageRoot, s.to);
  const home = path.join(journal.root, s.to);
  const meta = path.join(journal.root, 'image', s.to);
  onProgress({ event: 'rollback', step: 'containers' });
  for (const id of journal.keptConfigs()) {
    // the kept inode goes back under its name (rename: atomic, its bytes, mode and mtime as they were)
    const file = path.join(journal.root, 'containers', id, 'config.v2.json');
    const kept = path.join(journal.configs, id);
    if (fs.statSync(kept).ino !== fs.lstatSync(file, { throwIfNoEntry: false })?.ino) fs.renameSync(kept, file);
    syncDir(path.dirname(file));
  }
  onProgress({ event: 'rollback', step: 'image' });
  if (s.phase !== 'staging' && fs.existsSync(meta) && !fs.existsSync(path.join(journal.stageRoot, 'image', s.to))) {
    fs.rmSync(meta, { recursive: true, force: true });
    syncDir(path.dirname(meta));
  }
  onProgress({ event: 'rollback', step: 'home' });
  if (s.phase !== 'staging' && fs.existsSync(home) && !fs.existsSync(staged)) renameOnce(home, staged);
  if (fs.existsSync(staged)) await removeStaged(s.to, journal.stageRoot, null);
  if (s.targetHomeWasEmptyDir && !fs.existsSync(home)) fs.mkdirSync(home, { mode: 0o710 });
  rollbackLegacy(journal);
  fs.rmSync(journal.dir, { recursive: true, force: true });
  syncDir(journal.root);
}

