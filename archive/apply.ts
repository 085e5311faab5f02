// applyLayer: extract a layer tar into a directory with moby UnpackLayer
// semantics, writing whiteouts in the directory's on-disk format.
//
// Contract:
// - Returns moby's layer size: the sum of the size fields of every entry.
// - Nothing outside `dir` is written, changed or removed: every path goes
//   through ScopedResolver (chroot-equivalent); `..` escapes and symlinks or
//   hardlinks pointing outside are refused with an ApplyError naming the entry.
// - On error, what was applied before the failing entry stays (the error says
//   how many entries that was); temporary aufs hardlink copies are removed.
// - File data is written with synchronous calls straight from the input
//   chunks: memory does not grow with layer size.
// - In a user namespace, as moby: device nodes are skipped and xattrs the
//   namespace may not set (trusted.*) are dropped.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as sys from '../sys/syscalls.ts';
import { runningInUserNS } from '../sys/userns.ts';
import { TarParser, type TarEntryHandler } from './tar-reader.ts';
import type { TarHeader } from './tar-header.ts';
import { BreakoutError, ScopedResolver, cleanRel, splitRel } from './scope.ts';
import {
  overlayOpaqueXattr, WHITEOUT_LINK_DIR, WHITEOUT_META_PREFIX, WHITEOUT_OPAQUE_DIR, WHITEOUT_PREFIX,
  displayPath, fsPath, rawPath, type WhiteoutFormat,
} from './types.ts';

export interface ApplyOptions {
  whiteouts: WhiteoutFormat;
}

export class ApplyError extends Error {
  /** the raw tar name of the entry that failed, when one did */
  readonly entry: string | undefined;
  /** entries applied before the failure (the layer is partially applied when > 0) */
  readonly applied: number;
  constructor(message: string, entry: string | undefined, applied: number, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ApplyError';
    this.entry = entry;
    this.applied = applied;
  }
}

const isRoot = process.getuid?.() === 0;
const O_NOFOLLOW = fs.constants.O_NOFOLLOW;
const CREATE_FLAGS = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | O_NOFOLLOW;

/** Extract `tar` into `dir` (which must exist). */
export async function applyLayer(
  tar: NodeJS.ReadableStream | AsyncIterable<Uint8Array> | Uint8Array,
  dir: string,
  opts: ApplyOptions,
): Promise<number> {
  const w = new LayerWriter(dir, opts.whiteouts);
  const parser = new TarParser(w);
  // a whole tar in memory is one chunk (iterating a Buffer would yield bytes)
  const source = tar instanceof Uint8Array ? [tar] : (tar as AsyncIterable<Uint8Array>);
  try {
    for await (const chunk of source) {
      parser.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      if (parser.ended) break;
    }
    parser.end();
    w.finish();
  } catch (e) {
    w.abort();
    throw w.wrap(e);
  }
  return w.size;
}

/** Convenience: apply a tar file with a large read buffer. */
export function applyLayerFile(file: string, dir: string, opts: ApplyOptions): Promise<number> {
  return applyLayer(fs.createReadStream(file, { highWaterMark: 1 << 20 }), dir, opts);
}

interface DirTime { abs: string; sec: number; nsec: number; atimeNs?: bigint }

class LayerWriter implements TarEntryHandler {
  size = 0;
  private applied = 0;
  private current: TarHeader | undefined;
  private readonly scope: ScopedResolver;
  private readonly rootReal: string;
  /** real root-relative paths created from this tar, for opaque directories */
  private readonly unpacked = new Set<string>();
  private readonly dirTimes: DirTime[] = [];
  private fd = -1;
  private fdPath = '';
  private plnkDir = '';
  private readonly plnk = new Map<string, TarHeader>();
  private readonly umask = process.umask();

  constructor(dir: string, private readonly format: WhiteoutFormat) {
    const rootAbs = path.resolve(dir);
    if (!fs.statSync(rootAbs).isDirectory()) throw new Error(`${dir}: not a directory`);
    this.rootReal = rawPath(rootAbs === '/' ? '' : rootAbs);
    this.scope = new ScopedResolver(this.rootReal);
  }

  wrap(e: unknown): Error {
    const entry = this.current?.name;
    if (e instanceof ApplyError) return e;
    const msg = e instanceof Error ? e.message : String(e);
    const where = entry !== undefined ? `tar entry "${displayPath(entry)}": ` : '';
    const partial = this.applied > 0 ? ` (layer partially applied: ${this.applied} entries written before it)` : '';
    return new ApplyError(`${where}${msg}${partial}`, entry, this.applied, { cause: e });
  }

