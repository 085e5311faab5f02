// Tree digests: a readable manifest of everything a layer tree carries (one
// line per entry) and its xxh64, so two trees can be compared for equality
// and a mismatch shown as a short diff.
//
// A line: `<path>\t<type> <fields…>`, sorted by raw path. Paths and other byte
// strings are printed as UTF-8 where they are valid UTF-8 and as \xHH
// elsewhere (and for controls, '\' and, in values, ' '), so the text is
// unambiguous and still names non-UTF-8 files exactly.
import fs from 'node:fs';
import xxhash from 'xxhash-wasm';
import { lgetxattr, llistxattr, major, minor, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK } from '../sys/syscalls.ts';
import { fsPath, rawPath } from './types.ts';
import { readDirRawNames } from '../sys/read-dir.ts';

export interface DigestOptions {
  /** Include directory mtimes (default true). Union mounts change them, so compare a merged view with false. */
  dirMtimes?: boolean;
  /** Include the root directory's own mode, owner and times (default true). Its xattrs are always included. */
  rootMetadata?: boolean;
  /** xattr names to leave out; default: `trusted.overlay.*` and `user.overlay.*` (the overlay driver's bookkeeping). */
  ignoreXattrs?: (name: string) => boolean;
  /** Entries to leave out (with everything below them), by raw path from the tree root written like Change.path ('/a/b'). */
  ignore?: (rawRelPath: string) => boolean;
}

let hasher: ReturnType<typeof xxhash> | undefined;
/** xxhash-wasm instantiates a wasm module: do it once per process. */
function xxh(): ReturnType<typeof xxhash> {
  hasher ??= xxhash();
  return hasher;
}

const CHUNK = 1 << 20;

const defaultIgnoreXattrs = (name: string) => name.startsWith('trusted.overlay.') || name.startsWith('user.overlay.');

const typeNames = new Map<number, string>([
  [S_IFDIR, 'dir'], [S_IFREG, 'file'], [S_IFLNK, 'symlink'], [S_IFCHR, 'char'],
  [S_IFBLK, 'block'], [S_IFIFO, 'fifo'], [S_IFSOCK, 'socket'],
]);

const hex16 = (v: bigint) => v.toString(16).padStart(16, '0');

function escByte(b: number): string {
  return `\\x${b.toString(16).padStart(2, '0')}`;
}

/**
 * A raw byte string as readable text: valid UTF-8 (from U+00A0 up) passes
 * through, every other byte >= 0x80, controls, '\' and (with `space`) ' '
 * become \xHH. Injective, so equal text means equal bytes.
 */
export function escapeRaw(raw: string, space = false): string {
  let out = '';
  const n = raw.length;
  let i = 0;
  while (i < n) {
    const b = raw.charCodeAt(i);
    if (b < 0x80) {
      out += b < 0x20 || b === 0x7f || b === 0x5c || (space && b === 0x20) ? escByte(b) : raw[i];
      i++;
      continue;
    }
    let len = 0;
    let cp = 0;
    let min = 0;
    if (b >= 0xc2 && b <= 0xdf) [len, cp, min] = [2, b & 0x1f, 0x80];
    else if (b >= 0xe0 && b <= 0xef) [len, cp, min] = [3, b & 0x0f, 0x800];
    else if (b >= 0xf0 && b <= 0xf4) [len, cp, min] = [4, b & 0x07, 0x10000];
    let ok = len > 0 && i + len <= n;
    for (let k = 1; ok && k < len; k++) {
      const c = raw.charCodeAt(i + k);
      if ((c & 0xc0) !== 0x80) ok = false;
      cp = (cp << 6) | (c & 0x3f);
    }
    if (ok && cp >= min && cp >= 0xa0 && cp <= 0x10ffff && (cp < 0xd800 || cp > 0xdfff)) {
      out += String.fromCodePoint(cp);
      i += len;
    } else {
      out += escByte(b);
      i++;
    }
  }
  return out;
}

/** Inverse of escapeRaw: text → raw byte string. */
export function unescapeRaw(text: string): string {
  return text.replace(/\\x([0-9a-f]{2})|[^\\]+/g, (m, h: string | undefined) =>
    h !== undefined ? String.fromCharCode(parseInt(h, 16)) : Buffer.from(m, 'utf8').toString('latin1'));
}

interface Item {
  path: string;
  st: fs.BigIntStats;
}

/** Every entry below `abs` (raw), lstat'ed, not following symlinks. */
function collect(abs: string, rel: string, items: Item[], ignore: ((p: string) => boolean) | undefined): void {
  for (const name of readDirRawNames(fsPath(abs || '/'))) {
    const path = `${rel}/${name}`;
    if (ignore?.(path)) continue;
    const childAbs = `${abs}/${name}`;
    const st = fs.lstatSync(fsPath(childAbs), { bigint: true, throwIfNoEntry: false });
    if (!st) continue; // vanished
    items.push({ path, st });
    if (st.isDirectory()) collect(childAbs, path, items, ignore);
  }
}

function mtimeText(ns: bigint): string {
  const s = ns / 1_000_000_000n - (ns < 0n && ns % 1_000_000_000n !== 0n ? 1n : 0n);
  const rem = ns - s * 1_000_000_000n;
  return `${s}.${rem.toString().padStart(9, '0')}`;
}

/**
 * The manifest of the tree at `dir`: one line per entry (root is '/'),
 * sorted by raw path, covering type, permission bits (with setuid/setgid/
 * sticky), uid, gid, mtime to the ns, rdev of devices, symlink target, size
 * and xxh64 of regular-file content (streamed in 1 MiB chunks), all xattrs
 * (sorted, values hex) and hardlinks: the first path (in manifest order) of
 * an inode with nlink > 1 is written in full, later ones as `hardlink to=<first>`.
 * Never follows symlinks. Throws on unreadable entries.
 */
