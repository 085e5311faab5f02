// `strata diff CONTAINER` on a containerd store: the container's active
// snapshot against its parent, the way docker 29 diffs a container (moby's
// ChangesDirs over the two mounts): through the snapshotter's own changes
// dir where its trees are overlay upper dirs, a naive walk of the two full
// trees where they are copies (native) or btrfs snapshots. A snapshot key
// works as well.
import type { Change } from '../archive/types.ts';
import { backendOf, type ContainerdModel } from '../layerstore/containerd/store.ts';
import { InspectError } from '../layerstore/problems.ts';
import { findContainer } from '../layerstore/store.ts';

/** The snapshot `ref` names: a container's (id, prefix or name) first, else a snapshot key of the images' snapshotter, then of the others. */
function snapshotOf(model: ContainerdModel, ref: string): { snapshotter: string; key: string } {
  const d = model.containerd;
  try {
    const id = findContainer(model, ref);
    const c = d.ns.containers.find((x) => x.id === id)!;
    if (!c.snapshotKey) throw new InspectError(`container ${id} has no snapshot`);
    return { snapshotter: c.snapshotter ?? d.snapshotter, key: c.snapshotKey };
  } catch (e) {
    if (!(e instanceof InspectError) || !/no such container/.test(e.message)) throw e;
    for (const sn of [d.snapshotter, ...d.ns.snapshots.keys()]) if (d.ns.snapshots.get(sn)?.has(ref)) return { snapshotter: sn, key: ref };
    throw new InspectError(`no such container or snapshot: ${ref}`);
  }
}

/** The changes of a container's snapshot (or of snapshot `ref`) against its parent, sorted by path. */
export function containerdChanges(model: ContainerdModel, ref: string): Change[] {
  const d = model.containerd;
  const { snapshotter, key } = snapshotOf(model, ref);
  const store = d.snapshotters.get(snapshotter);
  const own = backendOf(d, key, snapshotter);
  if (!store || !own) throw new InspectError(`snapshot ${key} is not in the ${snapshotter} snapshotter's metadata.db`);
  try {
    return store.changes(own);
  } catch (e) {
    throw new InspectError(`cannot compute the changes of snapshot ${key} (${snapshotter}): ${(e as Error).message}`, store.tree(own) ?? store.home);
  }
}
