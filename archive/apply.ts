// applyLayer: extract a layer tar into a directory with moby UnpackLayer
// semantics, writing whiteouts in the directory's on-disk format.
//
// Contract:
// - Returns moby's layer size: the sum of the size fields of every entry.
// - Nothing outside `dir` is written, changed or removed, and no metadata
//   (owner, mode, xattrs, times) changes there: every syscall — deferred
//   directory times included — acts on a directory handle from in-root.ts
//   (resolved inside the layer at the moment of the call, symlinks followed in
//   scope) and on a final name that is never followed, or on an open fd. A
//   later entry that swaps a directory or a parent for a symlink cannot
//   redirect it. `..` escapes and symlinks or hardlinks pointing outside
//   lexically are refused (as moby does) with an ApplyError naming the entry.
// - On error, what was applied before the failing entry stays (the error says
//   how many entries that was); temporary aufs hardlink copies are removed.
// - File data is written with synchronous calls straight from the input
//   chunks: memory does not grow with layer size. Applying a tar file into an
//   empty directory with applyOffload on, a worker thread creates, writes and
//   finishes (owner, mode, times, close) small regular files under directory
//   handles this thread resolved (apply-offload.ts); its errors come back in
//   entry order (this thread may have applied some of the entries after a
//   failing one by then: it runs ahead of the worker by at most ~1,000 ops),
//   and the apply returns or throws only once the worker is idle and holds no
//   file open.
// - A hardlink entry's own owner, xattrs, mode and times go to the inode it
//   links, as moby's createTarFile does after os.Link (mode and times not when
//   that inode is a symlink) — but only to an inode this tar made: one that was
//   in `dir` before (overlay v1 builds a layer's root from hardlinks of its
//   parent's files) belongs to another layer too, and is linked untouched.
// - In a user namespace, as moby: device nodes are skipped and xattrs the
//   namespace may not set (trusted.*) are dropped.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as sys from '../sys/syscalls.ts';
import { runningInUserNS } from '../sys/userns.ts';
import { TarParser, type TarEntryHandler } from './tar-reader.ts';
import type { TarHeader } from './tar-header.ts';
import { BreakoutError, cleanRel, joinRel, splitRel } from './scope.ts';
import { InRoot, O_PATH, at, atRaw, fdPath, openDirNoFollow, self } from './in-root.ts';
import { removeTree } from './remove-tree.ts';
import { ApplyOffload, SLOT_BYTES } from './apply-offload.ts';
import { CREATE_FLAGS } from './apply-worker.ts';
import {
  overlayOpaqueXattr, WHITEOUT_LINK_DIR, WHITEOUT_META_PREFIX, WHITEOUT_OPAQUE_DIR, WHITEOUT_PREFIX,
  displayPath, fsPath, oneLine, rawPath, type WhiteoutFormat,
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

/** Extract `tar` into `dir` (which must exist). */
export async function applyLayer(
  tar: NodeJS.ReadableStream | AsyncIterable<Uint8Array> | Uint8Array,
  dir: string,
  opts: ApplyOptions,
): Promise<number> {
  const file = unreadFileStream(tar);
  if (file !== null) return applyFile(file, dir, opts);
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
    const err = w.wrap(e); // before abort() closes the handles its message names
    w.abort();
    throw err;
  }
  return w.size;
}

/** Apply a tar file: read with readSync into one reused buffer (no stream, no chunk allocations). */
export function applyLayerFile(file: string, dir: string, opts: ApplyOptions): Promise<number> {
  return applyFile(file, dir, opts);
}

/**
 * The path of a file read stream nobody has read from yet (what `strata layer
 * apply --file` and the drivers' callers hand in): read it ourselves instead.
 * A stream with a range, an fd of its own, or already flowing stays a stream.
 */
function unreadFileStream(tar: unknown): string | null {
  if (!(tar instanceof fs.ReadStream)) return null;
  const s = tar as fs.ReadStream & { start?: number; end?: number; fd?: number | null; flags?: string };
  if (typeof s.path !== 'string' || s.bytesRead !== 0 || s.readableFlowing !== null || s.destroyed) return null;
  if (s.start !== undefined || (s.end !== undefined && s.end !== Infinity)) return null;
  tar.destroy(); // its own open (pending or done) is closed; we open the file again
  return s.path;
}

