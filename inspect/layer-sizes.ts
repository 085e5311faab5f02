// How docker ≤ 0.6 sized a layer (legacy layersize), for verify to recompute
// it; docker 0.7+'s size is moby's directory.Size, archive/tree-size.ts.
import { firstLink, walkTree } from '../archive/tree-size.ts';

/**
 * docker ≤ 0.6 `StoreSize`: walk the layer directory (itself included) and
 * add st_size of every entry whose size is not 0 — directories too (4096 a
 * piece on ext4), symlinks by target length — each inode once. Depends on the
 * filesystem through directory sizes. (docker 0.7+ `utils.TreeSize` is moby's
 * directory.Size: st_size of everything but directories, each inode once.)
 */
export function graphStoreSize(dir: string): number {
  const seen = new Set<string>();
  let total = 0;
  walkTree(dir, {
    entry(_p, st) {
      if (st.size !== 0 && firstLink(seen, st)) total += st.size;
      return st.isDirectory();
    },
  });
  return total;
}
