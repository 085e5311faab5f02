// The metadata half of an export: walk a tree (or a change list) and gather,
// for each entry, everything its tar header needs: lstat fields, xattrs, the
// overlay opaque flag, the symlink target. The content half (reading files) and
// the encoding stay with the producer in export.ts.
//
// Split out so that the walk of a large tree can run on a worker thread
// (scan-worker.ts) while the main thread reads file data: the xattr calls alone
// (one FFI call per entry, ~8 µs each) cost as much as everything else a walk
// does. A TreeScanner's state is plain data, so a walk begun in-thread is handed
// to the worker mid-way (see export.ts).
import * as fs from 'node:fs';
import * as sys from '../sys/syscalls.ts';
import type { TarHeader } from './tar-header.ts';
import { WHITEOUT_META_PREFIX, WHITEOUT_OPAQUE_DIR, fsPath, overlayOpaqueXattr, type WhiteoutFormat } from './types.ts';
import { readDirRawNames } from '../sys/read-dir.ts';

/** One entry as the producer needs it: the header's numbers plus what it derives the rest from. */
export interface Scanned extends Pick<TarHeader, 'uid' | 'gid' | 'size' | 'mtimeSec' | 'mtimeNsec' | 'linkname'> {
  /** raw byte-string path relative to the root, no leading slash */
  rel: string;
  /** st_mode: file type and permission bits */
  mode: number;
  rdev: number;
  /** `dev:ino` of a regular file with more than one link (hardlink detection), else '' */
  linkKey: string;
  /** xattrs to archive (the overlay driver's own trusted.overlay.* / user.overlay.* left out) */
  xattrs: [string, Buffer][] | null;
  /** a directory carrying this form's opaque xattr */
  opaque: boolean;
  /** a regular file whose xattrs the scan left to the reader (readXattrs), to even out two threads' work */
  xattrsLater: boolean;
}

export interface ScanOptions {
  format: WhiteoutFormat;
  xattrs: boolean;
}

/** A directory being walked: its sorted entry names and how far we are. */
export interface ScanFrame { rel: string; names: string[]; i: number }

const NS = 1_000_000_000n;

/**
 * lstat + xattrs + readlink of `rel` under `root` (null if it does not exist and `missingOk`).
 * With `fileXattrsLater`, a regular file's xattrs are not read (xattrsLater says so).
 */