const READ_BUF = SLOT_BYTES;
/** bytes read between yields to the event loop, so that an apply does not starve timers and workers */
const YIELD_EVERY = 32 << 20;

/**
 * Whether applyLayerFile hands regular files to a worker thread (apply-offload.ts):
 * 'auto' for tars over 4 MiB, the default where the process may use two cores
 * or more; 'always' also for small ones, waiting for the worker to start
 * (tests); 'never', the default on one core. STRATA_APPLY_WORKER=never|auto|always
 * sets it for a process. Measured (bench:tar-goals, idle 2-core host, into
 * tmpfs / ext4): 50k small files 0.78× → 1.34× / 0.92× → 1.75× GNU tar's speed;
 * it costs more CPU in all (cross-thread handoffs), so a busy host gains less.
 */
export const applyOffload: { mode: 'never' | 'auto' | 'always' } = { mode: defaultOffload() };

function defaultOffload(): 'never' | 'auto' | 'always' {
  const env = process.env.STRATA_APPLY_WORKER;
  if (env === 'never' || env === 'auto' || env === 'always') return env;
  return os.availableParallelism() > 1 ? 'auto' : 'never';
}

async function applyFile(file: string, dir: string, opts: ApplyOptions): Promise<number> {
  const w = new LayerWriter(dir, opts.whiteouts);
  const parser = new TarParser(w);
  let fd = -1;
  try {
    fd = fs.openSync(file, 'r');
    // a tar of more than a few reads is worth a worker (which starts while we go on alone)
    const { mode } = applyOffload;
    if (mode === 'always' || (mode === 'auto' && fs.fstatSync(fd).size > 4 * READ_BUF)) w.useWorker(mode === 'always');
    const own = Buffer.allocUnsafe(w.offload ? 0 : READ_BUF); // the parser passes slices of it on and keeps none
    let sinceYield = 0;
    for (;;) {
      const buf = w.offload ? w.offload.nextSlot() : own;
      const n = fs.readSync(fd, buf, 0, READ_BUF, null);
      if (n === 0) break;
      parser.push(n === READ_BUF ? buf : buf.subarray(0, n));
      if (parser.ended) break;
      if ((sinceYield += n) >= YIELD_EVERY) {
        sinceYield = 0;
        await new Promise(setImmediate);
      }
    }
    parser.end();
    w.finish();
  } catch (e) {
    let err = e;
    try {
      err = w.wrap(e);
    } catch {
      // wrap waits for the worker's errors: a worker that died keeps the first error
    }
    w.abort(); // reached whatever wrap did: no fd, handle or worker left behind
    throw err;
  } finally {
    if (fd >= 0) fs.closeSync(fd);
  }
  return w.size;
}

/**
 * Files the worker creates are smaller than this. Measured (in-process, 6
 * interleaved rounds, tmpfs): 50k files of 4,000 B applied in 490 ms with
 * the worker against 860 without; on the 1.1 GB Pareto mix of 20k files, 655
 * against 870 — and 880 when the worker also took the files of 32 KiB–16 MiB
 * (opened here or there: the data read on one core and written from the
 * other), so larger files stay on this thread.
 */
const CREATE_BELOW = 32 << 10;

/** A directory's times, applied at the end; dev+ino say it is still the directory that was made. */
interface DirTime { real: string; dev: number; ino: number; sec: number; nsec: number; atimeNs: bigint }

class LayerWriter implements TarEntryHandler {
  size = 0;
  private applied = 0;
  private current: TarHeader | undefined;
  private readonly root: InRoot;
  /** real root-relative paths created from this tar, for opaque directories */
  private readonly unpacked = new Set<string>();
  /** hardlinks this tar made to inodes it did not make (what `dir` held before): never changed */
  private readonly foreignLinks = new Set<string>();
  private readonly dirTimes: DirTime[] = [];
  private fd = -1;
  /**
   * aufs plnk files, which later hardlinks copy. Each is an unnamed O_TMPFILE
   * inode in the layer's file system while that works (nothing to clean if
   * the process dies), else a file in a temp dir in the layer.
   */
  private readonly plnk = new Map<string, { h: TarHeader; src: Buffer; tmpFd: number }>();
  private plnkDir = ''; // the fallback temp dir's name in the root
  private plnkFd = -1;
  private fdKept = false; // the open file is a plnk tmpfile: entryEnd keeps it open
  private readonly umask = process.umask();
  /**
   * The worker that creates, writes and finishes small regular files. Only
   * into a root that was empty at the start: there a name this tar has not
   * made (unpacked, implicit) cannot exist, so its O_EXCL create cannot meet
   * an old file. Any other name, and every call that looks names up or
   * removes them, waits until the worker's creates are done (settle), so
   * each acts on the tree the tar's order says.
   */
  offload: ApplyOffload<string> | null = null;
  /** files below this size go to the worker */
  private createBelow = CREATE_BELOW;
  /** real paths made other than by an entry: missing parents, the plnk temp dir */
  private readonly implicit = new Set<string>();
  /** the current entry's file is the worker's (its data and end go there), tagged with the entry's name */
  private handed: string | null = null;

