// `strata diff CONTAINER` on a containerd store: the container's active
// overlayfs snapshot (an overlay upper dir) against its parent chain, the
// way docker 29 diffs a container; a snapshot key works as well.
import type { Change } from '../archive/types.ts';
import { changesFromDiffDir } from '../archive/changes.ts';
import { backendOf, type ContainerdModel } from '../layerstore/containerd/store.ts';
import { snapshotFs } from '../layerstore/containerd/snapshotter.ts';
import { InspectError } from '../layerstore/problems.ts';
import { findContainer } from '../layerstore/store.ts';

/** The snapshot key `ref` names: a container's (id, prefix or name) first, else a snapshot key itself. */
function snapshotKeyOf(model: ContainerdModel, ref: string): string {
  const snaps = model.containerd.ns.snapshots.get(model.containerd.snapshotter);
  try {
    const id = findContainer(model, ref);
    const c = model.containerd.ns.containers.find((x) => x.id === id)!;
    if (!c.snapshotKey) throw new InspectError(`container ${id} has no snapshot`);
    return c.snapshotKey;
  } catch (e) {
    if (!(e instanceof InspectError) || !/no such container/.test(e.message)) throw e;
    if (snaps?.has(ref)) return ref;
    throw new InspectError(`no such container or snapshot: ${ref}`);
  }
}

/** The changes of a container's snapshot (or of snapshot `ref`) against its parents, sorted by path. */
export function containerdChanges(model: ContainerdModel, ref: string): Change[] {
  const d = model.containerd;
  const key = snapshotKeyOf(model, ref);
  const own = backendOf(d, key);
  if (!own?.id) throw new InspectError(`snapshot ${key} is not in the ${d.snapshotter} snapshotter's metadata.db`);
  // the parents' trees, nearest first, as overlayfs stacks them
  const lowers: string[] = [];
  const seen = new Set<string>([key]);
  for (let p = d.ns.snapshots.get(d.snapshotter)?.get(key)?.parent ?? null; p !== null; p = d.ns.snapshots.get(d.snapshotter)?.get(p)?.parent ?? null) {
    const b = backendOf(d, p);
    if (!b?.id || seen.has(p)) throw new InspectError(`snapshot ${key}: parent ${p} ${seen.has(p) ? 'loops' : 'is missing'}`);
    seen.add(p);
    lowers.push(snapshotFs(d.root, b.id));
  }
  try {
    return changesFromDiffDir(snapshotFs(d.root, own.id), lowers, 'overlay');
  } catch (e) {
    throw new InspectError(`cannot compute the changes of snapshot ${key}: ${(e as Error).message}`, snapshotFs(d.root, own.id));
  }
}
