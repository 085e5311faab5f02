// A fingerprint of every entry under a directory, to prove a read-only
// command changed nothing: type, mode, owner, size, mtime and ctime in ns
// (ctime moves on any write or metadata change and cannot be set back from
// user space), symlink targets, and a sha256 of every regular file up to
// 1 MiB (bigger files: their first and last MiB); optionally atimes, and
// without the contents.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface SnapshotOptions {
  /** hash regular files' contents (default true); metadata alone is cheaper, for a check per fuzz case */
  contents?: boolean;
  /** add regular files' atimes (default false), for readers that must not move them */
  atimes?: boolean;
}

export function snapshotTree(root: string, opts: SnapshotOptions = {}): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (p: string) => {
    const st = fs.lstatSync(p, { bigint: true });
    let extra = '';
    if (st.isSymbolicLink()) extra = fs.readlinkSync(p);
    else if (st.isFile() && opts.contents !== false) {
      const h = createHash('sha256');
      const fd = fs.openSync(p, 'r');
      try {
        const size = Number(st.size);
        const buf = Buffer.alloc(Math.min(size, 1 << 20));
        fs.readSync(fd, buf, 0, buf.length, 0);
        h.update(buf);
        if (size > 1 << 20) {
          fs.readSync(fd, buf, 0, buf.length, size - buf.length);
          h.update(buf);
        }
      } finally {
        fs.closeSync(fd);
      }
      extra = h.digest('hex');
    }
    const atime = opts.atimes && st.isFile() ? ` a${st.atimeNs}` : '';
    out.set(path.relative(root, p) || '.', `${st.mode} ${st.uid}:${st.gid} ${st.size} m${st.mtimeNs} c${st.ctimeNs}${atime} ${extra}`);
    if (st.isDirectory()) for (const n of fs.readdirSync(p).sort()) walk(path.join(p, n));
  };
  walk(root);
  return out;
}

/** Entries that differ between two snapshots ("path: before → after"). */
export function snapshotDiff(a: Map<string, string>, b: Map<string, string>): string[] {
  const out: string[] = [];
  for (const [k, v] of a) if (b.get(k) !== v) out.push(`${k}: ${v} → ${b.get(k) ?? '(gone)'}`);
  for (const [k, v] of b) if (!a.has(k)) out.push(`${k}: (new) ${v}`);
  return out;
}
