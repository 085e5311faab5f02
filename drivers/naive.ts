// The naive diff: moby's NaiveDiffDriver (daemon/graphdriver/fsdiff.go).
// Any ProtoDriver gets the four diff methods by mounting layers with get()
// and comparing or writing whole trees. vfs, btrfs and devicemapper use it for
// everything; aufs and overlay2 call it when `parent` is not the direct parent.
//
// Every get() here is matched by a put(), on success and on error. The tar
// stream of diff() holds its layer until it ends, fails or is destroyed.
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { applyLayer } from '../archive/apply.ts';
import { changesDirs, changesSize } from '../archive/changes.ts';
import { exportChanges, exportMounted } from '../archive/export.ts';
import type { Change } from '../archive/types.ts';
import { parentOrNull, tarSource, type CreateOpts, type Driver, type LayerInfo, type ProtoDriver, type TarInput } from './driver.ts';

/**
 * moby NaiveDiffDriver.Diff: tar of the whole layer (no parent) or of
 * ChangesDirs(layer, parent) through ExportChanges; aufs-form whiteouts.
 * The returned stream starts work when first read; errors (unknown layer,
 * unreadable file) arrive as stream errors.
 */
export function naiveDiff(d: ProtoDriver, id: string, parent: string | null): Readable {
  parent = parentOrNull(parent);
  // the whole layer: the export stream itself (its own fast path into a file stays reachable)
  if (parent === null) return exportMounted(() => d.get(id), () => d.put(id));
  return Readable.from(diffChunks(d, id, parent), { objectMode: false });
}

async function* diffChunks(d: ProtoDriver, id: string, parent: string): AsyncGenerator<Buffer> {
  const start = Date.now();
  const layerFs = await d.get(id);
  try {
    const parentFs = await d.get(parent);
    let changes: Change[];
    try {
      changes = changesDirs(layerFs, parentFs);
    } finally {
      await d.put(parent);
    }
    const tar = exportChanges(layerFs, changes);
    try {
      for await (const chunk of tar) yield chunk as Buffer;
    } finally {
      tar.destroy();
    }
  } finally {
    await d.put(id);
    // Parent layers extracted from tars have whole-second mtimes; a change made
    // later in this same second could compare equal to them, so no second diff
    // may start in the second this one started (moby does the same).
    await sleep(Math.max(0, Math.floor(start / 1000) * 1000 + 1000 - Date.now()));
  }
}

/** moby NaiveDiffDriver.Changes: ChangesDirs of the two mounted trees (no parent → all Adds). */
export async function naiveChanges(d: ProtoDriver, id: string, parent: string | null): Promise<Change[]> {
  parent = parentOrNull(parent);
  const layerFs = await d.get(id);
  try {
    if (parent === null) return changesDirs(layerFs, null);
    const parentFs = await d.get(parent);
    try {
      return changesDirs(layerFs, parentFs);
    } finally {
      await d.put(parent);
    }
  } finally {
    await d.put(id);
  }
}

/**
 * moby NaiveDiffDriver.ApplyDiff: extract the tar into the mounted layer as a
 * flat tree (whiteouts delete, no marker kept). Returns the sum of the tar
 * header sizes, as moby's UnpackLayer does.
 */
export async function naiveApplyDiff(d: ProtoDriver, id: string, _parent: string | null, tar: TarInput): Promise<number> {
  const layerFs = await d.get(id);
  try {
    return await applyLayer(tarSource(tar), layerFs, { whiteouts: 'none' });
  } finally {
    await d.put(id);
  }
}

/** moby NaiveDiffDriver.DiffSize: Changes, then ChangesSize over the mounted layer. */
export async function naiveDiffSize(d: ProtoDriver, id: string, parent: string | null): Promise<number> {
  const changes = await naiveChanges(d, id, parent);
  const layerFs = await d.get(id);
  try {
    return changesSize(layerFs, changes);
  } finally {
    await d.put(id);
  }
}

/** A full Driver from a ProtoDriver: lifecycle delegated, diff methods naive. */
export class NaiveDiffDriver implements Driver {
  constructor(readonly proto: ProtoDriver) {}

  get name(): string { return this.proto.name; }
  get home(): string { return this.proto.home; }
  createReadWrite(id: string, parent: string | null, opts?: CreateOpts): Promise<void> { return this.proto.createReadWrite(id, parent, opts); }
  create(id: string, parent: string | null, opts?: CreateOpts): Promise<void> { return this.proto.create(id, parent, opts); }
  remove(id: string): Promise<void> { return this.proto.remove(id); }
  get(id: string, mountLabel?: string): Promise<string> { return this.proto.get(id, mountLabel); }
  put(id: string): Promise<void> { return this.proto.put(id); }
  async persist(id: string): Promise<void> { await this.proto.persist?.(id); }
  exists(id: string): boolean { return this.proto.exists(id); }
  status(): [string, string][] { return this.proto.status(); }
  metadata(id: string): Record<string, string> { return this.proto.metadata(id); }
  cleanup(): Promise<void> { return this.proto.cleanup(); }
  layers(): LayerInfo[] { return this.proto.layers ? this.proto.layers() : []; }

  diff(id: string, parent: string | null): Readable { return naiveDiff(this.proto, id, parent); }
  changes(id: string, parent: string | null): Promise<Change[]> { return naiveChanges(this.proto, id, parent); }
  applyDiff(id: string, parent: string | null, tar: TarInput): Promise<number> { return naiveApplyDiff(this.proto, id, parent, tar); }
  diffSize(id: string, parent: string | null): Promise<number> { return naiveDiffSize(this.proto, id, parent); }
}
