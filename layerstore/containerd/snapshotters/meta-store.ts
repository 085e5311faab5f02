// The store every snapshotter of containerd's tree keeps beside its trees
// (containerd snapshots/storage/bolt.go, the same schema for overlayfs,
// native and btrfs): <home>/metadata.db holds v1/snapshots/<name>/{id
// (uvarint), kind (1 byte), parent, size, inodes (varints, set at commit),
// createdat, updatedat, labels/}.
import * as path from 'node:path';
import type { Problems } from '../../problems.ts';
import { goTime, str, stringMap, uvarint, varint } from '../encoding.ts';
import { openBolt } from '../meta-db.ts';

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

export const METADATA_DB = 'metadata.db';

/** A snapshotter's records by name; null when `home` has no metadata.db, or (with a problem) when it cannot be read. */
export function readMetaStore(home: string, problems: Problems): Map<string, BackendSnapshot> | null {
  const file = path.join(home, METADATA_DB);
  const db = openBolt(file, problems, false);
  if (!db) return null;
  try {
    const out = new Map<string, BackendSnapshot>();
    for (const [name, b] of db.bucket('v1', 'snapshots')?.children() ?? []) {
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