  constructor(dir: string, private readonly format: WhiteoutFormat) {
    const rootAbs = path.resolve(dir);
    if (!fs.statSync(rootAbs).isDirectory()) throw new Error(`${dir}: not a directory`);
    this.root = new InRoot(fsPath(rawPath(rootAbs)));
  }

  /**
   * Hand small regular files to a worker thread, if the root is empty;
   * `always` (tests) waits for it to start and hands every size over.
   */
  useWorker(always: boolean): void {
    if (!isEmptyDir(self(this.root.rootFd))) return;
    const off = (this.offload = new ApplyOffload(always));
    this.createBelow = always ? Infinity : CREATE_BELOW;
    // the worker creates under our handles: none is closed before it is done with them
    this.root.release = (fd) => off.release(fd);
    this.root.beforeWalk = () => this.settle();
    this.root.made = this.implicit;
  }

  /** Wait until every file handed to the worker to create exists (or its error is thrown). */
  private settle(): void {
    if (this.offload?.creating()) this.quiesce();
  }

  /** Wait until every op handed to the worker is done, its files finished too (or its error is thrown). */
  private quiesce(): void {
    this.offload?.drain();
    this.checkOffload();
  }

  /** The error to throw for `e`: the worker's, if it failed on an earlier entry (errors come in entry order). */
  wrap(e: unknown): Error {
    this.offload?.drain();
    const early = this.offload?.failed();
    if (early) return this.errorOf(early.error, early.tag, early.seq);
    if (e instanceof ApplyError) return e;
    return this.errorOf(e, this.current?.name, this.applied);
  }

  private errorOf(e: unknown, entry: string | undefined, applied: number): ApplyError {
    const msg = this.root.describe(e instanceof Error ? e.message : String(e));
    const where = entry !== undefined ? `tar entry "${displayPath(entry)}": ` : '';
    const partial = applied > 0 ? ` (layer partially applied: ${applied} entries written before it)` : '';
    return new ApplyError(oneLine(`${where}${msg}${partial}`), entry, applied, { cause: e });
  }

  /** Throw the worker's first error, if it has one. */
  private checkOffload(): void {
    if (this.offload?.failed()) throw this.wrap(null);
  }

  // ---- TarEntryHandler ----------------------------------------------------

  entry(h: TarHeader): void {
    this.checkOffload();
    this.current = h;
    mobyTimes(h);
    this.size += h.size;
    const rel = cleanRel(h.name);
    if (rel === null) throw new BreakoutError(`"${displayPath(h.name)}" is outside of the layer`);
    if (rel === '') {
      // the root's owner, mode and default ACL must not reach files the worker is still creating
      this.settle();
      if (h.type === 'dir') this.mergeDir(h, '');
      return;
    }
    const cut = rel.lastIndexOf('/'); // splitRel inline: no array per entry
    const dirRel = cut === -1 ? '' : rel.slice(0, cut);
    const base = cut === -1 ? rel : rel.slice(cut + 1);

    // aufs metadata (.wh..wh.plnk, .wh..wh.orph, .wh..wh.aufs ...): skipped,
    // except plnk files, which later hardlinks may point at; the first
    // component is `rel`'s own prefix (no slice for it)
    const topMeta = rel.startsWith(WHITEOUT_META_PREFIX) &&
      !(rel.startsWith(WHITEOUT_OPAQUE_DIR) && (rel.length === WHITEOUT_OPAQUE_DIR.length || rel[WHITEOUT_OPAQUE_DIR.length] === '/'));
    if (topMeta || (base.startsWith(WHITEOUT_META_PREFIX) && base !== WHITEOUT_OPAQUE_DIR)) {
      if (rel.startsWith(WHITEOUT_LINK_DIR + '/') && h.type === 'file') this.openPlnk(h, base);
      return;
    }
    if (base === WHITEOUT_OPAQUE_DIR) return this.opaque(h, dirRel);
    if (base.startsWith(WHITEOUT_PREFIX)) return this.whiteout(h, dirRel, base.slice(WHITEOUT_PREFIX.length));

    const parent = this.root.dir(dirRel)!;
    const real = parent.real === dirRel ? rel : joinRel(parent.real, base);
    const fresh = this.offload !== null && !this.unpacked.has(real) && !this.implicit.has(real);
    if (!fresh) this.settle();
    // create first, as GNU tar does: a fresh layer never pays for an lstat per entry
    try {
      this.create(h, parent.fd, base, real, dirRel, fresh);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const existing = fs.lstatSync(at(parent.fd, base));
      if (existing.isDirectory() && h.type === 'dir') return this.mergeDir(h, real);
      this.removeAll(parent.fd, base, real, existing);
      this.create(h, parent.fd, base, real, dirRel, false);
    }
  }

