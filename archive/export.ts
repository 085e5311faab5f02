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
// - Piped into a regular file (an fs.WriteStream, or process.stdout redirected
//   to a file) with nothing written to it yet, the stream writes the file
//   itself: one reused 1 MiB buffer written with writeSync, large bodies moved
//   by sendfile(2). Same bytes; no chunk is allocated, copied or queued per MiB.
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
import { readXattrs, type ScanOptions, type Scanned } from './scan.ts';
import { splitRel } from './scope.ts';
import { BLOCK, encodeHeader, headerSpace, type EntryType, type TarHeader } from './tar-header.ts';
import { overlayOpaqueXattr, WHITEOUT_OPAQUE_DIR, WHITEOUT_PREFIX, displayPath, fsPath, rawPath, type Change, type WhiteoutFormat } from './types.ts';
import { sendfile } from '../sys/sendfile.ts';
import { openRegular, StoreFileError } from '../sys/read-only-files.ts';
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
/** bodies from this size on go to a file output by sendfile (below, one syscall more than it saves) */
const SENDFILE_MIN = 128 * 1024;

/** A tar stream of everything below `dir`. */
export function exportDir(dir: string, opts: ExportOptions = {}): Readable {
  return exportMounted(async () => dir, async () => {}, opts);
}

/**
 * exportDir of a tree that is mounted first: `mount` runs when the stream is
 * first read (or piped), `release` once when it ends, fails or is destroyed
 * (a failed release is the stream's error). For a driver's diff of a whole layer.
 */
export function exportMounted(mount: () => Promise<string>, release: () => Promise<void>, opts: ExportOptions = {}): Readable {
  let mounted = false;
  return new TarProducer(opts, async () => {
    const dir = await mount();
    mounted = true;
    const root = rawPath(path.resolve(dir));
    return { root, source: new Walk(root, scanOptions(opts), opts.parallel ?? 'auto', opts.onWalkEnd) };
  }, async () => {
    if (mounted) await release(); // a mount that failed holds nothing
  }).stream();
}

/** moby ExportChanges: a tar of the changed paths of `dir`, deletions as `.wh.` entries. */
export function exportChanges(dir: string, changes: Change[], opts: ExportOptions = {}): Readable {
  const root = rawPath(path.resolve(dir));
  const sorted = [...changes].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return new TarProducer(opts, async () => ({ root, source: new ChangeList(root, scanOptions(opts), sorted) })).stream();
}

function scanOptions(opts: ExportOptions): ScanOptions {
  return { format: opts.whiteouts ?? 'none', xattrs: opts.xattrs ?? true };
}

/** Where a producer's entries come from, once its tree is there. */
interface Opened { root: string; source: Source }

class TarProducer {
  private readonly opaqueXattr: string | null;
  private buf = Buffer.allocUnsafe(CHUNK);
  private pos = 0;
  private fd = -1;
  /** the open file's raw path, for the messages */
  private filePath = '';
  private fileLeft = 0;
  private padLeft = 0;
  private done = false;
  private readonly seen = new Map<string, string>(); // dev:ino → first path, for hardlinks
  private root = '';
  private source: Source | null = null;
  private opening: Promise<void> | null = null;
  /** the output file when the stream writes it itself (see stream()), else -1 */
  private sink = -1;
  /** false once sendfile refused this output (an O_APPEND file): bodies are copied from then on */
  private sendfileOk = true;
  /** whether any output has been asked for (a pull or a direct pipe): no direct pipe after that */
  private started = false;
  private released: Promise<void> | null = null;

  private readonly scanOpts: ScanOptions;

  constructor(opts: ExportOptions, private readonly open: () => Promise<Opened>, private readonly release = async () => {}) {
    this.opaqueXattr = overlayOpaqueXattr(opts.whiteouts ?? 'none');
    this.scanOpts = scanOptions(opts);
  }

  /** The tree and the source, opened on first use. */
  private ready(): Promise<void> {
    return (this.opening ??= this.open().then((o) => {
      this.root = o.root;
      this.source = o.source;
    }));
  }

  stream(): Readable {
    const self = this;
    const r = new Readable({
      highWaterMark: CHUNK,
      read() {
        self.started = true;
        const fail = (e: Error) => {
          self.close();
          this.destroy(e);
        };
        const pump = (): void => {
          if (this.destroyed) return;
          try {
            const chunk = self.fill();
            if (chunk === PENDING) {
              // nothing to give yet (the scan worker is behind): come back when it has posted
              self.source!.wait().then(pump, fail);
              return;
            }
            this.push(chunk);
            if (chunk !== null && self.done && self.pos === 0) this.push(null);
          } catch (e) {
            fail(e as Error);
          }
        };
        if (self.source) pump();
        else self.ready().then(pump, fail);
      },
      destroy(err, cb) {
        self.close();
        self.releaseOnce().then(() => cb(err), (e: Error) => cb(err ?? e));
      },
    });
    // into a regular file nothing was written to yet: write it ourselves (see the contract)
    const pipe = r.pipe;
    r.pipe = function <T extends NodeJS.WritableStream>(this: Readable, dest: T, options?: { end?: boolean }): T {
      if (self.started) return pipe.call(this, dest, options) as T;
      self.started = true;
      void fileOutput(dest).then((fd) => {
        if (fd === null) {
          self.started = false; // the ordinary pipe pulls from the first byte
          pipe.call(r, dest, options);
          return;
        }
        if (options?.end !== false) r.once('end', () => dest.end());
        return self.writeFile(r, fd);
      }).catch((e: Error) => {
        self.close();
        r.destroy(e);
      });
      return dest;
    };
    return r;
  }

