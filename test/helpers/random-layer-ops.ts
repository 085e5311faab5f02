// Seeded random file-system mutations for layer-stack tests: what a container
// does to its rootfs (create, rewrite, delete, chmod, chown, links, caps,
// type changes), applied through any directory (e.g. an overlay merged mount).
// Paths are raw byte strings; names include a space, UTF-8 and a non-UTF-8 byte.
import fs from 'node:fs';
import { lsetxattr, lutimensNs, makedev, mknod, S_IFBLK, S_IFCHR, S_IFIFO } from '../../sys/syscalls.ts';
import { fsPath } from '../../archive/types.ts';
import { escapeRaw } from '../../archive/digest.ts';
import { capabilityV2 } from './file-capability.ts';

/** mulberry32: small, fast, deterministic. */
export class Rng {
  private s: number;
  constructor(readonly seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
}

const NAMES = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'sp ace', '\xc3\xa9t\xc3\xa9', 'bad\xff'];
const MODES = [0o644, 0o755, 0o600, 0o4755, 0o2755, 0o1777, 0o444, 0o700];
const IDS = [0, 1000, 65534];
const MAX_DEPTH = 4;

interface TreeIndex {
  dirs: string[]; // includes '' (the root)
  files: string[];
  symlinks: string[];
  nondirs: string[];
  entries: string[]; // everything but the root
}

function indexTree(root: string): TreeIndex {
  const ix: TreeIndex = { dirs: [''], files: [], symlinks: [], nondirs: [], entries: [] };
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(fsPath(root + rel || '/'), { encoding: 'buffer', withFileTypes: true })) {
      const p = `${rel}/${e.name.toString('latin1')}`;
      ix.entries.push(p);
      if (e.isDirectory()) {
        ix.dirs.push(p);
        walk(p);
      } else {
        ix.nondirs.push(p);
        if (e.isFile()) ix.files.push(p);
        if (e.isSymbolicLink()) ix.symlinks.push(p);
      }
    }
  };
  walk('');
  return ix;
}

/** A random mtime in a narrow window (so equal seconds happen), ns 0 about a third of the time. */
function mtime(rng: Rng): bigint {
  const sec = 1_600_000_000n + BigInt(rng.int(40));
  return sec * 1_000_000_000n + (rng.chance(0.35) ? 0n : BigInt(1 + rng.int(999_999_999)));
}

function content(rng: Rng, size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = rng.int(256);
  return b;
}

type Op = (rng: Rng, root: string, ix: TreeIndex) => string | null;

function depth(rel: string): number {
  return rel.split('/').length - 1;
}

function freshName(rng: Rng, ix: TreeIndex, dir: string): string | null {
  const taken = new Set(ix.entries);
  const start = rng.int(NAMES.length);
  for (let i = 0; i < NAMES.length; i++) {
    const p = `${dir}/${NAMES[(start + i) % NAMES.length]}`;
    if (!taken.has(p)) return p;
  }
  return null;
}

function parentDir(rng: Rng, ix: TreeIndex): string {
  const dirs = ix.dirs.filter((d) => depth(d) < MAX_DEPTH);
  return rng.pick(dirs.length ? dirs : ['']);
}

function writeFile(rng: Rng, root: string, p: string): void {
  fs.writeFileSync(fsPath(root + p), content(rng, rng.int(48)), { mode: 0o644 });
  fs.chmodSync(fsPath(root + p), rng.pick(MODES)); // writeFileSync's mode is umask-filtered
  lutimensNs(fsPath(root + p), mtime(rng));
}