  data(chunk: Buffer): void {
    if (this.handed !== null) return this.offload!.write(chunk, this.handed, this.applied);
    if (this.fd < 0) return; // body of an entry we do not write
    let off = 0;
    while (off < chunk.length) off += fs.writeSync(this.fd, chunk, off, chunk.length - off);
  }

  entryEnd(): void {
    const h = this.current!;
    if (this.handed !== null) {
      const owner = isRoot && (h.uid !== 0 || h.gid !== 0);
      this.offload!.finish(owner ? h.uid : -1, h.gid, this.needsChmod(h.mode) ? h.mode : -1, h.mtimeSec, this.handed, this.applied);
      this.handed = null;
    } else if (this.fd >= 0) {
      const fd = this.fd;
      this.fd = -1;
      if (this.fdKept) this.fdKept = false; // a plnk tmpfile: open until the end, its metadata unused
      else {
        try {
          this.finishFile(fd, h);
        } finally {
          fs.closeSync(fd);
        }
      }
    }
    this.applied++;
    // done with it: an error in the next header is that header's (the parser names it), not this entry's
    this.current = undefined;
  }

  // ---- entry kinds ----------------------------------------------------------

  /**
   * Create entry `base` in the directory `pfd` (real path `real`); `dirRel` is
   * the parent as the tar names it; `fresh`: the name cannot exist (the
   * worker may create it).
   */
  private create(h: TarHeader, pfd: number, base: string, real: string, dirRel: string, fresh: boolean): void {
    let foreign = false;
    switch (h.type) {
      case 'dir': {
        const p = at(pfd, base);
        fs.mkdirSync(p, h.mode & 0o777);
        const dfd = openDirNoFollow(p);
        if (dfd === null) throw new Error(`"${displayPath(real)}" vanished after mkdir`);
        this.root.adopt(real, dfd); // its children usually follow
        this.dirMeta(dfd, real, h);
        break;
      }
      case 'file': {
        // the worker does what whole-second times and node:fs calls can (ns times and xattrs take ffi-rs)
        if (fresh && h.size < this.createBelow && h.xattrs === null && h.mtimeNsec === 0 && h.atimeNs === undefined &&
          base.length <= NAME_MAX && this.offload!.accepts()) {
          this.offload!.create(atRaw(pfd, base), h.mode & 0o777, h.name, this.applied);
          this.handed = h.name;
          break;
        }
        this.fd = fs.openSync(at(pfd, base), CREATE_FLAGS, h.mode & 0o777);
        break;
      }
      case 'symlink': {
        const [linkDir] = splitRel(cleanRel(h.name)!);
        // moby refuses targets that climb out of the layer lexically; others are
        // fine, since anything that follows them later does so in scope
        const lexical = h.linkname.startsWith('/') ? h.linkname : linkDir + '/' + h.linkname;
        if (cleanRel(lexical) === null) {
          throw new BreakoutError(`invalid symlink "${displayPath(h.name)}" -> "${displayPath(h.linkname)}": points outside the layer`);
        }
        const p = at(pfd, base);
        fs.symlinkSync(fsPath(h.linkname), p);
        this.meta(p, h, 'symlink');
        break;
      }
      case 'link':
        foreign = this.hardlink(h, base, dirRel);
        break;
      case 'char':
      case 'block':
      case 'fifo': {
        // moby (InUserNS): a user namespace cannot create device nodes; skip them
        if (h.type !== 'fifo' && runningInUserNS()) return;
        const t = h.type === 'char' ? sys.S_IFCHR : h.type === 'block' ? sys.S_IFBLK : sys.S_IFIFO;
        const p = at(pfd, base);
        sys.mknod(p, t | (h.mode & 0o777), h.type === 'fifo' ? 0 : sys.makedev(h.devmajor, h.devminor));
        this.meta(p, h, 'node');
        break;
      }
    }
    this.unpacked.add(real);
    if (foreign) this.foreignLinks.add(real);
    else this.foreignLinks.delete(real); // an inode of this tar's
  }