  /** The whole tar into the regular file `fd` (at its position), then `r` ends. */
  private async writeFile(r: Readable, fd: number): Promise<void> {
    this.sink = fd;
    await this.ready();
    while (!this.done) {
      if (r.destroyed) return;
      if (this.fill() === PENDING) await this.source!.wait();
      else await new Promise(setImmediate); // one chunk at a time: timers and I/O of this process still run
    }
    r.push(null);
    r.resume(); // nothing to read: 'end' follows
  }

  /** `release`, once, after an opening still under way has settled (so a destroyed stream never leaves a mount behind). */
  private releaseOnce(): Promise<void> {
    return (this.released ??= (this.opening ?? Promise.resolve()).catch(() => {}).then(this.release));
  }

  /** Release everything: the open file and the source (its worker). */
  private close(): void {
    this.closeFile();
    this.source?.close();
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
    if (this.sink >= 0) {
      this.flush();
      return null;
    }
    const out = this.buf.subarray(0, this.pos);
    this.buf = Buffer.allocUnsafe(CHUNK);
    this.pos = 0;
    return out;
  }

  /** Write what the buffer holds to the sink; the buffer is reused. */
  private flush(): void {
    try {
      for (let at = 0; at < this.pos;) at += fs.writeSync(this.sink, this.buf, at, this.pos - at);
    } catch (e) {
      (e as Error).message += ': writing the archive';
      throw e;
    }
    this.pos = 0;
  }

  /** One step of work; false when the source has nothing yet. */
  private step(): boolean {
    if (this.fd >= 0 || this.padLeft) {
      this.copyFile();
      return true;
    }
    const s = this.source!.next();
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
    this.source!.close();
  }

  private entry(s: Scanned): void {
    const { rel } = s;
    const ifmt = s.mode & sys.S_IFMT;
    if (ifmt === sys.S_IFSOCK) return; // sockets are not archived (GNU tar and moby skip them)
    if (s.xattrsLater) readXattrs(fsPath(this.root + '/' + rel), ifmt, this.scanOpts, s); // the scan worker was behind
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
        this.filePath = this.root + '/' + rel;
        this.fd = this.openScannedFile();
        this.fileLeft = h.size;
        this.padLeft = (BLOCK - (h.size % BLOCK)) % BLOCK;
        if (this.sink >= 0 && this.sendfileOk && h.size >= SENDFILE_MIN) this.sendBody();
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

  /**
   * A body straight from the open file to the sink, after the headers before it.
   * What sendfile cannot move (a file that shrank, a pair it refuses) is left
   * to copyFile: read here, or zeros past the end, as for any other body.
   */
  private sendBody(): void {
    this.flush();
    try {
      while (this.fileLeft > 0) {
        const n = sendfile(this.sink, this.fd, Math.min(this.fileLeft, 1 << 30));
        if (n === 0) break;
        this.fileLeft -= n;
      }
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EINVAL' && code !== 'ENOSYS') throw this.named(e as NodeJS.ErrnoException);
      this.sendfileOk = false;
    }
    if (this.fileLeft === 0) this.closeFile();
  }

  /**
   * The regular file the scan saw at filePath, opened as a store reader opens
   * one (O_NONBLOCK, fstat-checked): a walk on a worker runs ahead, so the
   * name may be a FIFO by now, whose open would block, or a device, whose
   * open acts; anything but a regular file is refused, naming it.
   */
  private openScannedFile(): number {
    try {
      return openRegular(fsPath(this.filePath)).fd;
    } catch (e) {
      if (!(e instanceof StoreFileError)) throw e;
      e.message = `${displayPath(this.filePath)}: ${e.message} (changed during the export)`;
      throw e;
    }
  }

  /** A read (or sendfile) error with the file it was reading: fs's read errors name none. */
  private named(e: NodeJS.ErrnoException): NodeJS.ErrnoException {
    // sendfile's errors of the output side are not the file's
    if (e.code === 'EFBIG' || e.code === 'ENOSPC' || e.code === 'EDQUOT' || e.code === 'EPIPE') {
      e.message = `${e.message}: writing the archive (at '${displayPath(this.filePath)}')`;
      return e;
    }
    e.path ??= displayPath(this.filePath);
    e.message = `${e.message} '${displayPath(this.filePath)}'`;
    return e;
  }

  private copyFile(): void {
    const room = this.buf.length - this.pos;
    if (room <= 0) return;
    if (this.fd >= 0) {
      const want = Math.min(room, this.fileLeft);
      let n: number;
      try {
        n = fs.readSync(this.fd, this.buf, this.pos, want, null);
      } catch (e) {
        throw this.named(e as NodeJS.ErrnoException);
      }
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

/**
 * The fd of `dest` when it is a regular file with nothing pending (then writing
 * it directly keeps the byte order), else null: an fs.WriteStream without a
 * `start` (opened first if need be), or a synchronous stream such as
 * process.stdout redirected to a file.
 */
async function fileOutput(dest: NodeJS.WritableStream): Promise<number | null> {
  const w = dest as NodeJS.WritableStream & Partial<{ fd: number | null; pos: number; writableLength: number; writableEnded: boolean; destroyed: boolean }>;
  const fileStream = dest instanceof fs.WriteStream;
  if (!fileStream && w.constructor?.name !== 'SyncWriteStream') return null;
  if (fileStream && w.fd == null) await new Promise<void>((resolve, reject) => {
    dest.once('ready', resolve);
    dest.once('error', reject);
  });
  if (typeof w.fd !== 'number' || w.pos !== undefined || w.writableLength || w.writableEnded || w.destroyed) return null;
  return fs.fstatSync(w.fd).isFile() ? w.fd : null;
}
