// Moving one layer from the source home (read, never written) into the
// target driver, checked before it counts as moved:
// - image layers: the layer's original tar, reassembled from its tar-split
//   and the source's files, is hashed as it streams into the target's
//   applyDiff; it must hash to the recorded DiffID. Then the tar is
//   reassembled again from the target's files and must give the DiffID again.
// - containers' init and RW layers (no tar-split): the source's own changes
//   exported as a tar and applied; the target's changes must equal the source's.
import { createHash } from 'node:crypto';
import type { Change } from '../archive/types.ts';
import { changesDirs, changesFromDiffDir } from '../archive/changes.ts';
import { exportChanges, exportDir } from '../archive/export.ts';
import type { WhiteoutFormat } from '../archive/types.ts';
import type { Driver } from '../drivers/driver.ts';
import type { DriverLayout } from '../drivers/layout.ts';
import { assembleTar, DirFileGetter, readCheckedTarSplit, TarSplitFormatError, type FileGetter, type ProblemSink } from '../layerstore/tar-split.ts';
import { linkAufsDiff, linkedFilesProblem } from './link-layer.ts';
import { MigrateError, type PlannedLayer } from './plan.ts';

/** A driver home read in place: its layout and where it is. */
export interface SourceHome {
  layout: DriverLayout;
  home: string;
}

/** fn on the directory of `id`'s files in the source (rebuilt for the call where the layout needs it). */
export function withSourceFiles<T>(src: SourceHome, id: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const f = src.layout.filesDir(src.home, id);
  if (f.dir !== null) return fn(f.dir);
  const rebuilt = src.layout.rebuilt;
  if (!rebuilt?.applies(src.home)) throw new MigrateError(`${src.layout.name} layer ${id}: ${f.reason}`);
  return rebuilt.withFilesDir(src.home, id, fn);
}

/** An async iterable over `gen` that does not close it when its consumer stops early (the rest is still hashed). */
function unclosable<T>(gen: AsyncGenerator<T>): AsyncIterable<T> {
  return { [Symbol.asyncIterator]: () => ({ next: () => gen.next() }) };
}


/**
 * The layer's tar reassembled from `tarSplit` and `getter`'s files, checked
 * against its headers, ending at the first file that cannot be reproduced:
 * the run fails on it anyway, and a missing file the tar says is huge would
 * otherwise stream its size in zeros (into the target's disk, on a move).
 */
async function* reassembled(tarSplit: string, getter: FileGetter, problem: ProblemSink, layer: string): AsyncGenerator<Buffer> {
  let failed = false;
  const sink: ProblemSink = (p, m) => {
    failed = true;
    problem(p, m);
  };
  try {
    for await (const c of assembleTar(readCheckedTarSplit(tarSplit), getter, sink)) {
      if (failed) return;
      yield c;
    }
  } catch (e) {
    throw tarSplitErrorOf(layer, e);
  }
}

/** `e` told as `layer`'s when its tar-split cannot be read or lies (one line naming both); any other error as it is. */
export function tarSplitErrorOf(layer: string, e: unknown): unknown {
  return e instanceof TarSplitFormatError ? new MigrateError(`${layer}: ${e.message}; the source is untouched`) : e;
}

/** DiffID of a layer (layerstore's digestLayer), its tar-split checked against its headers on the way. */
export async function digestChecked(tarSplit: string, getter: FileGetter, problem: ProblemSink, layer: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of reassembled(tarSplit, getter, problem, layer)) h.update(c);
  return `sha256:${h.digest('hex')}`;
}

/** `p`, its failure (the target's applyDiff refusing an entry: "tar entry …") told as the layer's: one line naming both. */
export async function asLayerError<T>(layer: string, p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (e) {
    if (e instanceof MigrateError) throw e;
    throw new MigrateError(`${layer}: ${(e as Error).message ?? String(e)}; the source is untouched`);
  }
}

export const layerName = (l: PlannedLayer) => (l.chainId ? `layer ${l.chainId} (cache-id ${l.id})` : `${l.kind} layer ${l.id}`);

/** Bytes that went through, for progress. */
export interface Moved {
  tarBytes: number;
  /** what the target's applyDiff returned: the layer size dockerd on the target would record */
  size: number;
}

/** Move image layer `l` (it has a tar-split) from `src` into `target`'s layer `l.id`, DiffID checked twice. */
export async function moveImageLayer(src: SourceHome, target: Driver, targetLayout: DriverLayout, l: PlannedLayer): Promise<Moved> {
  if (!l.tarSplit || !l.diffId) throw new MigrateError(`${layerName(l)}: no tar-split recorded, so its tar cannot be rebuilt to check its DiffID`);
  const problems: string[] = [];
  const problem = (p: string, m: string) => void problems.push(`${p} ${m}`);
  const h = createHash('sha256');
  let tarBytes = 0;
  let size = 0;
  await withSourceFiles(src, l.id, async (dir) => {
    const chunks = (async function* () {
      for await (const c of reassembled(l.tarSplit!, new DirFileGetter(dir), problem, layerName(l))) {
        h.update(c);
        tarBytes += c.length;
        yield c;
      }
      // a file failed: the tar is cut there, and the applier told so (it must not take the cut tar for a whole one)
      if (problems.length) throw new MigrateError(`${layerName(l)}: source file ${problems[0]}; the source is untouched`);
    })();
    try {
      await target.create(l.id, l.parent);
      size = await asLayerError(layerName(l), target.applyDiff(l.id, l.parent, unclosable(chunks)));
      for await (const _ of unclosable(chunks)) { /* the tail the applier did not read (end-of-archive padding) */ }
    } finally {
      await chunks.return(undefined); // closes the tar-split and the file being read
    }
  });
  const got = `sha256:${h.digest('hex')}`;
  if (problems.length) throw new MigrateError(`${layerName(l)}: source file ${problems[0]}; the source is untouched`);
  if (got !== l.diffId) throw new MigrateError(`${layerName(l)}: the source's files give ${got}, the store records DiffID ${l.diffId}; the source is untouched`);
  const f = targetLayout.filesDir(target.home, l.id);
  if (f.dir === null) throw new MigrateError(`${layerName(l)}: the target's files cannot be read back (${f.reason})`);
  const again = await digestChecked(l.tarSplit, new DirFileGetter(f.dir), problem, layerName(l));
  if (problems.length) throw new MigrateError(`${layerName(l)}: target file ${problems[0]}`);
  if (again !== l.diffId) throw new MigrateError(`${layerName(l)}: the migrated files give ${again}, not DiffID ${l.diffId}`);
  return { tarBytes, size };
}