export async function treeManifest(dir: string, opts: DigestOptions = {}): Promise<string[]> {
  const { create64 } = await xxh();
  const dirMtimes = opts.dirMtimes ?? true;
  const rootMetadata = opts.rootMetadata ?? true;
  const ignoreXattr = opts.ignoreXattrs ?? defaultIgnoreXattrs;
  const root = rawPath(dir).replace(/\/+$/, '');
  const rootSt = fs.lstatSync(fsPath(root || '/'), { bigint: true });
  if (!rootSt.isDirectory()) throw new Error(`treeManifest: ${dir} is not a directory`);
  const items: Item[] = [{ path: '/', st: rootSt }];
  collect(root, '', items, opts.ignore);
  items.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));

  const firstPath = new Map<string, string>();
  const buf = Buffer.allocUnsafe(CHUNK);
  const lines: string[] = [];
  for (const { path, st } of items) {
    const abs = path === '/' ? root || '/' : root + path;
    const fmt = Number(st.mode) & S_IFMT;
    const isDir = fmt === S_IFDIR;
    let line = `${escapeRaw(path)}\t`;
    if (!isDir && st.nlink > 1n) {
      const key = `${st.dev}:${st.ino}`;
      const first = firstPath.get(key);
      if (first !== undefined) {
        lines.push(`${line}hardlink to=${escapeRaw(first, true)}`);
        continue;
      }
      firstPath.set(key, path);
    }
    line += typeNames.get(fmt) ?? `type=${fmt.toString(8)}`;
    if (!(path === '/' && !rootMetadata)) {
      line += ` mode=${(Number(st.mode) & 0o7777).toString(8).padStart(4, '0')} uid=${st.uid} gid=${st.gid}`;
      if (!isDir || dirMtimes) line += ` mtime=${mtimeText(st.mtimeNs)}`;
    }
    if (fmt === S_IFCHR || fmt === S_IFBLK) line += ` rdev=${major(Number(st.rdev))}:${minor(Number(st.rdev))}`;
    if (fmt === S_IFLNK) line += ` target=${escapeRaw(fs.readlinkSync(fsPath(abs), { encoding: 'buffer' }).toString('latin1'), true)}`;
    if (fmt === S_IFREG) {
      const digest = st.size <= BigInt(CHUNK) ? hashSmallFile(abs, buf, create64) : await hashFile(abs, buf, create64);
      line += ` size=${st.size} xxh64=${digest}`;
    }
    const names = llistxattr(fsPath(abs)).filter((n) => !ignoreXattr(n)).sort();
    for (const name of names) {
      const v = lgetxattr(fsPath(abs), name);
      if (v === null) continue; // removed meanwhile
      line += ` xattr:${escapeRaw(Buffer.from(name, 'utf8').toString('latin1'), true)}=${v.toString('hex')}`;
    }
    lines.push(line);
  }
  return lines;
}

type Create64 = (seed?: bigint) => { update(b: Uint8Array): unknown; digest(): bigint };

/**
 * Files up to one chunk are read synchronously: three async hops per file
 * (open, read, close) cost ~10x more than the read for the many small files
 * of a rootfs. Still chunked, in case the file grew since lstat.
 */
function hashSmallFile(abs: string, buf: Buffer, create64: Create64): string {
  const fd = fs.openSync(fsPath(abs), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  try {
    const h = create64();
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0;) h.update(buf.subarray(0, n));
    return hex16(h.digest());
  } finally {
    fs.closeSync(fd);
  }
}

async function hashFile(abs: string, buf: Buffer, create64: Create64): Promise<string> {
  const fh = await fs.promises.open(fsPath(abs), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  try {
    const h = create64();
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
    }
    return hex16(h.digest());
  } finally {
    await fh.close();
  }
}

/** xxh64 (16 hex digits) of the manifest of `dir` (lines joined by '\n'). */
export async function treeDigest(dir: string, opts: DigestOptions = {}): Promise<string> {
  const lines = await treeManifest(dir, opts);
  const { create64 } = await xxh();
  const h = create64();
  for (const l of lines) h.update(`${l}\n`);
  return hex16(h.digest());
}

const pathOf = (line: string) => {
  const t = line.indexOf('\t');
  return unescapeRaw(t < 0 ? line : line.slice(0, t));
};

/**
 * The differences between two manifests, aligned by path: `- line` only or
 * different in `a`, `+ line` only or different in `b`. At most `max` paths
 * are shown, then a count of the rest. '' when equal.
 */
export function manifestDiff(a: string[], b: string[], max = 20): string {
  const out: string[] = [];
  let differing = 0;
  let i = 0;
  let j = 0;
  const show = (s: string) => {
    if (differing <= max) out.push(s);
  };
  while (i < a.length || j < b.length) {
    const pa = i < a.length ? pathOf(a[i]) : null;
    const pb = j < b.length ? pathOf(b[j]) : null;
    if (pa !== null && pb !== null && pa === pb) {
      if (a[i] !== b[j]) {
        differing++;
        show(`- ${a[i]}`);
        show(`+ ${b[j]}`);
      }
      i++;
      j++;
    } else if (pb === null || (pa !== null && pa < pb)) {
      differing++;
      show(`- ${a[i++]}`);
    } else {
      differing++;
      show(`+ ${b[j++]}`);
    }
  }
  if (differing > max) out.push(`… and ${differing - max} more differing paths`);
  return out.join('\n');
}
