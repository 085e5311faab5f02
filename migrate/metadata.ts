// image/<from> copied to image/<to>: the metadata stays byte for byte what it
// was (the cache-ids are kept, so they name the migrated layer dirs) but for
// each layer's `size`, which becomes what the target's applyDiff returned (what
// dockerd on the target records: Σ tar entry sizes on the naive path, the diff
// dir's size on overlay2's). Each file fsynced, each directory synced once its
// entries are in. And the containers' configs, whose "Driver" the switch
// rewrites: each checked before anything is staged, read like any store file.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { digestHex } from '../layerstore/digests.ts';
import { mkdirDurable, syncDir, writeFileDurable } from '../layerstore/durable.ts';
import { capText, describeFsError, describeJsonError, JSON_CAP, readFileReadOnly, TAG_STORE_CAP, TEXT_CAP } from '../sys/read-only-files.ts';
import { MigrateError } from './plan.ts';
import { readDirEntryStrings } from '../sys/read-dir.ts';

/**
 * A container's config.v2.json as a JSON object: a regular file (O_NOFOLLOW,
 * O_NONBLOCK: a symlink to /etc/shadow or a FIFO is refused unread) under the JSON cap.
 */
export function readContainerConfig(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileReadOnly(file, JSON_CAP, 'a container config').toString('utf8');
  } catch (e) {
    throw new MigrateError(`${file}: ${describeFsError(e)}`);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new MigrateError(`${file}: ${describeJsonError(text, e)}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new MigrateError(`${file}: is not a JSON object`);
  return v as Record<string, unknown>;
}

/**
 * Every container of the root will move: each config the plan names reads and
 * says "Driver": `from` (else the switch, past its commit, could not rewrite it),
 * and nothing under containers/ or layerdb/mounts/ is one the plan left out (a
 * symlinked or unreadable container would be left behind, its layers lost).
 */
export function checkContainers(root: string, from: string, containers: readonly { id: string; configPath: string }[]): void {
  const planned = new Set(containers.map((c) => c.id));
  for (const c of containers) {
    const driver = readContainerConfig(c.configPath).Driver;
    if (driver !== from) throw new MigrateError(`${c.configPath}: "Driver" is ${JSON.stringify(driver)}, not ${from}: dockerd on ${from} does not restore this container, and the migration would not rewrite it`);
  }
  for (const dir of [path.join(root, 'containers'), path.join(root, 'image', from, 'layerdb', 'mounts')]) {
    let names: string[];
    try {
      names = fs.readdirSync(dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw new MigrateError(`${dir}: ${describeFsError(e)}`);
    }
    for (const n of names) {
      if (planned.has(n)) continue;
      const p = path.join(dir, n);
      const st = fs.lstatSync(p);
      const what = st.isSymbolicLink() ? 'a symlink (not followed)' : st.isDirectory() ? 'a container the store cannot read' : 'not a container directory';
      throw new MigrateError(`${p}: is ${what}; migrating would leave it behind (move it away or repair it first)`);
    }
  }
}

/** Copy the metadata tree `src` to `dst` (made fresh; a killed copy's leftover is replaced); layerdb/tmp is not copied. */
export function copyMetadata(src: string, dst: string, sizes: ReadonlyMap<string, number>): void {
  // copyDir refuses symlinks below `src`; `src` itself is checked here (a readdir would follow it)
  if (!fs.lstatSync(src).isDirectory()) throw new MigrateError(`${src}: is not a directory (a symlink is not followed)`);
  fs.rmSync(dst, { recursive: true, force: true });
  mkdirDurable(path.dirname(dst), 0o700);
  copyDir(src, dst, path.join(src, 'layerdb', 'tmp'));
  for (const [chainId, size] of sizes) {
    const file = path.join(dst, 'layerdb', 'sha256', digestHex(chainId), 'size');
    if (readFileReadOnly(file, TEXT_CAP).toString('utf8').trim() !== String(size)) writeFileDurable(file, String(size), fs.statSync(file).mode & 0o7777);
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
    else if (e.isFile()) {
      // the largest store file a reader takes is the tag store; tar-splits, streamed whole by every layer's move already, are exempt
      const size = fs.lstatSync(s).size;
      if (size > TAG_STORE_CAP && e.name !== 'tar-split.json.gz') throw new MigrateError(`${s}: is ${size} bytes, over the ${capText(TAG_STORE_CAP)} cap for store metadata; not copied`);
      copyFile(s, d);
    }
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