  // ---- TarEntryHandler ----------------------------------------------------

  entry(h: TarHeader): void {
    this.current = h;
    this.size += h.size;
    const rel = cleanRel(h.name);
    if (rel === null) throw new BreakoutError(`"${displayPath(h.name)}" is outside of the layer`);
    if (rel === '') {
      if (h.type === 'dir') this.mergeDir(h, '');
      return;
    }
    const [dirRel, base] = splitRel(rel);

    // aufs metadata (.wh..wh.plnk, .wh..wh.orph, .wh..wh.aufs ...): skipped,
    // except plnk files, which later hardlinks may point at
    const slash = rel.indexOf('/');
    const top = slash === -1 ? rel : rel.slice(0, slash);
    if ((top.startsWith(WHITEOUT_META_PREFIX) && top !== WHITEOUT_OPAQUE_DIR) ||
      (base.startsWith(WHITEOUT_META_PREFIX) && base !== WHITEOUT_OPAQUE_DIR)) {
      if (rel.startsWith(WHITEOUT_LINK_DIR + '/') && h.type === 'file') this.openPlnk(h, base);
      return;
    }
    if (base === WHITEOUT_OPAQUE_DIR) return this.opaque(h, dirRel);
    if (base.startsWith(WHITEOUT_PREFIX)) return this.whiteout(h, dirRel, base.slice(WHITEOUT_PREFIX.length));

    const e = this.scope.resolveEntry(rel)!;
    const abs = this.scope.abs(e.rel);
    // create first, as GNU tar does: a fresh layer never pays for an lstat per entry
    try {
      this.create(h, e.rel, abs);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const existing = fs.lstatSync(fsPath(abs));
      if (existing.isDirectory() && h.type === 'dir') return this.mergeDir(h, e.rel);
      this.removeAll(abs, existing);
      this.create(h, e.rel, abs);
    }
  }

  data(chunk: Buffer): void {
    if (this.fd < 0) return; // body of an entry we do not write
    let off = 0;
    while (off < chunk.length) off += fs.writeSync(this.fd, chunk, off, chunk.length - off);
  }

  entryEnd(): void {
    const h = this.current!;
    if (this.fd >= 0) {
      const fd = this.fd;
      this.fd = -1;
      try {
        this.finishFile(fd, h, this.fdPath);
      } finally {
        fs.closeSync(fd);
      }
      if (h.mtimeNsec !== 0) sys.lutimensNs(fsPath(this.fdPath), mtimeNs(h), h.atimeNs);
    }
    this.applied++;
  }

  // ---- entry kinds ----------------------------------------------------------

  private create(h: TarHeader, rel: string, abs: string): void {
    const p = fsPath(abs);
    switch (h.type) {
      case 'dir':
        fs.mkdirSync(p, h.mode & 0o777);
        this.meta(p, h, false);
        this.dirTimes.push({ abs, sec: h.mtimeSec, nsec: h.mtimeNsec, atimeNs: h.atimeNs });
        break;
      case 'file':
        this.fd = fs.openSync(p, CREATE_FLAGS, h.mode & 0o777);
        this.fdPath = abs;
        break;
      case 'symlink': {
        const [dirRel] = splitRel(cleanRel(h.name)!);
        // moby refuses targets that climb out of the layer lexically; others are
        // fine, since anything that follows them later does so in scope
        const lexical = h.linkname.startsWith('/') ? h.linkname : dirRel + '/' + h.linkname;
        if (cleanRel(lexical) === null) {
          throw new BreakoutError(`invalid symlink "${displayPath(h.name)}" -> "${displayPath(h.linkname)}": points outside the layer`);
        }
        fs.symlinkSync(fsPath(h.linkname), p);
        this.meta(p, h, true);
        this.times(abs, h, true);
        break;
      }
      case 'link':
        this.hardlink(h, abs);
        break;
      case 'char':
      case 'block':
      case 'fifo': {
        // moby (InUserNS): a user namespace cannot create device nodes; skip them
        if (h.type !== 'fifo' && runningInUserNS()) return;
        const t = h.type === 'char' ? sys.S_IFCHR : h.type === 'block' ? sys.S_IFBLK : sys.S_IFIFO;
        sys.mknod(p, t | (h.mode & 0o777), h.type === 'fifo' ? 0 : sys.makedev(h.devmajor, h.devminor));
        this.meta(p, h, false);
        this.times(abs, h, false);
        break;
      }
    }
    this.unpacked.add(rel);
  }

