// Seeded damage to a store for the store fuzzer: one or a few of its entries
// replaced by garbage, truncated, emptied, a FIFO, a character device, a
// symlink (to /dev/zero, out of the root, dangling, looping), a huge sparse
// file, removed, a directory, or (JSON and number files) a field of another
// type / an absurd number; overlay2 lowers and l/ links retargeted out of the
// home. Every mutation is undone from the pristine base by path.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { lutimensNs } from '../../sys/syscalls.ts';
import { prng } from '../../fixtures/sample-image.ts';
import { snapshotTree } from './store-snapshot.ts';

/** The fixtures' seeded generator (mulberry32), here to pick cases. */
export const rng = prng;

export type Rand = () => number;
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;

export interface Candidates {
  /** metadata files (relative paths): what the readers parse */
  meta: string[];
  /** layer data files (below a driver's layer dirs) */
  data: string[];
  dirs: string[];
  /** overlay2 l/ links */
  links: string[];
}

/** Where layer data lives (not metadata), by relative path. */
function isLayerData(rel: string): boolean {
  return /^(overlay2\/[^/]+\/diff\/|vfs\/dir\/[^/]+\/|aufs\/diff\/[^/]+\/|graph\/[^/]+\/layer\/)/.test(rel);
}

export function candidates(root: string): Candidates {
  const c: Candidates = { meta: [], data: [], dirs: [], links: [] };
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) {
        c.dirs.push(r);
        walk(r);
      } else if (e.isSymbolicLink() && /^overlay2\/l\//.test(r)) c.links.push(r);
      else if (isLayerData(r)) c.data.push(r);
      else c.meta.push(r);
    }
  };
  walk('');
  return c;
}

/** A JSON value of another type than `v`. */
function otherType(r: Rand, v: unknown): unknown {
  const all: unknown[] = [5, -1, 1.5, 1e30, {}, [], 'x', true, [1, {}], { a: 'b' }];
  const t = (x: unknown) => (Array.isArray(x) ? 'array' : x === null ? 'null' : typeof x);
  const other = all.filter((x) => t(x) !== t(v));
  return pick(r, other);
}

/** Replace one field (up to two levels down) of a JSON object or array by a value of another type. */
function mutateJson(r: Rand, doc: unknown): unknown {
  if (typeof doc !== 'object' || doc === null) return otherType(r, doc);
  const keys = Object.keys(doc);
  if (!keys.length) return otherType(r, doc);
  const k = pick(r, keys);
  const o = doc as Record<string, unknown>;
  o[k] = r() < 0.5 && typeof o[k] === 'object' && o[k] !== null ? mutateJson(r, o[k]) : otherType(r, o[k]);
  return doc;
}

export const SPARSE_SIZE = 64 << 20;

const fileMutations = ['garbage', 'truncate', 'empty', 'fifo', 'devzero', 'chardev', 'outside', 'dangling', 'loop', 'sparse', 'remove', 'dir', 'typed'] as const;

/**
 * Damage `root` (a copy of a store) at one to three seeded places; returns what
 * was done ("fifo image/overlay2/repositories.json", …) and the paths touched,
 * for restore().
 */
