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
import { randomBytes } from 'node:crypto';

export const LINK_DIR = 'l';
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