  /** Link `base` in `dirRel` as the entry says; true when the inode it links is not this tar's (left untouched). */
  private hardlink(h: TarHeader, base: string, dirRel: string): boolean {
    // its target may be a file the worker is creating or has yet to finish (its owner, mode
    // and times, which must come before this header's): wait for every op, not only the creates
    this.quiesce();
    const target = cleanRel(h.linkname);
    if (target === null || target === '') {
      throw new BreakoutError(`invalid hardlink "${displayPath(h.name)}" -> "${displayPath(h.linkname)}": points outside the layer`);
    }
    if (target.startsWith(WHITEOUT_LINK_DIR + '/')) {
      // aufs pseudo-link: moby extracts a fresh copy of the plnk file here
      const [, name] = splitRel(target);
      const src = this.plnk.get(name);
      if (!src) throw new Error(`invalid aufs hardlink to "${displayPath(h.linkname)}"`);
      const p = at(this.root.dir(dirRel)!.fd, base);
      fs.copyFileSync(src.src, p, fs.constants.COPYFILE_EXCL); // O_EXCL: never through a symlink
      this.meta(p, src.h, 'node');
      return false;
    }
    const [tDir, tBase] = splitRel(target);
    const t = this.root.dir(tDir, false);
    if (t === null) throw new Error(`hardlink target "${displayPath(h.linkname)}" does not exist`);
    // an fd of our own: resolving the entry's parent again may evict the cached one
    const tfd = this.root.reopen(t.fd);
    let p: Buffer;
    try {
      p = at(this.root.dir(dirRel)!.fd, base); // used before any other resolution (meta below too)
      // link(2) does not follow either name: a symlink target is linked as the symlink
      fs.linkSync(at(tfd, tBase), p);
    } finally {
      fs.closeSync(tfd);
    }
    const targetReal = joinRel(t.real, tBase);
    if (!this.unpacked.has(targetReal) || this.foreignLinks.has(targetReal)) return true;
    this.meta(p, h, 'link');
    return false;
  }

  private mergeDir(h: TarHeader, real: string): void {
    const d = this.root.dir(real, false);
    if (d === null) throw new Error(`"${displayPath(real)}" vanished`);
    this.dirMeta(d.fd, d.real, h);
    this.unpacked.add(real);
  }

  private whiteout(h: TarHeader, dirRel: string, name: string): void {
    this.settle(); // what it removes may be in the making
    if (name === '' || name === '.' || name === '..') {
      throw new BreakoutError(`invalid whiteout "${displayPath(h.name)}": it names no entry`);
    }
    const parent = this.root.dir(dirRel)!;
    const real = joinRel(parent.real, name);
    this.removeAll(parent.fd, name, real);
    if (this.format === 'aufs') {
      const markerName = WHITEOUT_PREFIX + name;
      this.writeMarker(parent.fd, markerName, joinRel(parent.real, markerName), h);
    } else if (overlayOpaqueXattr(this.format)) {
      const p = at(parent.fd, name);
      sys.mknod(p, sys.S_IFCHR, 0);
      this.foreignLinks.delete(real); // a new inode of this tar's
      if (isRoot) fs.lchownSync(p, h.uid, h.gid);
      // moby leaves the device's times at "now"; the header's keep re-exports reproducible
      this.times(p, h);
      this.unpacked.add(real);
    }
  }

  private opaque(h: TarHeader, dirRel: string): void {
    this.settle(); // it lists the directory
    const dir = this.root.dir(dirRel)!;
    this.emptyExcept(dir.real);
    if (this.format === 'aufs') {
      const d = this.root.dir(dir.real, false)!;
      this.writeMarker(d.fd, WHITEOUT_OPAQUE_DIR, joinRel(d.real, WHITEOUT_OPAQUE_DIR), h);
    } else {
      const xattr = overlayOpaqueXattr(this.format);
      if (xattr) sys.lsetxattr(self(this.root.dir(dir.real, false)!.fd), xattr, Buffer.from('y'));
    }
  }

