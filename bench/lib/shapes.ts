// Layer tars in moby graphtest shapes (daemon/graphdriver/graphtest: addManyFiles, changeManyFiles,
// addFiles, addLayerFiles): seeded content, fixed mtimes, so every run and every driver gets the same bytes.
import { createWriteStream, statSync } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { packEntries, randomBytes, type SampleEntry, type SampleHeader } from '../../fixtures/sample-image.ts';

export const T_LOWER = 1_700_000_000;
export const T_UPPER = T_LOWER + 777;

export const at = (sec: number) => new Date(sec * 1000);
/** every field of a ustar header, root-owned */
export const header = (h: Partial<SampleHeader>): SampleHeader =>
  ({ name: '', size: 0, mode: 0o755, mtime: new Date(0), type: 'file', linkname: '', uid: 0, gid: 0, uname: '', gname: '', devmajor: 0, devminor: 0, ...h });
export const dirEntry = (name: string, mtime: number, mode = 0o755): SampleEntry =>
  ({ header: header({ name: `${name}/`, type: 'directory', mode, mtime: at(mtime) }) });
export const fileEntry = (name: string, body: Buffer | string, mtime: number, mode = 0o755): SampleEntry => {
  const b = typeof body === 'string' ? Buffer.from(body) : body;
  return { header: header({ name, type: 'file', mode, size: b.length, mtime: at(mtime) }), body: b };
};
/** aufs/tar-form whiteout `<dir>.wh.<name>` (dir '' or ending in '/'). */
export const whiteoutEntry = (dir: string, name: string, mtime: number) => fileEntry(`${dir}.wh.${name}`, Buffer.alloc(0), mtime, 0o600);

/** graphtest addManyFiles: `directory-<i>/file-<i+j>` = 64 seeded bytes, 100 per directory. */
export function manyFiles(count: number, seed: number, mtime: number): SampleEntry[] {
  const out: SampleEntry[] = [];
  for (let i = 0; i < count; i += 100) {
    out.push(dirEntry(`directory-${i}`, mtime));
    for (let j = 0; j < 100 && i + j < count; j++) out.push(fileEntry(`directory-${i}/file-${i + j}`, randomBytes(seed + i + j, 64), mtime));
  }
  return out;
}

/** graphtest changeManyFiles as a layer tar: rewrite (j%3==0), add (1), whiteout (2). */
export function changeManyFiles(count: number, seed: number, mtime: number): SampleEntry[] {
  const out: SampleEntry[] = [];
  for (let i = 0; i < count; i += 100) {
    out.push(dirEntry(`directory-${i}`, mtime));
    for (let j = 0; j < 100 && i + j < count; j++) {
      const k = i + j;
      if (j % 3 === 0) out.push(fileEntry(`directory-${i}/file-${k}`, randomBytes(seed + k + 1_000_000, 64), mtime));
      else if (j % 3 === 1) out.push(fileEntry(`directory-${i}/file-${seed}-${k}`, randomBytes(seed + k, 64), mtime));
      else out.push(whiteoutEntry(`directory-${i}/`, `file-${k}`, mtime));
    }
  }
  return out;
}

export const deepId = (i: number) => `deep-${String(i).padStart(3, '0')}`;

/** The deep chain: base = graphtest addFiles(seed 50) + testfile.txt; layer i = addLayerFiles. */
export function deepLayers(count: number): SampleEntry[][] {
  const base = [
    fileEntry('file-a', randomBytes(50, 64), T_LOWER), dirEntry('dir-b', T_LOWER),
    fileEntry('dir-b/file-b', randomBytes(51, 128), T_LOWER), fileEntry('file-c', randomBytes(52, 16384), T_LOWER),
    fileEntry('testfile.txt', 'test content', T_LOWER),
  ];
  const out = [base];
  for (let i = 1; i <= count; i++) {
    out.push([
      fileEntry('top-id', deepId(i), T_LOWER + i), dirEntry(`layer-${i}`, T_LOWER + i),
      fileEntry(`layer-${i}/layer-id`, deepId(i), T_LOWER + i), fileEntry(`layer-${i}/parent-id`, deepId(i - 1), T_LOWER + i),
    ]);
  }
  return out;
}

export async function writeTar(entries: SampleEntry[], path: string): Promise<number> {
  await pipeline(packEntries(entries), createWriteStream(path));
  return statSync(path).size;
}
