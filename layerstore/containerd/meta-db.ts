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
import { goTime, stringMap, varint } from './encoding.ts';
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

/**
 * A bucket's values and nested buckets, read in one pass over its page
 * (a lookup per field would re-read the page of a bucket that is not inline).
 */
class Rec {
  readonly values = new Map<string, Buffer>();
  readonly subs = new Map<string, BucketHandle>();
  constructor(b: BucketHandle) {
    for (const [k, v] of b.items()) {
      if (Buffer.isBuffer(v)) this.values.set(k, v);
      else this.subs.set(k, v);
    }
  }

  str(key: string): string | null {
    return this.values.get(key)?.toString() ?? null;
  }

  size(): number | null {
    const v = this.values.get('size');
    return v === undefined ? null : varint(v);
  }

  times() {
    return { createdAt: goTime(this.values.get('createdat') ?? null), updatedAt: goTime(this.values.get('updatedat') ?? null) };
  }

  map(name: string): Record<string, string> {
    return stringMap(this.subs.get(name) ?? null);
  }
}

function* sub(b: BucketHandle | null | undefined): Generator<[string, Rec]> {
  if (b) for (const [k, h] of b.children()) yield [k, new Rec(h)];
}

/** Everything one namespace records. */
export function readNamespace(db: BboltFile, name: string): Namespace {
  const ns = db.bucket('v1', name);
  const top = ns ? new Rec(ns) : null;
  const images: CtrImage[] = [];
  for (const [n, r] of sub(top?.subs.get('images'))) {
    const t = r.subs.get('target');
    const tr = t ? new Rec(t) : null;
    images.push({
      name: n,
      target: { digest: tr?.str('digest') ?? '', mediaType: tr?.str('mediatype') ?? '', size: tr?.size() ?? null },
      ...r.times(), labels: r.map('labels'), annotations: r.map('annotations'),
    });
  }
  const blobs = new Map<string, CtrBlob>();
  const content = top?.subs.get('content');
  for (const [d, r] of sub(content?.bucket('blob'))) blobs.set(d, { digest: d, size: r.size(), ...r.times(), labels: r.map('labels') });
  const snapshots = new Map<string, Map<string, CtrSnapshot>>();
  for (const [sn, sr] of sub(top?.subs.get('snapshots'))) {
    const m = new Map<string, CtrSnapshot>();
    for (const [key, h] of sr.subs) {
      const r = new Rec(h);
      m.set(key, {
        snapshotter: sn, key, name: r.str('name'), parent: r.str('parent'),
        children: [...(r.subs.get('children')?.entries() ?? [])].map((e) => e.key.toString()),
        ...r.times(), labels: r.map('labels'),
      });
    }
    snapshots.set(sn, m);
  }
  const leases: CtrLease[] = [];
  for (const [id, r] of sub(top?.subs.get('leases'))) {
    const snaps: { snapshotter: string; key: string }[] = [];
    for (const [sn, sb] of r.subs.get('snapshots')?.children() ?? []) for (const e of sb.entries()) snaps.push({ snapshotter: sn, key: e.key.toString() });
    const content = [...(r.subs.get('content')?.entries() ?? [])].map((e) => e.key.toString());
    leases.push({ id, createdAt: r.times().createdAt, labels: r.map('labels'), snapshots: snaps, content });
  }
  const containers: CtrContainer[] = [];
  for (const [id, r] of sub(top?.subs.get('containers'))) {
    const rt = r.subs.get('runtime');
    containers.push({
      id, image: r.str('image'), snapshotter: r.str('snapshotter'), snapshotKey: r.str('snapshotKey'),
      runtime: rt ? new Rec(rt).str('name') : null, ...r.times(), labels: r.map('labels'),
    });
  }
  return { name, images, blobs, snapshots, leases, containers };
}