  /** An aufs marker file (an older one is replaced like any entry). */
  private writeMarker(pfd: number, name: string, real: string, h: TarHeader): void {
    this.removeAll(pfd, name, real);
    const fd = fs.openSync(at(pfd, name), CREATE_FLAGS, h.mode & 0o777);
    try {
      this.finishFile(fd, h);
    } finally {
      fs.closeSync(fd);
    }
    this.unpacked.add(real);
  }

  /** Remove everything below `real` that this tar did not create (moby walks the whole subtree). */
  private emptyExcept(real: string): void {
    const d = this.root.dir(real, false);
    if (d === null) return;
    const fd = this.root.reopen(d.fd); // ours across the recursion, which resolves other dirs
    try {
      for (const n of fs.readdirSync(self(fd), { encoding: 'buffer' })) {
        const name = n.toString('latin1');
        const rel = joinRel(real, name);
        const st = fs.lstatSync(at(fd, name));
        if (!this.unpacked.has(rel)) this.removeAll(fd, name, rel, st);
        else if (st.isDirectory()) this.emptyExcept(rel);
      }
    } finally {
      fs.closeSync(fd);
    }
  }

  private openPlnk(h: TarHeader, base: string): void {
    const old = this.plnk.get(base);
    if (old && old.tmpFd >= 0) fs.closeSync(old.tmpFd);
    this.plnk.delete(base);
    if (this.plnk.size < MAX_PLNK_TMPFILES) {
      const fd = openTmpfile(self(this.root.rootFd));
      if (fd !== null) {
        this.plnk.set(base, { h, src: fsPath(fdPath(fd)), tmpFd: fd });
        this.fd = fd;
        this.fdKept = true;
        return;
      }
    }
    if (this.plnkFd < 0) {
      const made = fs.mkdtempSync(`${fdPath(this.root.rootFd)}/.strata-plnk-`);
      this.plnkDir = made.slice(made.lastIndexOf('/') + 1);
      this.implicit.add(this.plnkDir);
      this.plnkFd = fs.openSync(made, O_PATH | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW);
    }
    const p = at(this.plnkFd, base);
    this.fd = fs.openSync(p, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC | O_NOFOLLOW, 0o600);
    this.plnk.set(base, { h, src: p, tmpFd: -1 });
  }

  // ---- metadata ---------------------------------------------------------------

  /**
   * Owner, xattrs, mode (in that order: chown clears setuid bits and
   * capabilities) and times of a symlink or node just made at `p` (a pinned
   * parent and a name), or of the inode a hardlink just made there links.
   * Only chmod follows names, so it goes through an O_PATH handle of the node
   * itself, never through a name. moby changes neither the mode nor the times
   * of a symlink a hardlink links (its Chmod and Chtimes would follow it).
   */
  private meta(p: Buffer, h: TarHeader, kind: 'symlink' | 'node' | 'link'): void {
    const ofd = kind === 'symlink' ? -1 : fs.openSync(p, O_PATH | O_NOFOLLOW);
    try {
      const st = ofd < 0 ? null : fs.fstatSync(ofd);
      const symlink = st === null || st.isSymbolicLink();
      if (isRoot) fs.lchownSync(p, h.uid, h.gid);
      // Linux refuses user.* xattrs on symlinks, FIFOs and devices (EPERM): moby (20.10) skips
      // them with a warning, for such an entry and for the inode a link entry links. Only those:
      // an EPERM for any other namespace is a real failure here, as on files and directories
      const lenient = symlink || !st!.isFile();
      if (h.xattrs) for (const [k, v] of h.xattrs) setXattr(p, k, v, lenient && k.startsWith('user.'));
      if (!symlink) fs.chmodSync(fdPath(ofd), h.mode);
      if (kind !== 'link' || !symlink) this.times(p, h);
    } finally {
      if (ofd >= 0) fs.closeSync(ofd);
    }
  }