const ops: Array<[number, string, Op]> = [
  [5, 'create file', (rng, root, ix) => {
    const p = freshName(rng, ix, parentDir(rng, ix));
    if (p === null) return null;
    writeFile(rng, root, p);
    return p;
  }],
  [4, 'rewrite file (same size)', (rng, root, ix) => {
    if (!ix.files.length) return null;
    const p = rng.pick(ix.files);
    const size = fs.lstatSync(fsPath(root + p)).size;
    const old = fs.statSync(fsPath(root + p), { bigint: true }).mtimeNs;
    fs.writeFileSync(fsPath(root + p), content(rng, size));
    // sometimes only the ns part moves, sometimes to 0 ns in the same second (invisible by moby's rule)
    const r = rng.int(3);
    const sec = old / 1_000_000_000n;
    lutimensNs(fsPath(root + p), r === 0 ? mtime(rng) : r === 1 ? sec * 1_000_000_000n : sec * 1_000_000_000n + BigInt(1 + rng.int(999_999_999)));
    return p;
  }],
  [3, 'delete non-dir', (rng, root, ix) => {
    if (!ix.nondirs.length) return null;
    const p = rng.pick(ix.nondirs);
    fs.unlinkSync(fsPath(root + p));
    return p;
  }],
  [3, 'mkdir', (rng, root, ix) => {
    const p = freshName(rng, ix, parentDir(rng, ix));
    if (p === null) return null;
    fs.mkdirSync(fsPath(root + p));
    fs.chmodSync(fsPath(root + p), rng.pick([0o755, 0o700, 0o1777, 0o2755]));
    return p;
  }],
  [1, 'rm -rf dir', (rng, root, ix) => {
    if (ix.dirs.length < 2) return null;
    const p = rng.pick(ix.dirs.slice(1));
    fs.rmSync(fsPath(root + p), { recursive: true });
    return p;
  }],
  [1, 'replace dir by a new dir', (rng, root, ix) => {
    if (ix.dirs.length < 2) return null;
    const p = rng.pick(ix.dirs.slice(1));
    fs.rmSync(fsPath(root + p), { recursive: true });
    fs.mkdirSync(fsPath(root + p));
    for (let i = rng.int(3); i >= 0; i--) writeFile(rng, root, `${p}/${rng.pick(NAMES)}`);
    return p;
  }],
  [2, 'chmod', (rng, root, ix) => {
    const cands = ix.entries.filter((p) => !ix.symlinks.includes(p));
    if (!cands.length) return null;
    const p = rng.pick(cands);
    fs.chmodSync(fsPath(root + p), ix.dirs.includes(p) ? rng.pick([0o755, 0o700, 0o1777, 0o2755]) : rng.pick(MODES));
    return p;
  }],
  [2, 'chown', (rng, root, ix) => {
    if (!ix.entries.length) return null;
    const p = rng.pick(ix.entries);
    fs.lchownSync(fsPath(root + p), rng.pick(IDS), rng.pick(IDS));
    return p;
  }],
  [1, 'symlink', (rng, root, ix) => {
    const p = freshName(rng, ix, parentDir(rng, ix));
    if (p === null) return null;
    fs.symlinkSync(fsPath(rng.pick(['a', '../b', '/etc/passwd', 'bad\xff', 'zz'])), fsPath(root + p));
    lutimensNs(fsPath(root + p), mtime(rng));
    return p;
  }],
  [1, 'retarget symlink', (rng, root, ix) => {
    if (!ix.symlinks.length) return null;
    const p = rng.pick(ix.symlinks);
    const st = fs.lstatSync(fsPath(root + p), { bigint: true });
    fs.unlinkSync(fsPath(root + p));
    fs.symlinkSync(fsPath(rng.pick(['y', 'yy', 'zz', '/x/y/z'])), fsPath(root + p));
    lutimensNs(fsPath(root + p), rng.chance(0.5) ? st.mtimeNs : mtime(rng));
    return p;
  }],
  [1, 'hardlink', (rng, root, ix) => {
    if (!ix.files.length) return null;
    const p = freshName(rng, ix, parentDir(rng, ix));
    if (p === null) return null;
    fs.linkSync(fsPath(root + rng.pick(ix.files)), fsPath(root + p));
    return p;
  }],
  [1, 'set security.capability', (rng, root, ix) => {
    if (!ix.files.length) return null;
    const p = rng.pick(ix.files);
    lsetxattr(fsPath(root + p), 'security.capability', capabilityV2(1 << rng.int(31), rng.chance(0.5)));
    return p;
  }],
  [1, 'replace file by dir', (rng, root, ix) => {
    if (!ix.nondirs.length) return null;
    const p = rng.pick(ix.nondirs);
    fs.unlinkSync(fsPath(root + p));
    fs.mkdirSync(fsPath(root + p));
    if (rng.chance(0.5)) writeFile(rng, root, `${p}/${rng.pick(NAMES)}`);
    return p;
  }],
  [1, 'replace dir by file', (rng, root, ix) => {
    if (ix.dirs.length < 2) return null;
    const p = rng.pick(ix.dirs.slice(1));
    fs.rmSync(fsPath(root + p), { recursive: true });
    writeFile(rng, root, p);
    return p;
  }],
  [1, 'mknod', (rng, root, ix) => {
    const p = freshName(rng, ix, parentDir(rng, ix));
    if (p === null) return null;
    const kind = rng.pick([S_IFCHR, S_IFBLK, S_IFIFO]);
    mknod(fsPath(root + p), kind | 0o640, kind === S_IFIFO ? 0 : makedev(1 + rng.int(8), rng.int(4)));
    lutimensNs(fsPath(root + p), mtime(rng));
    return p;
  }],
  [1, 'replace dir by block device', (rng, root, ix) => {
    if (ix.dirs.length < 2) return null;
    const p = rng.pick(ix.dirs.slice(1));
    fs.rmSync(fsPath(root + p), { recursive: true });
    mknod(fsPath(root + p), S_IFBLK | 0o600, makedev(7, rng.int(4)));
    return p;
  }],
  [2, 'touch', (rng, root, ix) => {
    if (!ix.entries.length) return null;
    const p = rng.pick(ix.entries);
    lutimensNs(fsPath(root + p), mtime(rng));
    return p;
  }],
];

/**
 * Apply `count` random operations to the tree at raw path `root`.
 * Returns a log line per operation (raw paths as text, see escapeRaw).
 * For a union with known defects (fuse-overlayfs): `refused` lists error codes it
 * returns for some operations (it cannot copy up a device, fifo or socket to
 * change its times, mode or owner: EIO/ENXIO); such an op is logged as refused
 * and the run goes on, the caller's reference walk seeing whatever state it left.
 * `without` names operations never to choose.
 */
export function applyRandomOps(rng: Rng, root: string, count: number, opts: { refused?: readonly string[]; without?: readonly string[] } = {}): string[] {
  const log: string[] = [];
  const refused = opts.refused ?? [];
  const chosen = ops.filter(([, name]) => !opts.without?.includes(name));
  const weight = chosen.reduce((s, [w]) => s + w, 0);
  for (let i = 0; i < count; i++) {
    let r = rng.next() * weight;
    let k = 0;
    while (r >= chosen[k][0]) r -= chosen[k++][0];
    const [, name, op] = chosen[k];
    try {
      const p = op(rng, root, indexTree(root));
      if (p !== null) log.push(`${name} ${escapeRaw(p)}`);
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (!code || !refused.includes(code)) throw e;
      log.push(`${name}: refused by the union (${(e as Error).message})`);
    }
  }
  return log;
}