  private hardlink(h: TarHeader, abs: string): void {
    const target = cleanRel(h.linkname);
    if (target === null || target === '') {
      throw new BreakoutError(`invalid hardlink "${displayPath(h.name)}" -> "${displayPath(h.linkname)}": points outside the layer`);
    }
    if (target.startsWith(WHITEOUT_LINK_DIR + '/')) {
      // aufs pseudo-link: moby extracts a fresh copy of the plnk file here
      const src = this.plnk.get(splitRel(target)[1]);
      if (!src) throw new Error(`invalid aufs hardlink to "${displayPath(h.linkname)}"`);
      fs.copyFileSync(fsPath(this.plnkDir + '/' + splitRel(target)[1]), fsPath(abs), fs.constants.COPYFILE_EXCL);
      const p = fsPath(abs);
      this.meta(p, src, false);
      this.times(abs, src, false);
      return;
    }
    const t = this.scope.resolveEntry(target, false);
    if (t === null) throw new Error(`hardlink target "${displayPath(h.linkname)}" does not exist`);
    fs.linkSync(fsPath(this.scope.abs(t.rel)), fsPath(abs));
  }

  private mergeDir(h: TarHeader, rel: string): void {
    const abs = this.scope.abs(rel);
    const p = fsPath(abs);
    this.meta(p, h, false);
    this.dirTimes.push({ abs, sec: h.mtimeSec, nsec: h.mtimeNsec, atimeNs: h.atimeNs });
    this.unpacked.add(rel);
  }

  private whiteout(h: TarHeader, dirRel: string, name: string): void {
    if (name === '' || name === '.' || name === '..') {
      throw new BreakoutError(`invalid whiteout "${displayPath(h.name)}": it names no entry`);
    }
    const parent = this.scope.resolveDir(dirRel)!;
    const rel = parent === '' ? name : parent + '/' + name;
    const abs = this.scope.abs(rel);
    this.removeAll(abs);
    if (this.format === 'aufs') {
      const markerRel = parent === '' ? WHITEOUT_PREFIX + name : parent + '/' + WHITEOUT_PREFIX + name;
      const marker = this.scope.abs(markerRel);
      this.removeAll(marker); // an older marker is replaced like any entry
      const fd = fs.openSync(fsPath(marker), CREATE_FLAGS, h.mode & 0o777);
      try {
        this.finishFile(fd, h, marker);
      } finally {
        fs.closeSync(fd);
      }
      this.unpacked.add(markerRel);
    } else if (overlayOpaqueXattr(this.format)) {
      sys.mknod(fsPath(abs), sys.S_IFCHR, 0);
      if (isRoot) fs.lchownSync(fsPath(abs), h.uid, h.gid);
      // moby leaves the device's times at "now"; the header's keep re-exports reproducible
      this.times(abs, h, false);
      this.unpacked.add(rel);
    }
  }

  private opaque(h: TarHeader, dirRel: string): void {
    const dir = this.scope.resolveDir(dirRel)!;
    this.emptyExcept(dir);
    if (this.format === 'aufs') {
      const marker = this.scope.abs(dir === '' ? WHITEOUT_OPAQUE_DIR : dir + '/' + WHITEOUT_OPAQUE_DIR);
      this.removeAll(marker);
      const fd = fs.openSync(fsPath(marker), CREATE_FLAGS, h.mode & 0o777);
      try {
        this.finishFile(fd, h, marker);
      } finally {
        fs.closeSync(fd);
      }
      this.unpacked.add(dir === '' ? WHITEOUT_OPAQUE_DIR : dir + '/' + WHITEOUT_OPAQUE_DIR);
    } else {
      const xattr = overlayOpaqueXattr(this.format);
      if (xattr) sys.lsetxattr(fsPath(this.scope.abs(dir)), xattr, Buffer.from('y'));
    }
  }

