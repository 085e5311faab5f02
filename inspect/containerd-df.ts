// `strata df [-v]` on a containerd store: images with their content (the
// platform's blobs) and unpacked (snapshot) sizes, shared vs unique as moby's
// containerd image service counts them (snapshots used by more than one
// image are shared); containers' active snapshots; every blob and every
// snapshot of each snapshotter (usage as `ctr snapshots usage` gives it)
// with what holds it (an image, a container, a lease) and the garbage the
// next collection would remove; and the root on disk, like du -sx.
import * as path from 'node:path';
import { DiskUsage, type Usage } from './df.ts';
import { humanDuration, humanSize, truncateId } from './docker-units.ts';
import { MODERN_TABLE, tabTable } from './tabwriter.ts';
import { backendOf, type ContainerdModel } from '../layerstore/containerd/store.ts';
import { CONTENT_DIR } from '../layerstore/containerd/content.ts';
import { snapshotterHome, type BackendSnapshot, type SnapshotterStore } from '../layerstore/containerd/snapshotter.ts';
import { SNAPSHOTTERS } from '../layerstore/containerd/snapshotters/all.ts';
import { reachable, snapshotRef } from '../layerstore/containerd/references.ts';
import { describeFsError, listSorted } from '../sys/read-only-files.ts';

export interface CtrImageUsage {
  repository: string;
  tag: string;
  id: string;
  created: string | null;
  contentSize: number;
  unpackedSize: number;
  /** contentSize + unpackedSize (docker 29's image Size) */
  size: number;
  sharedSize: number;
  uniqueSize: number;
  containers: number;
}

export interface SnapshotUsage {
  snapshotter: string;
  key: string;
  id: string | null;
  kind: string;
  size: number;
  inodes: number;
  /** images / containers / leases holding it; none: garbage */
  heldBy: string[];
}

export interface CtrContainerUsage {
  id: string;
  image: string | null;
  snapshot: string | null;
  size: number | null;
  created: string | null;
  /** as Docker's config.v2.json records it (false without Docker's root) */
  running: boolean;
}

export interface ContainerdDfReport {
  root: string;
  namespace: string;
  images: CtrImageUsage[];
  containers: CtrContainerUsage[];
  snapshots: SnapshotUsage[];
  content: { blobs: number; size: number; imageSize: number; garbage: { digest: string; size: number }[] };
  leases: { id: string; created: string | null; expires: string | null; content: number; snapshots: number }[];
  /** a snapshotter's per-id dirs (snapshots/<id>, active/<id>, …) no snapshot record names */
  orphanDirs: { path: string; usage: Usage }[];
  areas: { area: string; usage: Usage }[];
  total: Usage;
}

