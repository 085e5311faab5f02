// What marks a containerd root, apart from its reader: layerstore/store.ts
// detects a store's layout with it and loads the reader (store.ts here) only
// for a containerd root.
import * as path from 'node:path';
import { isFile } from '../../sys/read-only-files.ts';

export const META_DB = path.join('io.containerd.metadata.v1.bolt', 'meta.db');

/** Does `root` look like a containerd root (it has a metadata store)? */
export function isContainerdRoot(root: string): boolean {
  return isFile(path.join(root, META_DB));
}