export function mutate(root: string, c: Candidates, r: Rand): { done: string[]; touched: string[] } {
  const done: string[] = [];
  const touched: string[] = [];
  const n = r() < 0.8 ? 1 : r() < 0.7 ? 2 : 3;
  for (let i = 0; i < n; i++) {
    const roll = r();
    if (roll < 0.08 && c.links.length) {
      const rel = pick(r, c.links);
      const target = pick(r, ['../../../../etc', '/etc', 'self', '../nothing/diff', `../${'0'.repeat(64)}/diff`]);
      const abs = path.join(root, rel);
      fs.rmSync(abs, { force: true });
      fs.symlinkSync(target === 'self' ? path.basename(rel) : target, abs);
      done.push(`link ${rel} -> ${target}`);
      touched.push(rel);
      continue;
    }
    if (roll < 0.14 && c.dirs.length) {
      const rel = pick(r, c.dirs);
      const how = pick(r, ['remove', 'symlink-out', 'file'] as const);
      const abs = path.join(root, rel);
      if (!fs.existsSync(abs)) continue;
      fs.rmSync(abs, { recursive: true, force: true });
      if (how === 'symlink-out') fs.symlinkSync('/etc', abs);
      else if (how === 'file') fs.writeFileSync(abs, 'not a directory\n');
      done.push(`dir-${how} ${rel}`);
      touched.push(rel);
      continue;
    }
    const pool = roll < 0.24 && c.data.length ? c.data : c.meta;
    if (!pool.length) continue;
    const rel = pick(r, pool);
    const abs = path.join(root, rel);
    const st = fs.lstatSync(abs, { throwIfNoEntry: false });
    if (!st) continue;
    const how = pick(r, fileMutations);
    const old = st.isFile() ? fs.readFileSync(abs) : Buffer.alloc(0);
    fs.rmSync(abs, { recursive: true, force: true });
    switch (how) {
      case 'garbage': {
        const b = Buffer.alloc(1 + Math.floor(r() * 4096));
        for (let j = 0; j < b.length; j++) b[j] = Math.floor(r() * 256);
        fs.writeFileSync(abs, b);
        break;
      }
      case 'truncate':
        fs.writeFileSync(abs, old.subarray(0, Math.floor(r() * old.length)));
        break;
      case 'empty':
        fs.writeFileSync(abs, '');
        break;
      case 'fifo':
        execFileSync('mkfifo', [abs]);
        break;
      case 'devzero':
        fs.symlinkSync('/dev/zero', abs);
        break;
      case 'chardev':
        execFileSync('mknod', [abs, 'c', '1', '5']); // /dev/zero's numbers
        break;
      case 'outside':
        fs.symlinkSync('/etc/passwd', abs);
        break;
      case 'dangling':
        fs.symlinkSync('/nonexistent/strata-fuzz', abs);
        break;
      case 'loop':
        fs.symlinkSync(path.basename(abs), abs);
        break;
      case 'sparse':
        fs.writeFileSync(abs, old.subarray(0, 64));
        fs.truncateSync(abs, SPARSE_SIZE);
        break;
      case 'remove':
        break;
      case 'dir':
        fs.mkdirSync(abs);
        break;
      case 'typed': {
        const text = old.toString('utf8').trim();
        let out: string;
        if (/^\d+$/.test(text)) out = pick(r, ['1' + '0'.repeat(30), '-1', '1.5', '9007199254740993', '']);
        else if (path.basename(rel) === 'lower') out = pick(r, ['l/../../../etc', '/etc', 'l/', 'l/NOSUCHLINKNOSUCHLINKNOSUC']);
        else {
          try {
            out = JSON.stringify(mutateJson(r, JSON.parse(text)));
          } catch {
            out = text.replace(/[0-9a-f]/, 'z');
          }
        }
        fs.writeFileSync(abs, out);
        break;
      }
    }
    done.push(`${how} ${rel}`);
    touched.push(rel);
  }
  return { done, touched };
}

/** Undo mutate(): each touched path back as `base` has it (cp -a: modes, owners, times, xattrs). */
export function restore(root: string, base: string, touched: string[]): void {
  for (const rel of touched) {
    const abs = path.join(root, rel);
    fs.rmSync(abs, { recursive: true, force: true });
    if (fs.lstatSync(path.join(base, rel), { throwIfNoEntry: false })) execFileSync('cp', ['-a', path.join(base, rel), abs]);
  }
}

/**
 * snapshotTree's metadata without the contents (type and mode, owner, size, mtime and
 * ctime in ns, symlink targets), and for regular files the atime too. `atimeNs` first sets
 * every regular file's atime back to that time (ns) (mtime kept), so that any read
 * without O_NOATIME would move it.
 */
export function statSnapshot(root: string, atimeNs?: bigint): Map<string, string> {
  // atimes first, then every stat: hardlinks share an inode, whose ctime each lutimens moves
  const reset = (abs: string) => {
    const st = fs.lstatSync(abs, { bigint: true });
    if (st.isFile()) lutimensNs(abs, st.mtimeNs, atimeNs); // mtime kept to the ns
    if (st.isDirectory()) for (const n of fs.readdirSync(abs)) reset(path.join(abs, n));
  };
  if (atimeNs !== undefined) reset(root);
  return snapshotTree(root, { contents: false, atimes: true });
}
