// The one tree copy (moby's copy.DirCopy), shared by vfs (a layer is a full
// copy of its parent) and overlay v1 (image layers hardlinked from the parent,
// container uppers copied). Regular files go through copyFileSync with
// COPYFILE_FICLONE: libuv tries the FICLONE ioctl (a reflink sharing extents
// on btrfs and reflink xfs) and falls back to copy_file_range, which itself
// falls back to a read/write copy in the kernel.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { findTool } from '../sys/find-tool.ts';
import { unescapeOctal } from '../sys/mountinfo.ts';
import * as sys from '../sys/syscalls.ts';

const isRoot = process.getuid?.() === 0;

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
