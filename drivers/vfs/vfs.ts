// vfs: every layer is a full, plain copy of its parent (moby
// daemon/graphdriver/vfs). No union filesystem, no mounts: works on any
// backing filesystem and needs nothing from the kernel, at the price of disk
// space and create time. Diffs are naive (drivers/naive.ts).
//
// Layout: <home>/dir/<id>/ is the layer's whole tree.
//
// Quota: the `size` storage option needs project quotas on the backing
// filesystem (drivers/quota.ts: xfs mounted with prjquota/pquota, or ext4
// with prjquota, and xfs_quota to set limits). The layer directory gets its
// own project id before the parent is copied in, so everything below it is
// charged to it. Without that, `size` fails with moby's ErrQuotaNotSupported.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { unescapeOctal } from '../../sys/mountinfo.ts';
import * as sys from '../../sys/syscalls.ts';
import {
  InvalidParameterError, LayerNotFoundError, QuotaNotSupportedError, mustBeExistingHome, parentOrNull, parseStorageOptKeyValue,
  ramInBytes, validateId, type CreateOpts, type Driver, type InitOpts, type LayerInfo, type ProtoDriver,
} from '../driver.ts';
import { NaiveDiffDriver } from '../naive.ts';
import { ProjectQuota, findTool } from '../quota.ts';
import { register } from '../registry.ts';
import { removeTree } from '../../archive/remove-tree.ts';

export const NAME = 'vfs';

const isRoot = process.getuid?.() === 0;

/** moby vfs Init: options `size=<bytes>` only (default quota for RW layers). No probes: both open modes are alike, except that `manage` creates nothing. */
export async function init(home: string, options: string[], opts: InitOpts = {}): Promise<Driver> {
  let defaultSize = 0;
  for (const opt of options) {
    const [key, val] = parseStorageOptKeyValue(opt);
    if (key === 'size') defaultSize = ramInBytes(val);
    else throw new InvalidParameterError(`unknown option ${key} for vfs`);
  }
  if (opts.mode === 'manage') mustBeExistingHome(NAME, home);
  else fs.mkdirSync(home, { recursive: true, mode: 0o710 });
  const quota = ProjectQuota.detect(home, layerDirs);
  if (defaultSize > 0 && typeof quota === 'string') throw new QuotaNotSupportedError(quota);
  return new NaiveDiffDriver(new VfsDriver(home, quota, defaultSize));
}

register(NAME, init);

export class VfsDriver implements ProtoDriver {
  readonly name = NAME;

  /**
   * @param quota project quota control, or why there is none
   * @param defaultSize `size` driver option: quota for every RW layer (0 = none)
   */
  constructor(readonly home: string, private readonly quota: ProjectQuota | string, private readonly defaultSize = 0) {}

  /** `<home>/dir/<id>` */
  dir(id: string): string {
    return path.join(this.home, 'dir', validateId(id));
  }

  async createReadWrite(id: string, parent: string | null, opts?: CreateOpts): Promise<void> {
    let size = this.defaultSize;
    for (const [key, val] of Object.entries(opts?.storageOpt ?? {})) {
      if (key === 'size') {
        if (typeof this.quota === 'string') throw new QuotaNotSupportedError(this.quota);
        size = ramInBytes(val);
      } else {
        throw new InvalidParameterError(`Storage opt ${key} not supported`);
      }
    }
    this.createLayer(id, parentOrNull(parent), size);
  }

  async create(id: string, parent: string | null, opts?: CreateOpts): Promise<void> {
    if (opts?.storageOpt && Object.keys(opts.storageOpt).length > 0) {
      throw new InvalidParameterError('--storage-opt is not supported for vfs on read-only layers');
    }
    this.createLayer(id, parentOrNull(parent), 0);
  }

  private createLayer(id: string, parent: string | null, size: number): void {
    const dir = this.dir(id);
    const parentDir = parent === null ? null : this.dir(parent);
    if (parentDir !== null && !isDir(parentDir)) throw new LayerNotFoundError(NAME, parent!, parentDir);
    fs.mkdirSync(path.dirname(dir), { recursive: true, mode: 0o710 });
    fs.mkdirSync(dir, 0o755); // EEXIST for an id already in use, as moby
    try {
      fs.chmodSync(dir, 0o755); // whatever the umask
      if (isRoot) fs.chownSync(dir, 0, 0);
      if (size > 0) (this.quota as ProjectQuota).setQuota(dir, size);
      if (parentDir !== null) copyTree(parentDir, dir);
    } catch (e) {
      removeTree(dir);
      throw e;
    }
  }

  async remove(id: string): Promise<void> {
    removeTree(this.dir(id)); // any depth: a layer may hold paths longer than PATH_MAX
  }

