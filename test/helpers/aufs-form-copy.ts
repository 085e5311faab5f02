// Copy an overlay-form diff dir into aufs form, keeping every piece of
// metadata a change walker looks at (mode, owner, rdev, mtime to the ns,
// size, content, non-overlay xattrs, hardlinks):
//   char device 0/0 `x`          → empty regular file `.wh.x`
//   trusted.overlay.opaque=y dir → dir with an empty file `.wh..wh..opq`
//   trusted.overlay.* xattrs     → dropped
// Paths are raw byte strings (see archive/types.ts). Root only (chown, mknod, xattrs).
import fs from 'node:fs';
import { lgetxattr, llistxattr, lsetxattr, lutimensNs, mknod, S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from '../../sys/syscalls.ts';
import { fsPath, OVERLAY_OPAQUE_XATTR, rawPath, WHITEOUT_OPAQUE_DIR, WHITEOUT_PREFIX } from '../../archive/types.ts';

export function copyOverlayDiffAsAufs(srcDir: string, dstDir: string): void {
  const links = new Map<string, string>();
  fs.mkdirSync(dstDir, { recursive: true });
  copyEntry(rawPath(srcDir), rawPath(dstDir), links, true);
}

function copyEntry(src: string, dst: string, links: Map<string, string>, isRoot: boolean): void {
  const st = fs.lstatSync(fsPath(src), { bigint: true });
  const type = Number(st.mode) & S_IFMT;
  const perm = Number(st.mode) & 0o7777;
  if (type !== S_IFDIR && st.nlink > 1n) {
    const key = `${st.dev}:${st.ino}`;
    const first = links.get(key);
    if (first !== undefined) {
      fs.linkSync(fsPath(first), fsPath(dst));
      return;
    }
    links.set(key, dst);
  }
  switch (type) {
    case S_IFDIR: {
      if (!isRoot) fs.mkdirSync(fsPath(dst));
      for (const name of fs.readdirSync(fsPath(src), { encoding: 'buffer' })) {
        const n = name.toString('latin1');
        const child = fs.lstatSync(fsPath(`${src}/${n}`), { bigint: true });
        if ((Number(child.mode) & S_IFMT) === S_IFCHR && child.rdev === 0n) {
          fs.writeFileSync(fsPath(`${dst}/${WHITEOUT_PREFIX}${n}`), '');
        } else {
          copyEntry(`${src}/${n}`, `${dst}/${n}`, links, false);
        }
      }
      if (lgetxattr(fsPath(src), OVERLAY_OPAQUE_XATTR)?.toString() === 'y') {
        fs.writeFileSync(fsPath(`${dst}/${WHITEOUT_OPAQUE_DIR}`), '');
      }
      break;
    }
    case S_IFREG:
      fs.copyFileSync(fsPath(src), fsPath(dst));
      break;
    case S_IFLNK:
      fs.symlinkSync(fs.readlinkSync(fsPath(src), { encoding: 'buffer' }), fsPath(dst));
      break;
    default:
      mknod(fsPath(dst), type | perm, Number(st.rdev));
  }
  // chown clears setuid/setgid and security.capability, so: owner, then mode, then xattrs, then times
  fs.lchownSync(fsPath(dst), Number(st.uid), Number(st.gid));
  if (type !== S_IFLNK) fs.chmodSync(fsPath(dst), perm);
  for (const name of llistxattr(fsPath(src))) {
    if (name.startsWith('trusted.overlay.')) continue;
    const v = lgetxattr(fsPath(src), name);
    if (v !== null) lsetxattr(fsPath(dst), name, v);
  }
  lutimensNs(fsPath(dst), st.mtimeNs, st.atimeNs);
}