  /** Owner, xattrs and mode of a directory through its handle; its times are deferred to the end. */
  private dirMeta(dfd: number, real: string, h: TarHeader): void {
    const p = self(dfd);
    if (isRoot) fs.lchownSync(p, h.uid, h.gid);
    if (h.xattrs) for (const [k, v] of h.xattrs) setXattr(p, k, v);
    fs.chmodSync(p, h.mode);
    const st = fs.fstatSync(dfd);
    this.dirTimes.push({ real, dev: st.dev, ino: st.ino, sec: h.mtimeSec, nsec: h.mtimeNsec, atimeNs: h.atimeNs ?? 0n });
  }

  /** Owner, xattrs, mode and times of a regular file, all on its fd. */
  private finishFile(fd: number, h: TarHeader): void {
    if (isRoot && (h.uid !== 0 || h.gid !== 0)) fs.fchownSync(fd, h.uid, h.gid);
    if (h.xattrs) for (const [k, v] of h.xattrs) setXattr(fd, k, v);
    if (this.needsChmod(h.mode)) fs.fchmodSync(fd, h.mode);
    if (h.mtimeNsec === 0 && h.atimeNs === undefined) fs.futimesSync(fd, h.mtimeSec, h.mtimeSec);
    else sys.futimensNs(fd, mtimeNs(h), h.atimeNs ?? mtimeNs(h));
  }

  /** open() already applied the permission bits, unless umask or special bits interfere */
  private needsChmod(mode: number): boolean {
    return (mode & 0o7000) !== 0 || (mode & this.umask) !== 0;
  }

  /** Times of the node at `p` (mobyTimes made them moby's), never following its name. */
  private times(p: Buffer, h: TarHeader): void {
    // node makes a negative time "now": a symlink's pre-epoch time takes the ns call
    if (h.mtimeNsec === 0 && h.atimeNs === undefined && h.mtimeSec >= 0) fs.lutimesSync(p, h.mtimeSec, h.mtimeSec);
    else sys.lutimensNs(p, mtimeNs(h), h.atimeNs ?? mtimeNs(h));
  }

  /** Remove `name` in `pfd` (real path `real`), a file or a whole tree, never following symlinks; missing is fine. */
  private removeAll(pfd: number, name: string, real: string, st?: fs.Stats): void {
    const p = at(pfd, name);
    st ??= fs.lstatSync(p, { throwIfNoEntry: false });
    if (!st) return;
    if (st.isDirectory()) {
      this.root.forget(real, true);
      removeTree(p); // one component per call: a tree deeper than PATH_MAX goes too
    } else {
      fs.unlinkSync(p);
      if (st.isSymbolicLink()) this.root.forget(real, false);
    }
  }

  // ---- end ----------------------------------------------------------------------

  finish(): void {
    this.offload?.drain();
    this.checkOffload();
    this.dropPlnk();
    // directory times last: creating entries inside changed them. Each is
    // re-resolved inside the layer and must still be the directory that was
    // made: one a later entry replaced (by a symlink, say) is skipped.
    for (const d of this.dirTimes) {
      const fd = this.madeDir(d);
      if (fd === null) continue;
      const p = self(fd);
      if (d.nsec === 0 && d.atimeNs % NS === 0n) fs.utimesSync(p, Number(d.atimeNs / NS), d.sec);
      else sys.lutimensNs(p, BigInt(d.sec) * NS + BigInt(d.nsec), d.atimeNs);
    }
    this.root.close();
    this.offload?.close();
  }

  /**
   * The directory `d` recorded, if it is still there: its parent resolved in
   * the layer, its own name opened without following, dev+ino compared.
   * Gone, replaced, or under a parent now made a file or a symlink loop: null.
   */
  private madeDir(d: DirTime): number | null {
    let fd: number;
    if (d.real === '') fd = this.root.rootFd;
    else {
      const [dir, base] = splitRel(d.real);
      let parent;
      try {
        parent = this.root.dir(dir, false);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOTDIR' || e instanceof BreakoutError) return null;
        throw e;
      }
      if (parent === null) return null;
      const own = openDirNoFollow(at(parent.fd, base));
      if (own === null) return null;
      this.root.adopt(d.real, own);
      fd = own;
    }
    const st = fs.fstatSync(fd);
    return st.dev === d.dev && st.ino === d.ino ? fd : null;
  }

  abort(): void {
    try {
      this.offload?.close(); // first: it may still be writing
    } catch {
      // a dead worker: its ops are lost, and this thread's handles are closed below all the same
    }
    if (this.fd >= 0 && !this.fdKept) fs.closeSync(this.fd); // a kept one is closed with the plnk files
    this.fd = -1;
    try {
      this.dropPlnk();
    } finally {
      this.root.close();
    }
  }