  async get(id: string): Promise<string> {
    const dir = this.dir(id);
    if (!isDir(dir)) throw new LayerNotFoundError(NAME, id, dir);
    return dir;
  }

  /** No mounts, nothing to release (moby vfs Put is a no-op too). */
  async put(id: string): Promise<void> {
    validateId(id);
  }

  exists(id: string): boolean {
    return isDir(this.dir(id));
  }

  status(): [string, string][] {
    return [];
  }

  /** moby HEAD: the layer directory, which is what migrations read. */
  metadata(id: string): Record<string, string> {
    const dir = this.dir(id);
    if (!isDir(dir)) throw new LayerNotFoundError(NAME, id, dir);
    return { SourceDir: dir };
  }

  async cleanup(): Promise<void> {}

  /** Layer ids (vfs records no parents). */
  layers(): LayerInfo[] {
    let names: string[];
    try {
      names = fs.readdirSync(path.join(this.home, 'dir'));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
    return names.sort().map((id) => ({ id }));
  }
}

/** Layer directories, which carry the project ids in use. */
function layerDirs(home: string): string[] {
  const root = path.join(home, 'dir');
  return fs.existsSync(root) ? fs.readdirSync(root).map((n) => path.join(root, n)) : [];
}

function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return false;
    throw e;
  }
}

// ---- the copy --------------------------------------------------------------------

/**
 * moby copy.DirCopy(src, dst, Content): recreate the tree of `src` in the
 * existing directory `dst`, root metadata included. Regular files are cloned
 * (FICLONE reflink where the filesystem can, copy_file_range otherwise);
 * hardlinks inside the tree stay hardlinks; symlinks, fifos and devices are
 * recreated (a socket becomes a fifo, as in moby: it cannot be recreated);
 * owner, all xattrs, mode incl. setuid/setgid/sticky and ns mtimes/atimes are
 * kept. Directory times are set last, after their contents were written.
 *
 * Cost per entry: lstat, create, lchown, chmod and utimes (an FFI utimensat,
 * ~20 µs, when the times have a sub-second part: Node's utimes keeps only
 * µs). Which files carry xattrs is learnt from one `getfattr -R` run over the
 * whole tree instead of an FFI llistxattr per file (~25 µs each); only those
 * files then cost an FFI get+set per attribute. Without getfattr (or when it
 * fails) every entry gets its llistxattr.
 *
 * `opts.mode: 'hardlink'` is moby copy.DirCopy(…, Hardlink), which overlay
 * (v1) builds image layers with: every regular file becomes a hardlink of the
 * source file (same inode: data, owner, mode, times and xattrs are shared, so
 * nothing is set on it); directories, symlinks, fifos and devices are still
 * recreated with their metadata as above, so every directory is a new inode.
 * Only the recreated entries are asked for xattrs (llistxattr each; no
 * getfattr run over a tree that is mostly files). `opts.xattrs` picks which
 * xattr names are copied (default: all).
 */
export function copyTree(srcRoot: string, dstRoot: string, opts: CopyTreeOptions = {}): void {
  const root = path.resolve(srcRoot);
  const hardlink = opts.mode === 'hardlink';
  const copier = new TreeCopier(hardlink ? null : xattrCarriers(root), hardlink, opts.xattrs ?? null);
  const src = Buffer.from(root);
  copier.entry(src, Buffer.from(dstRoot), fs.lstatSync(src, { bigint: true }), true);
  copier.finish();
}

export interface CopyTreeOptions {
  /** 'content' (default, moby copy.Content): every entry a new inode; 'hardlink': regular files are hardlinked */
  mode?: 'content' | 'hardlink';
  /** copy the xattr `name` of `src`? (default: every xattr) */
  xattrs?: (name: string, src: Buffer) => boolean;
}

const SLASH = Buffer.from('/');

/**
 * The entries below `root` (absolute, as latin1 byte strings of their paths)
 * that carry xattrs, with the names, from one `getfattr -R -P -h -m -` run;
 * null when that is not possible and every entry must be asked.
 */
export function xattrCarriers(root: string): Map<string, string[]> | null {
  const tool = findTool('getfattr');
  if (!tool) return null;
  let out: Buffer;
  try {
    out = execFileSync(tool, ['-R', '-P', '-h', '-m', '-', '--absolute-names', root], {
      stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 30,
    });
  } catch {
    return null; // an unreadable entry, a vanished file: fall back to asking each entry
  }
  // getfattr writes `# file: <path>` then one name per line, blocks separated
  // by an empty line; '\' and control bytes are written as \ooo octal escapes
  const found = new Map<string, string[]>();
  let current: string[] | null = null;
  for (const line of out.toString('latin1').split('\n')) {
    if (line.startsWith('# file: ')) {
      current = [];
      found.set(unescapeOctal(line.slice(8)), current);
    } else if (line !== '' && current) {
      current.push(Buffer.from(unescapeOctal(line), 'latin1').toString('utf8'));
    }
  }
  return found;
}

