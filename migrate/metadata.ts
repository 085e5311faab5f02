// image/<from> copied to image/<to>: the metadata stays byte for byte what it
// was (the cache-ids are kept, so they name the migrated layer dirs) but for
// each layer's `size`, which becomes what the target's applyDiff returned (what
// dockerd on the target records: Σ tar entry sizes on the naive path, the diff
// dir's size on overlay2's). Each file fsynced, each directory synced once its
// entries are in.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { digestHex } from '../layerstore/digests.ts';
import { mkdirDurable, syncDir, writeFileDurable } from '../layerstore/durable.ts';
import { MigrateError } from './plan.ts';
import { readDirEntryStrings } from '../sys/read-dir.ts';

/** Copy the metadata tree `src` to `dst` (made fresh; a killed copy's leftover is replaced); layerdb/tmp is not copied. */
export function copyMetadata(src: string, dst: string, sizes: ReadonlyMap<string, number>): void {
  fs.rmSync(dst, { recursive: true, force: true });
  mkdirDurable(path.dirname(dst), 0o700);
  copyDir(src, dst, path.join(src, 'layerdb', 'tmp'));
  for (const [chainId, size] of sizes) {
    const file = path.join(dst, 'layerdb', 'sha256', digestHex(chainId), 'size');
    if (fs.readFileSync(file, 'utf8').trim() !== String(size)) writeFileDurable(file, String(size), fs.statSync(file).mode & 0o7777);
  }
}

function copyDir(src: string, dst: string, skip: string): void {
  const st = fs.lstatSync(src);
  fs.mkdirSync(dst, { mode: st.mode & 0o7777 });
  fs.chmodSync(dst, st.mode & 0o7777);
  for (const e of readDirEntryStrings(src)) {
    const s = path.join(src, e.name);
    const d = path.join(dst, e.name);
    if (s === skip) {
      fs.mkdirSync(d, { mode: fs.lstatSync(s).mode & 0o7777 });
      continue;
    }
    if (e.isDirectory()) copyDir(s, d, skip);
    else if (e.isFile()) copyFile(s, d);
    else throw new MigrateError(`${s}: not a file or directory (the metadata holds only those)`);
  }
  syncDir(dst);
}

function copyFile(src: string, dst: string): void {
  fs.copyFileSync(src, dst, fs.constants.COPYFILE_EXCL);
  fs.chmodSync(dst, fs.statSync(src).mode & 0o7777);
  const fd = fs.openSync(dst, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