  private dropPlnk(): void {
    for (const p of this.plnk.values()) if (p.tmpFd >= 0) fs.closeSync(p.tmpFd);
    this.plnk.clear();
    if (this.plnkFd >= 0) {
      fs.closeSync(this.plnkFd);
      this.plnkFd = -1;
      removeTree(at(this.root.rootFd, this.plnkDir));
    }
  }
}

/** Linux's longest file name: a longer one is left to this thread's open, whose error names it. */
const NAME_MAX = 255;

/** Whether the directory at `p` has no entries (one read, not a listing). */
function isEmptyDir(p: Buffer): boolean {
  const d = fs.opendirSync(p);
  try {
    return d.readSync() === null;
  } finally {
    d.closeSync();
  }
}

/** plnk files held as open tmpfiles at most; more (rare) go to a temp dir. */
const MAX_PLNK_TMPFILES = 256;
const O_TMPFILE = 0o20000000 | fs.constants.O_DIRECTORY; // Linux's __O_TMPFILE | O_DIRECTORY

/** An unnamed file in directory `dir`, or null where the file system has no O_TMPFILE. */
function openTmpfile(dir: Buffer): number | null {
  try {
    return fs.openSync(dir, O_TMPFILE | fs.constants.O_RDWR, 0o600);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EOPNOTSUPP' || code === 'ENOTSUP' || code === 'EISDIR' || code === 'EINVAL') return null;
    throw e;
  }
}

const NS = 1_000_000_000n;
/** the last time a timespec holds (time.Unix(0, 1<<63-1) in moby's Chtimes) */
const MAX_NS = (1n << 63n) - 1n;
const MAX_SEC = Number(MAX_NS / NS);

/**
 * Make `h`'s times (a fresh header per entry: ours to change) those moby's
 * createTarFile sets. The atime is never before the mtime (none in the tar:
 * the mtime), and `atimeNs` is left undefined when it equals the mtime. A
 * symlink takes both exactly (LUtimesNano); for the rest system.Chtimes makes
 * a time before the epoch or past 2262 the epoch — node's calls would make a
 * negative one "now", and an apply would not be reproducible. A directory's
 * times are set again at the end from its own header: its atime is the tar's
 * (none: the epoch), not raised to the mtime.
 */
function mobyTimes(h: TarHeader): void {
  if (h.atimeNs === undefined && h.mtimeSec >= 0 && h.mtimeSec < MAX_SEC) {
    if (h.type === 'dir') h.atimeNs = 0n;
    return; // the common case, without a BigInt
  }
  const m = mtimeNs(h);
  if (h.type === 'dir') {
    h.atimeNs = chtime(h.atimeNs ?? 0n);
  } else if (h.type === 'symlink') {
    h.atimeNs = h.atimeNs !== undefined && h.atimeNs > m ? h.atimeNs : undefined;
    return;
  } else {
    const a = chtime(h.atimeNs !== undefined && h.atimeNs > m ? h.atimeNs : m);
    h.atimeNs = a === chtime(m) ? undefined : a;
  }
  if (m < 0n || m > MAX_NS) {
    h.mtimeSec = 0;
    h.mtimeNsec = 0;
  }
}

const chtime = (ns: bigint) => (ns < 0n || ns > MAX_NS ? 0n : ns);

function mtimeNs(h: { mtimeSec: number; mtimeNsec: number }): bigint {
  return BigInt(h.mtimeSec) * NS + BigInt(h.mtimeNsec);
}

/**
 * moby ignores xattrs the target file system cannot hold (EOPNOTSUPP), and so do
 * we; in a user namespace also those it may not set (EPERM: trusted.*), and, with
 * `permLenient`, those Linux refuses on a symlink, FIFO or device (EPERM: user.*).
 */
function setXattr(target: Buffer | number, name: string, value: Buffer, permLenient = false): void {
  try {
    if (typeof target === 'number') sys.fsetxattr(target, name, value);
    else sys.lsetxattr(target, name, value);
  } catch (e) {
    if (!(e instanceof sys.SysError)) throw e;
    if (e.code === 'ENOTSUP' || e.code === 'EOPNOTSUPP' || (e.code === 'EPERM' && (permLenient || runningInUserNS()))) return;
    throw e;
  }
}
