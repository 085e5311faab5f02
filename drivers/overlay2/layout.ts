// overlay2's on-disk layout, exactly as Docker writes it, and the pure
// planning of mount options (testable without root):
//
//   <home>/l/<LINKID>       -> ../<id>/diff       (26-char base32 link ids)
//   <home>/<id>/diff/        the layer's own changes (the overlay upperdir)
//   <home>/<id>/link         its LINKID
//   <home>/<id>/lower        "l/<LINKID>:l/<LINKID>…", nearest parent first
//   <home>/<id>/work/        overlay workdir (layers with a parent)
//   <home>/<id>/merged/      mount point while mounted
//   <home>/<id>/committed    written into a parent when a child is created
//
// fuse-overlayfs (containers/storage, and dockerd's fuse-overlayfs driver)
// keeps the same layout; its diff dirs differ only in their whiteout form.
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import type { DiffFormat } from '../../archive/diff-format.ts';
import { existingDir, homeNamed, idDirInventory, idDirPaths, type DriverFolder, type DriverLayout, type OfflineDiff } from '../layout.ts';
import { LINK_DIR, overlay2LayoutProblems, overlay2Lowers } from './links.ts';

export { LINK_DIR };
export const ID_LENGTH = 26;
/** moby maxDepth: 128 lowers keep the absolute option string inside a page with 26-char ids */
export const MAX_DEPTH = 128;
export const PAGE_SIZE = 4096;

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** moby overlayutils.GenerateID: 26 chars of base32 over 16 random bytes. */
export function generateLinkId(): string {
  const bytes = randomBytes(16);
  let bits = 0;
  let value = 0;
  let out = '';
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += B32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += B32[(value << (5 - bits)) & 31];
  return out.slice(0, ID_LENGTH);
}

export class MaxDepthError extends Error {
  constructor() {
    super('max depth exceeded');
    this.name = 'MaxDepthError';
  }
}

/** The `lower` file of a child of `parentLink` whose own `lower` is `parentLower` (moby getLower). */
export function childLower(parentLink: string, parentLower: string | null): string {
  const lowers = [`${LINK_DIR}/${parentLink}`];
  if (parentLower) lowers.push(...parentLower.split(':'));
  if (lowers.length > MAX_DEPTH) throw new MaxDepthError();
  return lowers.join(':');
}

export interface MountPlan {
  /** the option string for mount(2) */
  data: string;
  /** directory to chdir into first when the paths are relative (null: absolute paths) */
  cwd: string | null;
}

/**
 * Mount options for a layer, like moby's overlay2 Get: read-only layers
 * (committed) mount their diff as the top lowerdir; read-write ones get
 * upperdir/workdir. When the option string would not fit in a page, the same
 * options are rebuilt with paths relative to the driver home (moby's
 * mountfrom trick), to be mounted from there.
 */
export function planMount(home: string, id: string, lower: string, readOnly: boolean, prefix: string): MountPlan {
  const lowers = lower.split(':');
  const build = (base: string) => {
    const j = (p: string) => (base ? `${base}/${p}` : p);
    const low = lowers.map(j).join(':');
    return readOnly
      ? `${prefix}lowerdir=${j(`${id}/diff`)}:${low}`
      : `${prefix}lowerdir=${low},upperdir=${j(`${id}/diff`)},workdir=${j(`${id}/work`)}`;
  };
  const abs = build(home);
  if (abs.length < PAGE_SIZE) return { data: abs, cwd: null };
  const rel = build('');
  if (rel.length >= PAGE_SIZE) throw new Error(`cannot mount layer, mount label too large ${rel.length}`);
  return { data: rel, cwd: home };
}

/** The overlay2 layout under another driver's name and whiteout form (fuse-overlayfs). */
export function overlay2StyleLayout(name: string, diffFormat: DiffFormat, offlineDiff: OfflineDiff): DriverLayout {
  const layout: DriverLayout = {
    name, holds: 'diffs', diffFormat, offlineDiff, graphdriver: true, recordsLowers: true,
    links: { problems: overlay2LayoutProblems, lowersFile: (home, id) => path.join(home, id, 'lower') },
    homeIn: homeNamed(name),
    filesDir: (home, id) => existingDir(home, path.join(home, id, 'diff')),
    pathsOf: (home, id) => (id === LINK_DIR ? [] : idDirPaths(home, id)),
    recordedLowers(home, id) {
      try {
        return overlay2Lowers(home, id);
      } catch {
        return null;
      }
    },
    metadata(home, id) {
      const md: Record<string, string> = {
        MergedDir: path.join(home, id, 'merged'), UpperDir: path.join(home, id, 'diff'), WorkDir: path.join(home, id, 'work'),
      };
      const lowers = layout.recordedLowers(home, id);
      if (lowers && lowers.length) md.LowerDir = lowers.map((l) => path.join(home, l, 'diff')).join(':');
      return md;
    },
    inventory: (home) => idDirInventory(home, LINK_DIR),
  };
  return layout;
}

/**
 * overlay2's layout. Offline diffs are the driver's own native changes and
 * diffSize on a read-only open, which compares a layer only with its direct
 * parent (anything else would mount).
 */
export const layout: DriverLayout = { ...overlay2StyleLayout('overlay2', 'overlay', 'driver'), linkableDiffs: 'overlay' };

export const folder: DriverFolder = { layout, loadInit: async () => (await import('./overlay2.ts')).init };
