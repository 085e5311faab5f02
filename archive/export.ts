// exportDir / exportChanges: tar streams of a directory or of a change list,
// with whiteouts always in the aufs (tar) form.
//
// Contract:
// - Deterministic: entries in byte order of their paths (parents first), the
//   same tree always gives the same bytes. mtimes carry nanoseconds in PAX
//   records; owners are numeric; xattrs go out as SCHILY.xattr.* (the
//   overlay driver's own trusted.overlay.* / user.overlay.* never do).
// - The root directory itself is not an entry (layer tars have none).
// - Hardlinked files (same inode inside the export) become hardlink entries.
// - Backpressure: the stream is pulled; each read fills one ~1 MiB chunk with
//   synchronous calls, so memory does not grow with layer size.
// - Two threads for a big tree: past 8,000 entries (20,000 from sources) the walk (lstat,
//   xattrs, readlink: scan.ts; walk.ts) moves to a worker, at most 16 batches of 256
//   entries ahead, while this thread reads file data and encodes. Same bytes
//   either way for a tree nobody changes meanwhile (as for any tar of a live
//   tree, a file replaced between its lstat and its read is not consistent;
//   with the worker that window spans up to 4,096 entries, not one).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import * as sys from '../sys/syscalls.ts';
import type { ScanOptions, Scanned } from './scan.ts';
import { splitRel } from './scope.ts';
import { BLOCK, encodeHeader, headerSpace, type EntryType, type TarHeader } from './tar-header.ts';
import { overlayOpaqueXattr, WHITEOUT_OPAQUE_DIR, WHITEOUT_PREFIX, fsPath, rawPath, type Change, type WhiteoutFormat } from './types.ts';
import { ChangeList, PENDING, Walk, type Source, type WalkStats } from './walk.ts';

export type { WalkStats };

export interface ExportOptions {
  /** how `dir` stores whiteouts: the overlay forms are converted to tar form, 'aufs' drops aufs internals */
  whiteouts?: WhiteoutFormat;
  /** read and export xattrs (default true) */
  xattrs?: boolean;
  /**
   * whether a worker thread walks the tree (the lstat/xattr/readlink half)
   * while this thread reads file data: 'auto' (default) once a tree proves
   * large, 'always' from the first entry (waiting for the worker to load),
   * 'never'. Same bytes either way.
   */
  parallel?: 'auto' | 'always' | 'never';
  /** told once, at the end of a whole-tree walk, how many entries each thread scanned */
  onWalkEnd?: (stats: WalkStats) => void;
}

const CHUNK = 1 << 20;

/** A tar stream of everything below `dir`. */
export function exportDir(dir: string, opts: ExportOptions = {}): Readable {
  const root = rawPath(path.resolve(dir));
  return new TarProducer(root, opts, new Walk(root, scanOptions(opts), opts.parallel ?? 'auto', opts.onWalkEnd)).stream();
}

/** moby ExportChanges: a tar of the changed paths of `dir`, deletions as `.wh.` entries. */
export function exportChanges(dir: string, changes: Change[], opts: ExportOptions = {}): Readable {
  const root = rawPath(path.resolve(dir));
  const sorted = [...changes].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return new TarProducer(root, opts, new ChangeList(root, scanOptions(opts), sorted)).stream();
}

function scanOptions(opts: ExportOptions): ScanOptions {
  return { format: opts.whiteouts ?? 'none', xattrs: opts.xattrs ?? true };
}

class TarProducer {
  private readonly opaqueXattr: string | null;
  private buf = Buffer.allocUnsafe(CHUNK);
  private pos = 0;
  private fd = -1;
  private fileLeft = 0;
  private padLeft = 0;
  private done = false;
  private readonly seen = new Map<string, string>(); // dev:ino → first path, for hardlinks

  constructor(private readonly root: string, opts: ExportOptions, private readonly source: Source) {
    this.opaqueXattr = overlayOpaqueXattr(opts.whiteouts ?? 'none');
  }

  stream(): Readable {
    const self = this;
    return new Readable({
      highWaterMark: CHUNK,
      read() {
        const pump = (): void => {
          if (this.destroyed) return;
          try {
            const chunk = self.fill();
            if (chunk === PENDING) {
              // nothing to give yet (the scan worker is behind): come back when it has posted
              self.source.wait().then(pump, (e: Error) => {
                self.close();
                this.destroy(e);
              });
              return;
            }
            this.push(chunk);
            if (chunk !== null && self.done && self.pos === 0) this.push(null);
          } catch (e) {
            self.close();
            this.destroy(e as Error);
          }
        };
        pump();
      },
      destroy(err, cb) {
        self.close();
        cb(err);
      },
    });
  }

  /** Release everything: the open file and the source (its worker). */
  private close(): void {
    this.closeFile();
    this.source.close();
  }

  private closeFile(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }

  /** Produce the next chunk: null at the end, a short one (or PENDING) when the source has to wait. */
  private fill(): Buffer | null | typeof PENDING {
    let pending = false;
    while (!this.done && this.pos < CHUNK) {
      if (!this.step()) {
        pending = true;
        break;
      }
    }
    if (this.pos === 0) return pending ? PENDING : null;
    const out = this.buf.subarray(0, this.pos);
    this.buf = Buffer.allocUnsafe(CHUNK);
    this.pos = 0;
    return out;
  }

