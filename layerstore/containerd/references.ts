// What containerd's garbage collector would keep (core/metadata/gc.go): the
// roots are image targets, containers' snapshots, unexpired leases' resources
// and anything labelled containerd.io/gc.root; from a blob, its
// containerd.io/gc.ref.content.* labels lead to more blobs and
// containerd.io/gc.ref.snapshot.<snapshotter> to a snapshot; a snapshot keeps
// its parent. What is not reached is garbage the next collection removes.
import type { ContainerdDetail } from './store.ts';

export interface Reachable {
  blobs: Set<string>;
  /** snapshot keys (of the detail's snapshotter) */
  snapshots: Set<string>;
  /** blobs reached from images alone (no lease, no container) */
  imageBlobs: Set<string>;
  imageSnapshots: Set<string>;
}

const CONTENT_REF = 'containerd.io/gc.ref.content.';
const GC_ROOT = 'containerd.io/gc.root';
const GC_EXPIRE = 'containerd.io/gc.expire';

/** The blobs and snapshots containerd's GC keeps, as of `now` (leases expire). */
export function reachable(d: ContainerdDetail, now = new Date()): Reachable {
  const snapLabel = `containerd.io/gc.ref.snapshot.${d.snapshotter}`;
  const snaps = d.ns.snapshots.get(d.snapshotter) ?? new Map();
  const walk = (blobRoots: Iterable<string>, snapRoots: Iterable<string>) => {
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
        else if (k === snapLabel) snapTodo.push(v);
      }
    }
    while (snapTodo.length) {
      const key = snapTodo.pop()!;
      if (snapshots.has(key)) continue;
      snapshots.add(key);
      const s = snaps.get(key);
      if (s?.parent) snapTodo.push(s.parent);
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
      ...d.ns.containers.filter((c) => (c.snapshotter ?? d.snapshotter) === d.snapshotter && c.snapshotKey).map((c) => c.snapshotKey!),
      ...leases.flatMap((l) => l.snapshots.filter((s) => s.snapshotter === d.snapshotter).map((s) => s.key)),
      ...[...snaps.values()].filter((s) => GC_ROOT in s.labels).map((s) => s.key),
    ],
  );
  return { ...all, imageBlobs: images.blobs, imageSnapshots: images.snapshots };
}