class TreeCopier {
  constructor(
    private readonly xattrs: Map<string, string[]> | null,
    private readonly hardlink = false,
    private readonly keepXattr: ((name: string, src: Buffer) => boolean) | null = null,
  ) {}
  private readonly links = new Map<string, Buffer>();
  private readonly dirs: { dst: Buffer; st: fs.BigIntStats }[] = [];

  entry(src: Buffer, dst: Buffer, st: fs.BigIntStats, isTop = false): void {
    const mode = Number(st.mode);
    switch (mode & sys.S_IFMT) {
      case sys.S_IFREG:
        if (this.hardlink) {
          fs.linkSync(src, dst); // the source's inode: its metadata comes along
          return;
        }
        if (st.nlink > 1n) {
          const key = `${st.dev}:${st.ino}`;
          const first = this.links.get(key);
          if (first) {
            fs.linkSync(first, dst); // metadata is the inode's: done once
            return;
          }
          this.links.set(key, dst);
        }
        fs.copyFileSync(src, dst, fs.constants.COPYFILE_FICLONE);
        break;
      case sys.S_IFDIR:
        if (!isTop) fs.mkdirSync(dst, 0o700);
        if (this.hardlink) {
          this.linkEntries(src, dst);
          break;
        }
        for (const name of fs.readdirSync(src, { encoding: 'buffer' })) {
          const s = Buffer.concat([src, SLASH, name]);
          this.entry(s, Buffer.concat([dst, SLASH, name]), fs.lstatSync(s, { bigint: true }));
        }
        break;
      case sys.S_IFLNK:
        fs.symlinkSync(fs.readlinkSync(src, { encoding: 'buffer' }), dst);
        break;
      case sys.S_IFIFO:
      case sys.S_IFSOCK:
        sys.mknod(dst, sys.S_IFIFO | (mode & 0o777), 0);
        break;
      case sys.S_IFCHR:
      case sys.S_IFBLK:
        sys.mknod(dst, mode, Number(st.rdev));
        break;
      default:
        throw new Error(`unknown file type 0${(mode & sys.S_IFMT).toString(8)} for ${src.toString()}`);
    }
    this.meta(src, dst, st, mode);
  }

  /** Hardlink mode: a regular file (known from its dirent type) is linked without an lstat; the rest as entry(). */
  private linkEntries(src: Buffer, dst: Buffer): void {
    for (const e of fs.readdirSync(src, { encoding: 'buffer', withFileTypes: true })) {
      const s = Buffer.concat([src, SLASH, e.name]);
      const d = Buffer.concat([dst, SLASH, e.name]);
      if (e.isFile()) fs.linkSync(s, d);
      else this.entry(s, d, fs.lstatSync(s, { bigint: true }));
    }
  }

  /** Owner, then xattrs, then mode (chown clears setuid/setgid and capabilities), then times. */
  private meta(src: Buffer, dst: Buffer, st: fs.BigIntStats, mode: number): void {
    const type = mode & sys.S_IFMT;
    const isLink = type === sys.S_IFLNK;
    const uid = Number(st.uid);
    const gid = Number(st.gid);
    if (isRoot || uid !== process.getuid?.() || gid !== process.getgid?.()) fs.lchownSync(dst, uid, gid);
    const names = this.xattrs ? (this.xattrs.get(src.toString('latin1')) ?? []) : sys.llistxattr(src);
    for (const name of names) {
      if (this.keepXattr && !this.keepXattr(name, src)) continue;
      const value = sys.lgetxattr(src, name);
      if (value !== null) sys.lsetxattr(dst, name, value);
    }
    if (!isLink) fs.chmodSync(dst, mode & 0o7777);
    if (type === sys.S_IFDIR) {
      this.dirs.push({ dst, st });
      return;
    }
    setTimes(dst, st, isLink);
  }

  finish(): void {
    for (const { dst, st } of this.dirs) setTimes(dst, st, false);
  }
}

function setTimes(p: Buffer, st: fs.BigIntStats, isLink: boolean): void {
  const ns = 1_000_000_000n;
  if (isLink || st.mtimeNs % ns !== 0n || st.atimeNs % ns !== 0n) {
    sys.lutimensNs(p, st.mtimeNs, st.atimeNs);
  } else {
    fs.utimesSync(p, Number(st.atimeNs / ns), Number(st.mtimeNs / ns));
  }
}
