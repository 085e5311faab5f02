// What containerd's garbage collector would keep (core/metadata/gc.go): the
// roots are image targets, containers' snapshots, unexpired leases' resources
// and anything labelled containerd.io/gc.root; from a blob, its
// containerd.io/gc.ref.content.* labels lead to more blobs and
// containerd.io/gc.ref.snapshot.<snapshotter> to that snapshotter's snapshot;
// a snapshot keeps its parent. What is not reached is garbage the next
// collection removes. Snapshots are named by snapshotRef(snapshotter, key).
import type { ContainerdDetail } from './store.ts';

export interface Reachable {
  blobs: Set<string>;
  /** snapshotRef(snapshotter, key) of every snapshotter's snapshots reached */
  snapshots: Set<string>;
  /** blobs reached from images alone (no lease, no container) */
  imageBlobs: Set<string>;
  imageSnapshots: Set<string>;
}

const CONTENT_REF = 'containerd.io/gc.ref.content.';
const GC_ROOT = 'containerd.io/gc.root';
const GC_EXPIRE = 'containerd.io/gc.expire';
const SNAPSHOT_REF = 'containerd.io/gc.ref.snapshot.';

/** A snapshot of one snapshotter, as one string (snapshotter names have no '/'). */
export const snapshotRef = (snapshotter: string, key: string) => `${snapshotter}/${key}`;

/** The blobs and snapshots containerd's GC keeps, as of `now` (leases expire). */
export function reachable(d: ContainerdDetail, now = new Date()): Reachable {
  const walk = (blobRoots: Iterable<string>, snapRoots: Iterable<[string, string]>) => {
    const blobs = new Set<string>();
    const snapshots = new Set<string>();
    const todo = [...blobRoots];
    const snapTodo = [...snapRoots];
    while (todo.length) {
      const dg = todo.pop()!;
      if (blobs.has(dg)) continue;
      blobs.add(dg);
      const b = d.ns.blobs.get(dg);
      if (!b) continue;
      for (const [k, v] of Object.entries(b.labels)) {
        if (k.startsWith(CONTENT_REF)) todo.push(v);
        else if (k.startsWith(SNAPSHOT_REF)) snapTodo.push([k.slice(SNAPSHOT_REF.length), v]);
      }
    }
    while (snapTodo.length) {
      const [sn, key] = snapTodo.pop()!;
      const ref = snapshotRef(sn, key);
      if (snapshots.has(ref)) continue;
      snapshots.add(ref);
      const s = d.ns.snapshots.get(sn)?.get(key);
      if (s?.parent) snapTodo.push([sn, s.parent]);
    }
    return { blobs, snapshots };
  };
  const imageRoots = d.ns.images.map((i) => i.target.digest);
  const images = walk(imageRoots, []);
  const leases = d.ns.leases.filter((l) => {
    const exp = l.labels[GC_EXPIRE] ? Date.parse(l.labels[GC_EXPIRE]) : NaN;
    return Number.isNaN(exp) || exp > now.getTime();
  });
  const all = walk(
    [...imageRoots, ...leases.flatMap((l) => l.content), ...[...d.ns.blobs.values()].filter((b) => GC_ROOT in b.labels).map((b) => b.digest)],
    [
      ...d.ns.containers.filter((c) => c.snapshotKey).map((c): [string, string] => [c.snapshotter ?? d.snapshotter, c.snapshotKey!]),
      ...leases.flatMap((l) => l.snapshots.map((s): [string, string] => [s.snapshotter, s.key])),
      ...[...d.ns.snapshots].flatMap(([sn, m]) => [...m.values()].filter((s) => GC_ROOT in s.labels).map((s): [string, string] => [sn, s.key])),
    ],
  );
  return { ...all, imageBlobs: images.blobs, imageSnapshots: images.snapshots };
}
