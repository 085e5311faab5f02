// The one reader of /proc/self/mountinfo (proc(5)):
//
//   36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//   (1)(2)(3)   (4)   (5)         (6)       (7)     (8) (9)   (10)      (11)
//
// The kernel escapes space, tab, newline and backslash in paths (and in the
// source and options) as \ooo octal, so a line always splits on ' '. Fields
// are unescaped as bytes and decoded as UTF-8, the way node:fs names paths;
// `mountPointBytes` keeps the raw bytes for callers that walk Buffer paths.
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface MountInfo {
  id: number;
  parent: number;
  /** st_dev of the mounted fs, `major:minor` */
  dev: string;
  /** the root of the mount within its filesystem */
  root: string;
  mountPoint: string;
  mountPointBytes: Buffer;
  /** per-mount options (rw, noatime, …) */
  options: string[];
  /** optional fields (shared:N, master:N, propagate_from:N, unbindable) */
  optional: string[];
  fstype: string;
  source: string;
  /** per-superblock options (overlay's lowerdir=…, ext4's prjquota, …) */
  superOptions: string[];
}

/**
 * `\ooo` octal escapes decoded, latin1 in and out (one char per byte): the
 * form the kernel writes mountinfo in, and getfattr its names.
 */
export function unescapeOctal(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

const unescapeBytes = (field: string) => Buffer.from(unescapeOctal(field), 'latin1');

/** A mountinfo field (mount point, root, source) with its octal escapes decoded. */
export function unescapeMountinfo(field: string): string {
  return unescapeBytes(field).toString('utf8');
}

const csv = (s: string | undefined) => (s ? s.split(',').map(unescapeMountinfo) : []);

/** Parse a mountinfo text (read as latin1 or as bytes); malformed lines are skipped. */
export function parseMountinfo(text: string | Buffer): MountInfo[] {
  const raw = typeof text === 'string' ? text : text.toString('latin1');
  const out: MountInfo[] = [];
  for (const line of raw.split('\n')) {
    const f = line.split(' ');
    const sep = f.indexOf('-', 6);
    if (f.length < 10 || sep < 0 || sep + 2 >= f.length) continue;
    const mountPointBytes = unescapeBytes(f[4]);
    out.push({
      id: Number(f[0]),
      parent: Number(f[1]),
      dev: f[2],
      root: unescapeMountinfo(f[3]),
      mountPoint: mountPointBytes.toString('utf8'),
      mountPointBytes,
      options: csv(f[5]),
      optional: f.slice(6, sep),
      fstype: unescapeMountinfo(f[sep + 1]),
      source: unescapeMountinfo(f[sep + 2]),
      superOptions: csv(f[sep + 3]),
    });
  }
  return out;
}

/** The mount points of a mountinfo text, in order. */
export function parseMountPoints(text: string | Buffer): string[] {
  return parseMountinfo(text).map((m) => m.mountPoint);
}

/** This process's mount table, in mount order (later entries mount over earlier ones). */
export function readMountinfo(): MountInfo[] {
  return parseMountinfo(fs.readFileSync('/proc/self/mountinfo'));
}

/** Is `p` (resolved) a mount point in this process's mount namespace? */
export function isMountPoint(p: string, mounts: MountInfo[] = readMountinfo()): boolean {
  const target = path.resolve(p);
  return mounts.some((m) => m.mountPoint === target);
}

/** The mount on top at `p` (the last one mounted there), if `p` is a mount point. */
export function mountAt(p: string, mounts: MountInfo[] = readMountinfo()): MountInfo | undefined {
  const target = path.resolve(p);
  let top: MountInfo | undefined;
  for (const m of mounts) if (m.mountPoint === target) top = m;
  return top;
}

/** Mount points at or below `dir`, in mount order (unmount them in reverse). */
export function mountsUnder(dir: string, mounts: MountInfo[] = readMountinfo()): MountInfo[] {
  const base = path.resolve(dir);
  const prefix = base === '/' ? '/' : base + '/';
  return mounts.filter((m) => m.mountPoint === base || m.mountPoint.startsWith(prefix));
}

/** The mount holding `p` (realpath'd): the nearest mount point at or above it, topmost. */
export function mountFor(p: string, mounts: MountInfo[] = readMountinfo()): MountInfo | undefined {
  const real = fs.realpathSync(p);
  let best: MountInfo | undefined;
  for (const m of mounts) {
    const inside = m.mountPoint === '/' || real === m.mountPoint || real.startsWith(m.mountPoint + '/');
    // later lines mount over earlier ones; longer mount points are nearer
    if (inside && (!best || m.mountPoint.length >= best.mountPoint.length)) best = m;
  }
  return best;
}
