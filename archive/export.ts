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
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import * as sys from '../sys/syscalls.ts';
import { splitRel } from './scope.ts';
import { BLOCK, encodeHeader, headerSpace, type EntryType, type TarHeader } from './tar-header.ts';
import {
  ChangeKind, overlayOpaqueXattr, WHITEOUT_META_PREFIX, WHITEOUT_OPAQUE_DIR, WHITEOUT_PREFIX,
  fsPath, rawPath, type Change, type WhiteoutFormat,
} from './types.ts';

export interface ExportOptions {
  /** how `dir` stores whiteouts: the overlay forms are converted to tar form, 'aufs' drops aufs internals */
  whiteouts?: WhiteoutFormat;
  /** read and export xattrs (default true) */
  xattrs?: boolean;
}

const CHUNK = 1 << 20;

/** A tar stream of everything below `dir`. */
export function exportDir(dir: string, opts: ExportOptions = {}): Readable {
  const p = new TarProducer(dir, opts);
  p.walk();
  return p.stream();
}

/** moby ExportChanges: a tar of the changed paths of `dir`, deletions as `.wh.` entries. */
export function exportChanges(dir: string, changes: Change[], opts: ExportOptions = {}): Readable {
  const p = new TarProducer(dir, opts);
  p.changes([...changes].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)));
  return p.stream();
}

interface Frame { rel: string; names: string[]; i: number }

class TarProducer {
  private readonly root: string;
  private readonly format: WhiteoutFormat;
  /** the overlayfs forms' opaque xattr; also says char 0/0 devices are whiteouts */
  private readonly opaqueXattr: string | null;
  private readonly xattrs: boolean;
  private buf = Buffer.allocUnsafe(CHUNK);
  private pos = 0;
  private stack: Frame[] = [];
  private list: Change[] | null = null;
  private listIndex = 0;
  private fd = -1;
  private fileLeft = 0;
  private padLeft = 0;
  private filePath = '';
  private done = false;
  private readonly seen = new Map<string, string>(); // dev:ino → first path, for hardlinks

  constructor(dir: string, opts: ExportOptions) {
    this.root = rawPath(path.resolve(dir));
    this.format = opts.whiteouts ?? 'none';
    this.opaqueXattr = overlayOpaqueXattr(this.format);
    this.xattrs = opts.xattrs ?? true;
  }

  walk(): void {
    this.stack.push({ rel: '', names: this.readdir(''), i: 0 });
  }

  changes(list: Change[]): void {
    this.list = list;
  }

  stream(): Readable {
    const self = this;
    return new Readable({
      highWaterMark: CHUNK,
      read() {
        try {
          const chunk = self.fill();
          this.push(chunk);
          if (chunk !== null && self.done && self.pos === 0) this.push(null);
        } catch (e) {
          self.close();
          this.destroy(e as Error);
        }
      },
      destroy(err, cb) {
        self.close();
        cb(err);
      },
    });
  }