  /** One step of work; false when the source has nothing yet. */
  private step(): boolean {
    if (this.fd >= 0 || this.padLeft) {
      this.copyFile();
      return true;
    }
    const s = this.source.next();
    if (s === PENDING) return false;
    if (s === null) this.finish();
    else if ('deleted' in s) this.whiteoutFor(s.deleted);
    else this.entry(s);
    return true;
  }

  private finish(): void {
    // end of archive: two zero blocks
    this.reserve(BLOCK * 2);
    this.buf.fill(0, this.pos, this.pos + BLOCK * 2);
    this.pos += BLOCK * 2;
    this.done = true;
    this.source.close();
  }

  private entry(s: Scanned): void {
    const { rel } = s;
    const ifmt = s.mode & sys.S_IFMT;
    if (ifmt === sys.S_IFSOCK) return; // sockets are not archived (GNU tar and moby skip them)
    const h: TarHeader = {
      name: rel, type: 'file', mode: s.mode & 0o7777, uid: s.uid, gid: s.gid, size: 0,
      mtimeSec: s.mtimeSec, mtimeNsec: s.mtimeNsec, linkname: '', devmajor: 0, devminor: 0,
      xattrs: s.xattrs ? new Map(s.xattrs) : null,
    };
    let type: EntryType;
    switch (ifmt) {
      case sys.S_IFDIR: type = 'dir'; h.name = rel + '/'; break;
      case sys.S_IFLNK: type = 'symlink'; h.linkname = s.linkname; break;
      case sys.S_IFCHR: type = 'char'; break;
      case sys.S_IFBLK: type = 'block'; break;
      case sys.S_IFIFO: type = 'fifo'; break;
      default: type = 'file';
    }
    h.type = type;
    if (type === 'char' || type === 'block') {
      h.devmajor = sys.major(s.rdev);
      h.devminor = sys.minor(s.rdev);
      if (type === 'char' && s.rdev === 0 && this.opaqueXattr) {
        // overlay whiteout → `.wh.<name>`, as moby's overlayWhiteoutConverter writes it
        const [d, b] = splitRel(rel);
        h.name = (d === '' ? '' : d + '/') + WHITEOUT_PREFIX + b;
        h.type = 'file';
        h.mode = 0o600;
        h.xattrs = null;
      }
    }
    if (s.linkKey) {
      const first = this.seen.get(s.linkKey);
      if (first !== undefined) {
        h.type = 'link';
        h.linkname = first;
        return this.header(h);
      }
      this.seen.set(s.linkKey, rel);
    }
    if (type === 'file') {
      h.size = s.size;
      this.header(h);
      if (h.size > 0) {
        this.fd = fs.openSync(fsPath(this.root + '/' + rel), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
        this.fileLeft = h.size;
        this.padLeft = (BLOCK - (h.size % BLOCK)) % BLOCK;
      }
      return;
    }
    this.header(h);
    if (s.opaque) {
      // the opaque marker inherits the dir's owner and permissions (moby)
      this.header({
        name: rel + '/' + WHITEOUT_OPAQUE_DIR, type: 'file', mode: h.mode & 0o777, uid: h.uid, gid: h.gid, size: 0,
        mtimeSec: 0, mtimeNsec: 0, linkname: '', devmajor: 0, devminor: 0, xattrs: null,
      });
    }
  }

  private whiteoutFor(rel: string): void {
    const [d, b] = splitRel(rel);
    // moby stamps these with time.Now(); epoch 0 keeps the export reproducible
    this.header({
      name: (d === '' ? '' : d + '/') + WHITEOUT_PREFIX + b, type: 'file', mode: 0, uid: 0, gid: 0, size: 0,
      mtimeSec: 0, mtimeNsec: 0, linkname: '', devmajor: 0, devminor: 0, xattrs: null,
    });
  }

  private header(h: TarHeader): void {
    this.reserve(headerSpace(h));
    this.pos += encodeHeader(h, this.buf, this.pos);
  }

  /** Make room for `n` header bytes in the staging buffer (grows it past CHUNK only for the rare overflow). */
  private reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const grown = Buffer.allocUnsafe(Math.max(CHUNK, this.pos + n));
    this.buf.copy(grown, 0, 0, this.pos);
    this.buf = grown;
  }

  private copyFile(): void {
    const room = this.buf.length - this.pos;
    if (room <= 0) return;
    if (this.fd >= 0) {
      const want = Math.min(room, this.fileLeft);
      let n = fs.readSync(this.fd, this.buf, this.pos, want, null);
      if (n === 0) {
        // the file shrank while we read it: pad with zeros like GNU tar, keep the archive valid
        this.buf.fill(0, this.pos, this.pos + want);
        n = want;
      }
      this.pos += n;
      this.fileLeft -= n;
      if (this.fileLeft === 0) this.closeFile();
      return;
    }
    const pad = Math.min(room, this.padLeft);
    this.buf.fill(0, this.pos, this.pos + pad);
    this.pos += pad;
    this.padLeft -= pad;
  }
}
