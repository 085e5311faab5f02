// containerd's metadata store, io.containerd.metadata.v1.bolt/meta.db, read
// offline (schema: containerd core/metadata/buckets.go, version 6 here):
//
//   v1/<namespace>/images/<name>/{createdat, updatedat, target/{digest, mediatype, size}, labels/, annotations/}
//   v1/<namespace>/content/blob/<digest>/{createdat, updatedat, size, labels/}
//   v1/<namespace>/snapshots/<snapshotter>/<key>/{name, parent, children/, createdat, updatedat, labels/}
//   v1/<namespace>/leases/<id>/{createdat, labels/, snapshots/<snapshotter>/<key>, content/<digest>, ingests/}
//   v1/<namespace>/containers/<id>/{image, snapshotter, snapshotKey, runtime/name, createdat, updatedat, labels/}
//
// A snapshot's `name` is the key the snapshotter itself knows it by
// ("moby/4/sha256:…"); `key` is what ctr and docker name it (a chain id).
import { BboltError, BboltFile, type BucketHandle } from '../bbolt.ts';
import { goTime, str, stringMap, varint } from './encoding.ts';
import type { Problems } from '../problems.ts';
import { describeFsError, openRegular } from '../../sys/read-only-files.ts';
import * as fs from 'node:fs';

export interface Descriptor {
  digest: string;
  mediaType: string;
  size: number | null;
}

export interface CtrImage {
  name: string;
  target: Descriptor;
  createdAt: Date | null;
  updatedAt: Date | null;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

export interface CtrBlob {
  digest: string;
  size: number | null;
  createdAt: Date | null;
  updatedAt: Date | null;
  labels: Record<string, string>;
}

export interface CtrSnapshot {
  snapshotter: string;
  key: string;
  /** the snapshotter's own key */
  name: string | null;
  parent: string | null;
  children: string[];
  createdAt: Date | null;
  updatedAt: Date | null;
  labels: Record<string, string>;
}

export interface CtrLease {
  id: string;
  createdAt: Date | null;
  labels: Record<string, string>;
  snapshots: { snapshotter: string; key: string }[];
  content: string[];
}

export interface CtrContainer {
  id: string;
  image: string | null;
  snapshotter: string | null;
  snapshotKey: string | null;
  runtime: string | null;
  createdAt: Date | null;
  updatedAt: Date | null;
  labels: Record<string, string>;
}

export interface Namespace {
  name: string;
  images: CtrImage[];
  blobs: Map<string, CtrBlob>;
  /** per snapshotter, by key */
  snapshots: Map<string, Map<string, CtrSnapshot>>;
  leases: CtrLease[];
  containers: CtrContainer[];
}

/**
 * Open a bolt file of a store: it must be a regular file (not a FIFO, a
 * device or a symlink), checked through the read-only opens before bbolt
 * reads it; null with a problem otherwise.
 */
export function openBolt(file: string, problems: Problems, required = true): BboltFile | null {
  try {
    fs.closeSync(openRegular(file).fd);
    return BboltFile.open(file);
  } catch (e) {
    if (!required && (e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    problems.add(file, e instanceof BboltError ? e.message.replace(`${file}: `, '') : describeFsError(e));
    return null;
  }
}

/** The namespaces meta.db holds. */
export function namespacesOf(db: BboltFile): string[] {
  return db.bucket('v1')?.buckets() ?? [];
}

function times(b: BucketHandle) {
  return { createdAt: goTime(b.get('createdat')), updatedAt: goTime(b.get('updatedat')) };
}

function sizeOf(b: BucketHandle): number | null {
  const v = b.get('size');
  return v === null ? null : varint(v);
}

function* sub(b: BucketHandle | null): Generator<[string, BucketHandle]> {
  if (!b) return;
  for (const name of b.buckets()) yield [name, b.bucket(name)!];
}

/** Everything one namespace records. */
export function readNamespace(db: BboltFile, name: string): Namespace {
  const ns = db.bucket('v1', name);
  const images: CtrImage[] = [];
  for (const [n, b] of sub(ns?.bucket('images') ?? null)) {
    const t = b.bucket('target');
    images.push({
      name: n,
      target: { digest: t ? str(t, 'digest') ?? '' : '', mediaType: t ? str(t, 'mediatype') ?? '' : '', size: t ? sizeOf(t) : null },
      ...times(b), labels: stringMap(b.bucket('labels')), annotations: stringMap(b.bucket('annotations')),
    });
  }
  const blobs = new Map<string, CtrBlob>();
  for (const [d, b] of sub(ns?.bucket('content')?.bucket('blob') ?? null)) {
    blobs.set(d, { digest: d, size: sizeOf(b), ...times(b), labels: stringMap(b.bucket('labels')) });
  }
  const snapshots = new Map<string, Map<string, CtrSnapshot>>();
  for (const [sn, sb] of sub(ns?.bucket('snapshots') ?? null)) {
    const m = new Map<string, CtrSnapshot>();
    for (const [key, b] of sub(sb)) {
      m.set(key, {
        snapshotter: sn, key, name: str(b, 'name'), parent: str(b, 'parent'),
        children: [...(b.bucket('children')?.entries() ?? [])].map((e) => e.key.toString()),
        ...times(b), labels: stringMap(b.bucket('labels')),
      });
    }
    snapshots.set(sn, m);
  }
  const leases: CtrLease[] = [];
  for (const [id, b] of sub(ns?.bucket('leases') ?? null)) {
    const snaps: { snapshotter: string; key: string }[] = [];
    for (const [sn, sb] of sub(b.bucket('snapshots'))) for (const e of sb.entries()) snaps.push({ snapshotter: sn, key: e.key.toString() });
    const content = [...(b.bucket('content')?.entries() ?? [])].map((e) => e.key.toString());
    leases.push({ id, createdAt: goTime(b.get('createdat')), labels: stringMap(b.bucket('labels')), snapshots: snaps, content });
  }
  const containers: CtrContainer[] = [];
  for (const [id, b] of sub(ns?.bucket('containers') ?? null)) {
    const rt = b.bucket('runtime');
    containers.push({
      id, image: str(b, 'image'), snapshotter: str(b, 'snapshotter'), snapshotKey: str(b, 'snapshotKey'),
      runtime: rt ? str(rt, 'name') : null, ...times(b), labels: stringMap(b.bucket('labels')),
    });
  }
  return { name, images, blobs, snapshots, leases, containers };
}