  private close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }

  /** Produce the next chunk (null at the end). */
  private fill(): Buffer | null {
    while (!this.done && this.pos < CHUNK) this.step();
    if (this.pos === 0) return null;
    const out = this.buf.subarray(0, this.pos);
    this.buf = Buffer.allocUnsafe(CHUNK);
    this.pos = 0;
    return out;
  }

  private step(): void {
    if (this.fd >= 0 || this.padLeft) return this.copyFile();
    if (this.list) {
      if (this.listIndex >= this.list.length) return this.finish();
      const c = this.list[this.listIndex++];
      const rel = c.path.replace(/^\/+/, '');
      if (c.kind === ChangeKind.Delete) return this.whiteoutFor(rel);
      const st = this.lstat(rel, true);
      if (st) this.entry(rel, st);
      return;
    }
    const top = this.stack[this.stack.length - 1];
    if (!top) return this.finish();
    if (top.i >= top.names.length) {
      this.stack.pop();
      return;
    }
    const name = top.names[top.i++];
    if (this.format === 'aufs' && name.startsWith(WHITEOUT_META_PREFIX) && name !== WHITEOUT_OPAQUE_DIR) return;
    const rel = top.rel === '' ? name : top.rel + '/' + name;
    const st = this.lstat(rel, false)!;
    this.entry(rel, st);
    if (st.isDirectory()) this.stack.push({ rel, names: this.readdir(rel), i: 0 });
  }

  private finish(): void {
    // end of archive: two zero blocks
    this.reserve(BLOCK * 2);
    this.buf.fill(0, this.pos, this.pos + BLOCK * 2);
    this.pos += BLOCK * 2;
    this.done = true;
  }

  private abs(rel: string): string {
    return rel === '' ? this.root : this.root + '/' + rel;
  }

  private readdir(rel: string): string[] {
    return fs.readdirSync(fsPath(this.abs(rel)), { encoding: 'buffer' }).map((b) => b.toString('latin1')).sort();
  }

  private lstat(rel: string, missingOk: boolean): fs.BigIntStats | null {
    try {
      return fs.lstatSync(fsPath(this.abs(rel)), { bigint: true });
    } catch (e) {
      // a change list may name a file the container removed since: moby skips it too
      if (missingOk && (e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
  }

  private entry(rel: string, st: fs.BigIntStats): void {
    const p = fsPath(this.abs(rel));
    const mode = Number(st.mode);
    const ifmt = mode & sys.S_IFMT;
    if (ifmt === sys.S_IFSOCK) return; // sockets are not archived (GNU tar and moby skip them)
    const mtimeNs = st.mtimeNs;
    const h: TarHeader = {
      name: rel, type: 'file', mode: mode & 0o7777, uid: Number(st.uid), gid: Number(st.gid), size: 0,
      mtimeSec: Number(mtimeNs / 1_000_000_000n), mtimeNsec: Number(mtimeNs % 1_000_000_000n),
      linkname: '', devmajor: 0, devminor: 0, xattrs: null,
    };
    if (h.mtimeNsec < 0) {
      h.mtimeSec -= 1;
      h.mtimeNsec += 1e9;
    }
    let opaque = false;
    if (this.xattrs) {
      for (const name of sys.llistxattr(p)) {
        if (name.startsWith('trusted.overlay.') || name.startsWith('user.overlay.')) {
          if (name === this.opaqueXattr && ifmt === sys.S_IFDIR) opaque = sys.lgetxattr(p, name)?.toString() === 'y';
          continue;
        }
        const v = sys.lgetxattr(p, name);
        if (v) (h.xattrs ??= new Map()).set(name, v);
      }
    } else if (this.opaqueXattr && ifmt === sys.S_IFDIR) {
      opaque = sys.lgetxattr(p, this.opaqueXattr)?.toString() === 'y';
    }
    let type: EntryType;
    switch (ifmt) {
      case sys.S_IFDIR: type = 'dir'; h.name = rel + '/'; break;
      case sys.S_IFLNK: type = 'symlink'; h.linkname = fs.readlinkSync(p, { encoding: 'buffer' }).toString('latin1'); break;
      case sys.S_IFCHR: type = 'char'; break;
      case sys.S_IFBLK: type = 'block'; break;
      case sys.S_IFIFO: type = 'fifo'; break;
      default: type = 'file';
    }
    h.type = type;
    if (type === 'char' || type === 'block') {
      h.devmajor = sys.major(Number(st.rdev));
      h.devminor = sys.minor(Number(st.rdev));
      if (type === 'char' && st.rdev === 0n && this.opaqueXattr) {
        // overlay whiteout → `.wh.<name>`, as moby's overlayWhiteoutConverter writes it
        const [d, b] = splitRel(rel);
        h.name = (d === '' ? '' : d + '/') + WHITEOUT_PREFIX + b;
        h.type = 'file';
        h.mode = 0o600;
        h.xattrs = null;
      }
    }
    if (type === 'file' && st.nlink > 1n) {
      const key = `${st.dev}:${st.ino}`;
      const first = this.seen.get(key);
      if (first !== undefined) {
        h.type = 'link';
        h.linkname = first;
        return this.header(h);
      }
      this.seen.set(key, rel);
    }
    if (type === 'file') {
      h.size = Number(st.size);
      this.header(h);
      if (h.size > 0) {
        this.fd = fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
        this.fileLeft = h.size;
        this.padLeft = (BLOCK - (h.size % BLOCK)) % BLOCK;
        this.filePath = rel;
      }
      return;
    }
    this.header(h);
    if (opaque) {
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
      if (this.fileLeft === 0) this.close();
      return;
    }
    const pad = Math.min(room, this.padLeft);
    this.buf.fill(0, this.pos, this.pos + pad);
    this.pos += pad;
    this.padLeft -= pad;
  }
}
