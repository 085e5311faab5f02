// Path resolution confined to a root directory, as if the process were
// chrooted there (moby's chrootarchive / FollowSymlinkInScope): `..` stops at
// the root, absolute symlink targets start again from the root. Here: the
// lexical helpers (cleanRel, splitRel) and a path resolver for READERS of a
// tree (tar-split reassembly). Writers must not act on the absolute paths it
// returns — a later change of the tree could redirect them; applyLayer goes
// through in-root.ts, whose handles make that impossible by construction.
import * as fs from 'node:fs';
import { fsPath } from './types.ts';

export class BreakoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BreakoutError';
  }
}

const MAX_LINKS = 40; // Linux's MAXSYMLINKS

/**
 * Lexically clean a tar name to a root-relative path without leading '/',
 * './' or trailing '/': '' is the root. Returns null when `..` would climb
 * above the root (moby refuses such entries as breakouts).
 */
export function cleanRel(name: string): string | null {
  // fast path, the common case: a plain relative name with at most a leading './' and a trailing '/'
  let n = name.startsWith('./') ? name.slice(2) : name;
  if (n.endsWith('/')) n = n.slice(0, -1);
  if (n !== '' && n[0] !== '/' && n[n.length - 1] !== '/' && !n.includes('//') && !n.includes('/.') && n[0] !== '.') return n;
  const out: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length === 0) return null;
      out.pop();
    } else out.push(part);
  }
  return out.join('/');
}

/** `dir/name` for a root-relative `dir` ('' is the root). */
export function joinRel(dir: string, name: string): string {
  return dir === '' ? name : dir + '/' + name;
}

export function splitRel(rel: string): [dir: string, base: string] {
  const i = rel.lastIndexOf('/');
  return i === -1 ? ['', rel] : [rel.slice(0, i), rel.slice(i + 1)];
}

/**
 * Resolves directory paths inside `root` (a raw byte string), following
 * symlinks in scope and creating missing directories (0755) like moby's
 * UnpackLayer does for entries whose parents are missing. Results are cached:
 * callers must call `invalidate()` after removing or replacing a directory or
 * a symlink, since a cached resolution may pass through it.
 */
export class ScopedResolver {
  private cache = new Map<string, string>();

  constructor(readonly root: string) {}

  /** Absolute raw path of a root-relative path. */
  abs(rel: string): string {
    return rel === '' ? this.root : this.root + '/' + rel;
  }

  invalidate(): void {
    this.cache.clear();
  }

  /**
   * The real root-relative directory that `relDir` names inside the root,
   * symlinks followed in scope; missing components are created as 0755 dirs
   * when `create` is set, else null is returned for a missing path.
   */
  resolveDir(relDir: string, create = true): string | null {
    if (relDir === '') return '';
    const hit = this.cache.get(relDir);
    if (hit !== undefined) return hit;
    const todo = relDir.split('/').reverse(); // stack: next component on top
    const cur: string[] = [];
    let links = 0;
    while (todo.length) {
      const part = todo.pop()!;
      if (part === '' || part === '.') continue;
      if (part === '..') {
        cur.pop(); // at the root, '..' is the root
        continue;
      }
      const rel = cur.length ? cur.join('/') + '/' + part : part;
      const p = fsPath(this.abs(rel));
      const st = fs.lstatSync(p, { throwIfNoEntry: false });
      if (st === undefined) {
        if (!create) return null;
        fs.mkdirSync(p, 0o755);
        cur.push(part);
      } else if (st.isDirectory()) {
        cur.push(part);
      } else if (st.isSymbolicLink()) {
        if (++links > MAX_LINKS) throw new BreakoutError(`too many levels of symbolic links resolving "${relDir}"`);
        const target = fs.readlinkSync(p, { encoding: 'buffer' }).toString('latin1');
        if (target.startsWith('/')) cur.length = 0;
        const parts = target.split('/');
        for (let i = parts.length - 1; i >= 0; i--) todo.push(parts[i]);
      } else {
        const e = new Error(`ENOTDIR: "${rel}" is not a directory`) as NodeJS.ErrnoException;
        e.code = 'ENOTDIR';
        throw e;
      }
    }
    const real = cur.join('/');
    this.cache.set(relDir, real);
    return real;
  }

  /**
   * Resolve a path whose last component must not be followed (the entry being
   * created, removed or hardlinked): its parent is resolved in scope.
   */
  resolveEntry(rel: string, create = true): { parent: string; base: string; rel: string } | null {
    const [dir, base] = splitRel(rel);
    const parent = this.resolveDir(dir, create);
    if (parent === null) return null;
    return { parent, base, rel: joinRel(parent, base) };
  }
}