export function containerdDiskUsage(model: ContainerdModel): ContainerdDfReport {
  const d = model.containerd;
  const reach = reachable(d);
  const snapSize = (key: string) => backendOf(d, key)?.size ?? 0;
  const useCount = new Map<string, number>();
  for (const img of model.images.values()) for (const l of img.layers) useCount.set(l, (useCount.get(l) ?? 0) + 1);
  const images: CtrImageUsage[] = [];
  for (const img of [...model.images.values()].sort((a, b) => (b.created?.getTime() ?? 0) - (a.created?.getTime() ?? 0))) {
    const unpacked = img.layers.reduce((s, l) => s + snapSize(l), 0);
    const shared = img.layers.filter((l) => (useCount.get(l) ?? 0) > 1).reduce((s, l) => s + snapSize(l), 0);
    const size = img.size ?? unpacked;
    const ref = img.tags[0] ?? '<none>:<none>';
    const i = ref.lastIndexOf(':');
    images.push({
      repository: ref.slice(0, i), tag: ref.slice(i + 1), id: img.id, created: img.created?.toISOString() ?? null,
      contentSize: size - unpacked, unpackedSize: unpacked, size, sharedSize: shared, uniqueSize: size - shared,
      containers: model.containers.filter((c) => c.imageId === img.id).length,
    });
  }
  const holders = new Map<string, string[]>();
  const hold = (ref: string, who: string) => holders.set(ref, [...(holders.get(ref) ?? []), who]);
  for (const img of model.images.values()) {
    const name = img.tags[0] ?? truncateId(img.id);
    for (const l of img.layers) hold(snapshotRef(d.snapshotter, l), `image ${name}`);
  }
  for (const c of d.ns.containers) if (c.snapshotKey) hold(snapshotRef(c.snapshotter ?? d.snapshotter, c.snapshotKey), `container ${c.id}`);
  for (const l of d.ns.leases) for (const s of l.snapshots) hold(snapshotRef(s.snapshotter, s.key), `lease ${l.id}`);
  const snapshots: SnapshotUsage[] = [];
  for (const [sn, m] of d.ns.snapshots) {
    const store = d.snapshotters.get(sn);
    for (const s of m.values()) {
      const b = backendOf(d, s.key, sn);
      const u = b && store ? measured(model, store, b) : { size: 0, inodes: 0 };
      const ref = snapshotRef(sn, s.key);
      const held = holders.get(ref) ?? (reach.snapshots.has(ref) ? ['a child snapshot'] : []);
      snapshots.push({ snapshotter: sn, key: s.key, id: b?.id ?? null, kind: b?.kind ?? 'Unknown', size: u.size, inodes: u.inodes, heldBy: held });
    }
  }
  const containers = d.ns.containers.map((c) => ({
    id: c.id, image: c.image, snapshot: c.snapshotKey,
    size: snapshots.find((s) => s.snapshotter === (c.snapshotter ?? d.snapshotter) && s.key === c.snapshotKey)?.size ?? null, created: c.createdAt?.toISOString() ?? null,
    running: model.containers.find((x) => x.id === c.id)?.running ?? false,
  }));
  const blobs = [...d.ns.blobs.values()];
  const du = DiskUsage.forRoot(d.root);
  const orphanDirs = [...d.snapshotters.values()].flatMap((st) => orphansOf(st)).map((p) => ({ path: p, usage: du.measure(p) }));
  // every top-level entry of the root once, the content store's and the snapshotters' first
  const du2 = DiskUsage.forRoot(d.root);
  const first = [CONTENT_DIR, ...SNAPSHOTTERS.map((f) => path.basename(snapshotterHome(d.root, f.name)))];
  const areas = [...first, ...listSorted(d.root).filter((n) => !first.includes(n))]
    .map((n) => ({ area: n, usage: du2.measure(path.join(d.root, n)) }));
  const total = areas.reduce((t, a) => ({ disk: t.disk + a.usage.disk, apparent: t.apparent + a.usage.apparent, entries: t.entries + a.usage.entries }), { ...du2.measureSelf(d.root) });
  return {
    root: d.root, namespace: d.namespace, images, containers, snapshots,
    content: {
      blobs: blobs.length, size: blobs.reduce((s, b) => s + (b.size ?? 0), 0),
      imageSize: blobs.filter((b) => reach.imageBlobs.has(b.digest)).reduce((s, b) => s + (b.size ?? 0), 0),
      garbage: blobs.filter((b) => !reach.blobs.has(b.digest)).map((b) => ({ digest: b.digest, size: b.size ?? 0 })),
    },
    leases: d.ns.leases.map((l) => ({
      id: l.id, created: l.createdAt?.toISOString() ?? null, expires: l.labels['containerd.io/gc.expire'] ?? null, content: l.content.length, snapshots: l.snapshots.length,
    })),
    orphanDirs, areas, total,
  };
}

/** `ctr snapshots usage` of one snapshot; an active one whose tree cannot be walked counts 0, with a problem naming it. */
function measured(model: ContainerdModel, store: SnapshotterStore, s: BackendSnapshot): { size: number; inodes: number } {
  try {
    return store.usage(s);
  } catch (e) {
    model.problems.add(store.tree(s) ?? store.home, `snapshot ${s.name} (${store.name}): its tree ${describeFsError(e)}, usage not measured`);
    return { size: 0, inodes: 0 };
  }
}

/** The entries of a snapshotter's per-id dirs that no record owns (a removal's rm-<id>, a creation's new-*, a lost record's tree). */
function orphansOf(store: SnapshotterStore): string[] {
  const owned = new Set([...store.records.values()].map((s) => store.ownDir(s)).filter((p) => p !== null));
  return store.facts.idDirs.flatMap((dir) => listSorted(path.join(store.home, dir)).map((n) => path.join(store.home, dir, n))).filter((p) => !owned.has(p));
}

const pct = (part: number, whole: number) => (whole > 0 ? `${Math.round((part * 100) / whole)}%` : '0%');

