// Scratch directories a driver makes under its home (the kernel probes'
// test mounts), named after their holder so that the next init can tell
// those a killed process left behind from those a running one still uses:
//
//   <home>/<prefix>-<pid>.<start time>-XXXXXX      (drivers/holder.ts)
//
// moby names its own (and strata did) `<prefix>XXXXXX`, with no holder: such
// a dir is removed once it is a minute old, far longer than any probe takes.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isAlive, selfTag, untaggedIsStale } from './holder.ts';
import { mountsUnder } from '../sys/mountinfo.ts';
import { unmount } from './mounter.ts';

/** A fresh scratch dir `<parent>/<prefix>-<holder>-XXXXXX`, for the caller to remove. */
export function makeScratch(parent: string, prefix: string): string {
  return fs.mkdtempSync(path.join(parent, `${prefix}-${selfTag()}-`));
}

/** Run `fn` in a fresh scratch dir `<home>/<prefix>-<holder>-XXXXXX`, removed afterwards. */
export function withScratch<T>(home: string, prefix: string, fn: (dir: string) => T): T {
  const dir = makeScratch(home, prefix);
  try {
    return fn(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The holder a scratch dir name records, '' for an untagged one, null when `name` is no scratch dir of `prefixes`. */
function holderOf(name: string, prefixes: readonly string[]): string | null {
  for (const p of prefixes) {
    if (!name.startsWith(p)) continue;
    const m = /^-(\d+\.\d+)-[^-]+$/.exec(name.slice(p.length));
    return m ? m[1] : '';
  }
  return null;
}

/**
 * Remove the scratch dirs (names starting with one of `prefixes`) directly
 * under `home` whose holder is gone. Test mounts a killed probe left inside
 * one are detached first, so the removal never walks into a mounted overlay.
 * Removing frees space and never needs any: this works on a full disk.
 * `untagged: false` keeps untagged dirs whatever their age (where one may be
 * a long-running moby operation's, not a probe's). Returns the paths removed.
 */
export function removeStaleScratch(home: string, prefixes: readonly string[], opts: { untagged?: boolean } = {}): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(home);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const removed: string[] = [];
  for (const name of names) {
    const holder = holderOf(name, prefixes);
    if (holder === null) continue;
    const dir = path.join(home, name);
    if (holder !== '' ? isAlive(holder) : opts.untagged === false || !untaggedIsStale(dir)) continue;
    detachMountsUnder(dir);
    fs.rmSync(dir, { recursive: true, force: true });
    removed.push(dir);
  }
  return removed;
}

/** Detach every mount at or below `dir`, deepest first. */
function detachMountsUnder(dir: string): void {
  const under = mountsUnder(dir).map((m) => m.mountPoint)
    .sort((a, b) => b.length - a.length);
  for (const m of under) unmount(m, { keepDir: true }); // not mounted (stacked entries gone already) is fine
}
