// How Docker sized a layer, per era. The numbers a store records (legacy
// layersize, layerdb size) came from one of these; verify recomputes them.
import * as fs from 'node:fs';

/**
 * docker ≤ 0.6 `StoreSize`: walk the layer directory (itself included) and
 * add st_size of every entry whose size is not 0 — directories too (4096 a
 * piece on ext4), symlinks by target length — each inode once. Depends on the
 * filesystem through directory sizes.
 */
export function graphStoreSize(dir: string): number {
  const seen = new Set<string>();
  let total = 0;
  const visit = (p: Buffer) => {
    const st = fs.lstatSync(p);
    if (st.size !== 0) {
      const key = `${st.dev}:${st.ino}`;
      if (!seen.has(key)) {
        seen.add(key);
        total += st.size;
      }
    }
    if (st.isDirectory()) {
      for (const name of fs.readdirSync(p, { encoding: 'buffer' })) visit(Buffer.concat([p, Buffer.from('/'), name]));
    }
  };
  visit(Buffer.from(dir));
  return total;
}

/**
 * docker 0.7+ `utils.TreeSize` / moby `directory.Size` (aufs DiffSize, overlay2's
 * native ApplyDiff): st_size of everything but directories, each inode once —
 * archive's implementation (shared with the overlay2 driver), loaded when first
 * needed: it brings in the syscall layer, which `images` never needs.
 */
export async function treeSize(dir: string): Promise<number> {
  const { directorySize } = await import('../archive/changes.ts');
  return directorySize(dir);
}