export function renderContainerdDf(r: ContainerdDfReport, verbose: boolean, now = new Date()): string {
  const ago = (c: string | null) => (c ? `${humanDuration(now.getTime() - Math.floor(Date.parse(c) / 1000) * 1000)} ago` : 'N/A');
  const imagesSize = r.content.imageSize + r.snapshots.filter((s) => s.heldBy.some((h) => h.startsWith('image '))).reduce((s, x) => s + x.size, 0);
  const ctrSize = r.containers.reduce((s, c) => s + (c.size ?? 0), 0);
  const ctrReclaim = r.containers.filter((c) => !c.running).reduce((s, c) => s + (c.size ?? 0), 0);
  const garbage = r.content.garbage.reduce((s, g) => s + g.size, 0) + r.snapshots.filter((s) => !s.heldBy.length).reduce((s, x) => s + x.size, 0);
  let out = `containerd namespace ${r.namespace} in ${r.root}\n\n`;
  out += tabTable(['TYPE', 'TOTAL', 'ACTIVE', 'SIZE', 'RECLAIMABLE'], [
    ['Images', String(r.images.length), String(r.images.filter((i) => i.containers > 0).length), humanSize(imagesSize), humanSize(r.images.filter((i) => i.containers === 0).reduce((s, i) => s + i.uniqueSize, 0))],
    ['Containers', String(r.containers.length), String(r.containers.filter((c) => c.running).length), humanSize(ctrSize), `${humanSize(ctrReclaim)} (${pct(ctrReclaim, ctrSize)})`],
    ['Content blobs', String(r.content.blobs), String(r.content.blobs - r.content.garbage.length), humanSize(r.content.size), humanSize(r.content.garbage.reduce((s, g) => s + g.size, 0))],
    ['Snapshots', String(r.snapshots.length), String(r.snapshots.filter((s) => s.heldBy.length).length), humanSize(r.snapshots.reduce((s, x) => s + x.size, 0)), humanSize(r.snapshots.filter((s) => !s.heldBy.length).reduce((s, x) => s + x.size, 0))],
    ['Leases', String(r.leases.length), String(r.leases.length), '-', '-'],
  ], MODERN_TABLE);
  out += `\nGarbage (no image, container or lease holds it): ${humanSize(garbage)}\n`;
  if (verbose) {
    out += '\nImages space usage:\n\n';
    out += tabTable(['REPOSITORY', 'TAG', 'IMAGE ID', 'CREATED', 'SIZE', 'CONTENT SIZE', 'SHARED SIZE', 'UNIQUE SIZE', 'CONTAINERS'],
      r.images.map((i) => [i.repository, i.tag, truncateId(i.id), ago(i.created), humanSize(i.size), humanSize(i.contentSize), humanSize(i.sharedSize), humanSize(i.uniqueSize), String(i.containers)]), MODERN_TABLE);
    out += '\nContainers space usage:\n\n';
    out += tabTable(['CONTAINER ID', 'IMAGE', 'SNAPSHOT', 'SIZE', 'CREATED'],
      r.containers.map((c) => [truncateId(c.id), c.image ?? '-', c.snapshot ?? '-', c.size === null ? 'N/A' : humanSize(c.size), ago(c.created)]), MODERN_TABLE);
    out += '\nSnapshots:\n\n';
    out += tabTable(['KEY', 'SNAPSHOTTER', 'ID', 'KIND', 'SIZE', 'INODES', 'HELD BY'],
      r.snapshots.map((s) => [s.key, s.snapshotter, s.id ?? '-', s.kind, humanSize(s.size), String(s.inodes), s.heldBy.join(', ') || 'garbage']), MODERN_TABLE);
    out += '\nLeases:\n\n';
    out += tabTable(['ID', 'CREATED', 'EXPIRES', 'CONTENT', 'SNAPSHOTS'], r.leases.map((l) => [l.id, ago(l.created), l.expires ?? '-', String(l.content), String(l.snapshots)]), MODERN_TABLE);
    if (r.content.garbage.length) {
      out += '\nUnreferenced content:\n\n';
      out += tabTable(['DIGEST', 'SIZE'], r.content.garbage.map((g) => [g.digest, humanSize(g.size)]), MODERN_TABLE);
    }
  }
  out += `\nOn disk (${r.root}, like du -sx): ${humanSize(r.total.disk)} in ${r.total.entries} entries\n\n`;
  out += tabTable(['WHAT', 'DISK', 'APPARENT', 'ENTRIES'], r.areas.map((a) => [a.area, humanSize(a.usage.disk), humanSize(a.usage.apparent), String(a.usage.entries)]), MODERN_TABLE);
  if (r.orphanDirs.length) {
    out += '\nSnapshot directories no record names:\n\n';
    out += tabTable(['PATH', 'DISK'], r.orphanDirs.map((o) => [o.path, humanSize(o.usage.disk)]), MODERN_TABLE);
  }
  return out;
}
