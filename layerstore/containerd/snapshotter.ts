// The overlayfs snapshotter's own store (containerd snapshots/overlay and
// snapshots/storage/bolt.go): io.containerd.snapshotter.v1.overlayfs/
// metadata.db holds v1/snapshots/<name>/{id (uvarint), kind (1 byte),
// parent, size, inodes (varints, set at commit), createdat, updatedat,
// labels/}, and snapshots/<id>/fs is the snapshot's tree (an overlay upper
// dir: whiteouts as 0/0 char devices, opaque dirs by trusted.overlay.opaque).
import * as path from 'node:path';
import { walkTree } from '../../archive/tree-size.ts';
import type { Problems } from '../problems.ts';
import { goTime, str, stringMap, uvarint, varint } from './encoding.ts';
import { openBolt } from './meta-db.ts';

export type SnapshotKind = 'Unknown' | 'View' | 'Active' | 'Committed';
const KINDS: SnapshotKind[] = ['Unknown', 'View', 'Active', 'Committed'];

export interface BackendSnapshot {
  /** the snapshotter's key ("moby/4/sha256:…") */
  name: string;
  id: string | null;
  kind: SnapshotKind;
  parent: string | null;
  /** usage recorded at commit (committed snapshots only) */
  size: number | null;
  inodes: number | null;
  createdAt: Date | null;
  labels: Record<string, string>;
}

export const OVERLAYFS = 'overlayfs';

/** Where the overlayfs snapshotter keeps its store under a containerd root. */
export function overlayfsHome(root: string): string {
  return path.join(root, 'io.containerd.snapshotter.v1.overlayfs');
}

/** A snapshot's tree (its upper dir, for an active one). */
export function snapshotFs(root: string, id: string): string {
  return path.join(overlayfsHome(root), 'snapshots', id, 'fs');
}

/** The overlayfs snapshotter's snapshots by name; null (with a problem) when its metadata.db cannot be read. */
export function readOverlayfsSnapshots(root: string, problems: Problems): Map<string, BackendSnapshot> | null {
  const file = path.join(overlayfsHome(root), 'metadata.db');
  const db = openBolt(file, problems, false);
  if (!db) return null;
  try {
    const out = new Map<string, BackendSnapshot>();
    const bucket = db.bucket('v1', 'snapshots');
    for (const [name, b] of bucket?.children() ?? []) {
      const id = b.get('id');
      const kind = b.get('kind');
      const num = (k: string) => { const v = b.get(k); return v === null ? null : varint(v); };
      const idn = id === null ? null : uvarint(id);
      if (idn === null) problems.add(file, `snapshot ${name}: no readable id`);
      out.set(name, {
        name, id: idn === null ? null : String(idn), kind: kind && kind.length === 1 && kind[0] < 4 ? KINDS[kind[0]] : 'Unknown',
        parent: str(b, 'parent'), size: num('size'), inodes: num('inodes'), createdAt: goTime(b.get('createdat')), labels: stringMap(b.bucket('labels')),
      });
    }
    return out;
  } finally {
    db.close();
  }
}

export interface Usage {
  size: number;
  inodes: number;
}

/**
 * A tree's usage as the snapshotter measures it (continuity fs.DiskUsage):
 * allocated blocks × 512 and the count of distinct inodes, the root included.
 * Committed snapshots carry this from their commit; an active one is walked.
 */
export function treeUsage(dir: string): Usage {
  const seen = new Set<string>();
  let size = 0;
  walkTree(dir, {
    entry: (_p, st) => {
      const key = `${st.dev}:${st.ino}`;
      if (!seen.has(key)) {
        seen.add(key);
        size += st.blocks * 512;
      }
      return st.isDirectory();
    },
  });
  return { size, inodes: seen.size };
}