/**
 * Move image layer `l` by links (plan method 'link'): the target's create()
 * makes its own files (link, lower, l/, work/), then its empty diff dir takes
 * hard links of the source's; checked inode by inode against the tar-split.
 */
export async function linkImageLayer(src: SourceHome, target: Driver, targetLayout: DriverLayout, l: PlannedLayer): Promise<Moved> {
  if (!l.tarSplit || !l.diffId) throw new MigrateError(`${layerName(l)}: no tar-split recorded, so its files cannot be checked against its tar`);
  const from = src.layout.filesDir(src.home, l.id);
  if (from.dir === null) throw new MigrateError(`${layerName(l)}: ${from.reason}`);
  await target.create(l.id, l.parent);
  const to = targetLayout.filesDir(target.home, l.id);
  if (to.dir === null) throw new MigrateError(`${layerName(l)}: the target's diff dir is missing (${to.reason})`);
  linkAufsDiff(from.dir, to.dir);
  const problem = await linkedFilesProblem(l.tarSplit, from.dir, to.dir);
  if (problem) throw new MigrateError(`${layerName(l)}: ${problem}; the source is untouched`);
  return { tarBytes: 0, size: await target.diffSize(l.id, l.parent) };
}

/** The whiteout form exportDir reads a diff dir of `layout` in. */
function exportForm(layout: DriverLayout): WhiteoutFormat {
  return layout.diffFormat === 'fuse-overlayfs' ? 'overlay' : layout.diffFormat ?? 'none';
}

/** The source's changes of `l` against its parent; `lowers` are its ancestors' ids, nearest first. */
export async function sourceChanges(src: SourceHome, l: PlannedLayer, lowers: string[]): Promise<Change[]> {
  if (src.layout.holds === 'diffs') {
    const own = src.layout.filesDir(src.home, l.id);
    if (own.dir === null) throw new MigrateError(`${layerName(l)}: ${own.reason}`);
    const dirs = (src.layout.recordedLowers(src.home, l.id) ?? lowers).map((id) => {
      const f = src.layout.filesDir(src.home, id);
      if (f.dir === null) throw new MigrateError(`${layerName(l)}: its lower ${id}: ${f.reason}`);
      return f.dir;
    });
    return changesFromDiffDir(own.dir, dirs, src.layout.diffFormat!);
  }
  return withSourceFiles(src, l.id, async (own) =>
    l.parent ? withSourceFiles(src, l.parent, async (base) => changesDirs(own, base)) : changesDirs(own, null));
}

/** The source's changes of `l` as a tar (aufs-form whiteouts), applied to `fn`. */
async function withSourceDiff<T>(src: SourceHome, l: PlannedLayer, changes: Change[], fn: (tar: NodeJS.ReadableStream) => Promise<T>): Promise<T> {
  if (src.layout.holds === 'diffs') {
    const own = src.layout.filesDir(src.home, l.id);
    if (own.dir === null) throw new MigrateError(`${layerName(l)}: ${own.reason}`);
    return fn(exportDir(own.dir, { whiteouts: exportForm(src.layout) }));
  }
  return withSourceFiles(src, l.id, (own) => fn(exportChanges(own, changes)));
}

const changeKey = (c: Change) => `${c.kind} ${c.path}`;

/** Move a container's init or RW layer: the source's changes applied, the target's changes compared. */
export async function moveContainerLayer(src: SourceHome, target: Driver, l: PlannedLayer, lowers: string[]): Promise<Moved> {
  const before = await sourceChanges(src, l, lowers);
  await target.createReadWrite(l.id, l.parent);
  const size = await asLayerError(layerName(l), withSourceDiff(src, l, before, (tar) => target.applyDiff(l.id, l.parent, tar)));
  const after = await target.changes(l.id, l.parent);
  const a = before.map(changeKey).sort();
  const b = after.map(changeKey).sort();
  const i = a.findIndex((k, n) => k !== b[n]);
  if (i >= 0 || a.length !== b.length) {
    const at = i >= 0 ? i : Math.min(a.length, b.length);
    throw new MigrateError(`${layerName(l)}: changes differ after the move (source ${a[at] ?? 'nothing'}, target ${b[at] ?? 'nothing'})`);
  }
  return { tarBytes: size, size };
}