export function scanEntry(root: string, rel: string, opts: ScanOptions, missingOk = false, fileXattrsLater = false): Scanned | null {
  const p = fsPath(rel === '' ? root : root + '/' + rel);
  let st: fs.BigIntStats;
  try {
    st = fs.lstatSync(p, { bigint: true });
  } catch (e) {
    // a change list may name a file the container removed since: moby skips it too
    if (missingOk && (e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  const mode = Number(st.mode);
  const ifmt = mode & sys.S_IFMT;
  let sec = st.mtimeNs / NS;
  let nsec = st.mtimeNs % NS;
  if (nsec < 0n) {
    sec -= 1n;
    nsec += NS;
  }
  const s: Scanned = {
    rel, mode, uid: Number(st.uid), gid: Number(st.gid), size: Number(st.size), mtimeSec: Number(sec), mtimeNsec: Number(nsec),
    rdev: Number(st.rdev), linkKey: ifmt === sys.S_IFREG && st.nlink > 1n ? `${st.dev}:${st.ino}` : '',
    linkname: '', xattrs: null, opaque: false, xattrsLater: false,
  };
  if (ifmt === sys.S_IFSOCK) return s; // not archived; the producer drops it
  if (fileXattrsLater && opts.xattrs && ifmt === sys.S_IFREG) s.xattrsLater = true;
  else readXattrs(p, ifmt, opts, s);
  if (ifmt === sys.S_IFLNK) s.linkname = fs.readlinkSync(p, { encoding: 'buffer' }).toString('latin1');
  return s;
}

/** The xattrs of the entry at `p` (of type `ifmt`) into `s`: those to archive, and the opaque flag. */
export function readXattrs(p: string | Buffer, ifmt: number, opts: ScanOptions, s: Pick<Scanned, 'xattrs' | 'opaque'>): void {
  const opaqueXattr = overlayOpaqueXattr(opts.format);
  if (opts.xattrs) {
    for (const name of sys.llistxattr(p)) {
      if (name.startsWith('trusted.overlay.') || name.startsWith('user.overlay.')) {
        if (name === opaqueXattr && ifmt === sys.S_IFDIR) s.opaque = sys.lgetxattr(p, name)?.toString() === 'y';
        continue;
      }
      const v = sys.lgetxattr(p, name);
      if (v) (s.xattrs ??= []).push([name, v]);
    }
  } else if (opaqueXattr && ifmt === sys.S_IFDIR) {
    s.opaque = sys.lgetxattr(p, opaqueXattr)?.toString() === 'y';
  }
}

/** Depth-first walk below `root` in byte order of the paths, parents before children. */
export class TreeScanner {
  constructor(
    readonly root: string,
    readonly opts: ScanOptions,
    /** the walk so far (a fresh walk when omitted) */
    readonly stack: ScanFrame[] = [{ rel: '', names: readSorted(root, ''), i: 0 }],
  ) {}

  /** The next entry, or null at the end (a regular file's xattrs left to the reader with `fileXattrsLater`). */
  next(fileXattrsLater = false): Scanned | null {
    for (;;) {
      const top = this.stack[this.stack.length - 1];
      if (!top) return null;
      if (top.i >= top.names.length) {
        this.stack.pop();
        continue;
      }
      const name = top.names[top.i++];
      // aufs bookkeeping (.wh..wh.plnk, .orph, .aufs) is not layer content
      if (this.opts.format === 'aufs' && name.startsWith(WHITEOUT_META_PREFIX) && name !== WHITEOUT_OPAQUE_DIR) continue;
      const rel = top.rel === '' ? name : top.rel + '/' + name;
      const s = scanEntry(this.root, rel, this.opts, false, fileXattrsLater)!;
      if ((s.mode & sys.S_IFMT) === sys.S_IFDIR) this.stack.push({ rel, names: readSorted(this.root, rel), i: 0 });
      return s;
    }
  }
}

function readSorted(root: string, rel: string): string[] {
  return readDirRawNames(fsPath(rel === '' ? root : root + '/' + rel)).sort();
}

/**
 * A batch of entries in the form that crosses threads cheaply: numbers in one
 * Float64Array, strings joined by NUL (which no path, link target or
 * `dev:ino` key contains), xattrs only for the entries that have some.
 * Structured clone of 256 small objects costs several times more.
 */
export interface PackedBatch {
  nums: Float64Array;
  rels: string;
  linkKeys: string;
  linknames: string;
  xattrs: [number, [string, Buffer][]][];
}

const FIELDS = 9; // mode uid gid size mtimeSec mtimeNsec rdev opaque xattrsLater

export function packBatch(entries: Scanned[]): PackedBatch {
  const nums = new Float64Array(entries.length * FIELDS);
  const xattrs: [number, [string, Buffer][]][] = [];
  entries.forEach((s, i) => {
    const o = i * FIELDS;
    nums[o] = s.mode;
    nums[o + 1] = s.uid;
    nums[o + 2] = s.gid;
    nums[o + 3] = s.size;
    nums[o + 4] = s.mtimeSec;
    nums[o + 5] = s.mtimeNsec;
    nums[o + 6] = s.rdev;
    nums[o + 7] = s.opaque ? 1 : 0;
    nums[o + 8] = s.xattrsLater ? 1 : 0;
    if (s.xattrs) xattrs.push([i, s.xattrs]);
  });
  return {
    nums, xattrs,
    rels: entries.map((s) => s.rel).join('\0'),
    linkKeys: entries.map((s) => s.linkKey).join('\0'),
    linknames: entries.map((s) => s.linkname).join('\0'),
  };
}

export function unpackBatch(b: PackedBatch): Scanned[] {
  const rels = b.rels.split('\0');
  const keys = b.linkKeys.split('\0');
  const links = b.linknames.split('\0');
  const out: Scanned[] = new Array(rels.length);
  const n = b.nums;
  for (let i = 0; i < rels.length; i++) {
    const o = i * FIELDS;
    out[i] = {
      rel: rels[i], mode: n[o], uid: n[o + 1], gid: n[o + 2], size: n[o + 3], mtimeSec: n[o + 4], mtimeNsec: n[o + 5],
      rdev: n[o + 6], opaque: n[o + 7] === 1, xattrsLater: n[o + 8] === 1, linkKey: keys[i], linkname: links[i], xattrs: null,
    };
  }
  // values arrive as Uint8Array views after the thread crossing
  for (const [i, x] of b.xattrs) out[i].xattrs = x.map(([k, v]) => [k, Buffer.from(v.buffer, v.byteOffset, v.byteLength)]);
  return out;
}