  /** Remove everything below `dirRel` that this tar did not create (moby walks the whole subtree). */
  private emptyExcept(dirRel: string): void {
    const abs = this.scope.abs(dirRel);
    let names: Buffer[];
    try {
      names = fs.readdirSync(fsPath(abs), { encoding: 'buffer' });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    for (const n of names) {
      const rel = dirRel === '' ? n.toString('latin1') : dirRel + '/' + n.toString('latin1');
      const childAbs = this.scope.abs(rel);
      const st = fs.lstatSync(fsPath(childAbs));
      if (!this.unpacked.has(rel)) this.removeAll(childAbs, st);
      else if (st.isDirectory()) this.emptyExcept(rel);
    }
  }

  private openPlnk(h: TarHeader, base: string): void {
    if (!this.plnkDir) {
      this.plnkDir = rawPath(fs.mkdtempSync(path.join(Buffer.from(this.rootReal || '/', 'latin1').toString('utf8'), '.strata-plnk-')));
    }
    this.plnk.set(base, h);
    const abs = this.plnkDir + '/' + base;
    this.fd = fs.openSync(fsPath(abs), CREATE_FLAGS, 0o600);
    this.fdPath = abs;
  }

  // ---- metadata ---------------------------------------------------------------

  /** Owner, xattrs, mode (in that order: chown clears setuid bits and capabilities). */
  private meta(p: Buffer, h: TarHeader, isLink: boolean): void {
    if (isRoot) fs.lchownSync(p, h.uid, h.gid);
    if (h.xattrs) for (const [k, v] of h.xattrs) setXattr(p, k, v);
    if (!isLink) fs.chmodSync(p, h.mode);
  }

  private finishFile(fd: number, h: TarHeader, abs: string): void {
    if (isRoot && (h.uid !== 0 || h.gid !== 0)) fs.fchownSync(fd, h.uid, h.gid);
    if (h.xattrs) for (const [k, v] of h.xattrs) setXattr(fsPath(abs), k, v);
    // open() already applied the permission bits, unless umask or special bits interfere
    if ((h.mode & 0o7000) !== 0 || (h.mode & this.umask) !== 0) fs.fchmodSync(fd, h.mode);
    if (h.mtimeNsec === 0) {
      const at = h.atimeNs !== undefined ? Number(h.atimeNs / 1_000_000_000n) : h.mtimeSec;
      fs.futimesSync(fd, at, h.mtimeSec);
    }
  }

  private times(abs: string, h: TarHeader, isLink: boolean): void {
    if (h.mtimeNsec === 0 && h.atimeNs === undefined) {
      if (isLink) fs.lutimesSync(fsPath(abs), h.mtimeSec, h.mtimeSec);
      else fs.utimesSync(fsPath(abs), h.mtimeSec, h.mtimeSec);
    } else sys.lutimensNs(fsPath(abs), mtimeNs(h), h.atimeNs ?? mtimeNs(h));
  }

  /** Remove a file or a whole tree, never following symlinks; a missing path is fine. */
  private removeAll(abs: string, st?: fs.Stats): void {
    const p = fsPath(abs);
    st ??= fs.lstatSync(p, { throwIfNoEntry: false });
    if (!st) return;
    if (st.isDirectory()) {
      fs.rmSync(p, { recursive: true, force: true });
      this.scope.invalidate();
    } else {
      fs.unlinkSync(p);
      if (st.isSymbolicLink()) this.scope.invalidate();
    }
  }

  // ---- end ----------------------------------------------------------------------

  finish(): void {
    this.dropPlnk();
    // directory times last: creating entries inside changed them
    for (const d of this.dirTimes) {
      if (d.nsec === 0 && d.atimeNs === undefined) fs.utimesSync(fsPath(d.abs), d.sec, d.sec);
      else {
        const m = BigInt(d.sec) * 1_000_000_000n + BigInt(d.nsec);
        sys.lutimensNs(fsPath(d.abs), m, d.atimeNs ?? m);
      }
    }
  }

  abort(): void {
    if (this.fd >= 0) {
      fs.closeSync(this.fd);
      this.fd = -1;
    }
    this.dropPlnk();
  }

  private dropPlnk(): void {
    if (this.plnkDir) fs.rmSync(fsPath(this.plnkDir), { recursive: true, force: true });
    this.plnkDir = '';
  }
}

function mtimeNs(h: { mtimeSec: number; mtimeNsec: number }): bigint {
  return BigInt(h.mtimeSec) * 1_000_000_000n + BigInt(h.mtimeNsec);
}

/**
 * moby ignores xattrs the target file system cannot hold (EOPNOTSUPP), and so do
 * we; in a user namespace also those it may not set (EPERM: trusted.*).
 */
function setXattr(p: Buffer, name: string, value: Buffer): void {
  try {
    sys.lsetxattr(p, name, value);
  } catch (e) {
    if (!(e instanceof sys.SysError)) throw e;
    if (e.code === 'ENOTSUP' || e.code === 'EOPNOTSUPP' || (e.code === 'EPERM' && runningInUserNS())) return;
    throw e;
  }
}
