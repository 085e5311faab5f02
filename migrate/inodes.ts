// How many inodes the target needs, layer by layer: pre-flight compares the
// sum with the free inodes of the root's filesystem (statfs f_ffree), so a
// run that would run out of them is refused before it writes anything.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { walkTree } from '../archive/tree-size.ts';
import type { DriverLayout } from '../drivers/layout.ts';
import { tarSplitMembers } from '../layerstore/tar-split.ts';
import { WHITEOUT_PREFIX } from '../archive/types.ts';
import { layerName, sourceChanges, tarSplitErrorOf, type SourceHome } from './convert.ts';
import { lowersIn, type PlannedLayer } from './plan.ts';

/**
 * A driver's own inodes per layer beside the layer's files, the most any
 * driver makes (overlay2: <id>/, diff/, work/, work/work, merged/, link,
 * lower, the l/ symlink): an estimate that errs on the safe side.
 */
export const DRIVER_INODES_PER_LAYER = 8;

/**
 * New inodes a layer's tar makes: one an entry, but hard links (a name of an
 * inode another entry makes). A linked layer (plan method 'link') takes the
 * source's regular files as they are: only its directories, symlinks,
 * devices and whiteouts are new.
 */
async function tarSplitInodes(l: PlannedLayer & { tarSplit: string }): Promise<number> {
  let n = 0;
  try {
    for await (const { header: h } of tarSplitMembers(l.tarSplit)) {
      if (h.type === 'link') continue;
      if (l.method === 'link' && h.type === 'file' && !path.posix.basename(h.name).startsWith(WHITEOUT_PREFIX)) continue;
      n++;
    }
  } catch (e) {
    throw tarSplitErrorOf(layerName(l), e);
  }
  return n;
}

/** New inodes a layer without tar-split needs: its changes against its parent, and the directories above them (exported with them). */
async function changesInodes(src: SourceHome, l: PlannedLayer, lowers: string[]): Promise<number> {
  const paths = new Set<string>();
  for (const c of await sourceChanges(src, l, lowers)) {
    for (let p = c.path; p !== '/' && p !== '.' && !paths.has(p); p = path.posix.dirname(p)) paths.add(p);
  }
  return paths.size;
}

/**
 * Inodes each layer needs in `target`, by driver id: its own entries plus the
 * driver's overhead; a target that holds full trees copies the parent's too.
 * `layers` come parent first (the plan's order).
 */
export async function layerInodes(layers: PlannedLayer[], src: SourceHome, target: DriverLayout): Promise<Map<string, number>> {
  const lowersOf = lowersIn(layers);
  const own = new Map<string, number>();
  const out = new Map<string, number>();
  for (const l of layers) {
    const mine = l.tarSplit ? await tarSplitInodes({ ...l, tarSplit: l.tarSplit }) : await changesInodes(src, l, lowersOf(l));
    // a full-tree layer holds its parent's entries again (deletions ignored: an over-estimate)
    const tree = mine + (target.holds === 'trees' && l.parent ? own.get(l.parent) ?? 0 : 0);
    own.set(l.id, tree);
    out.set(l.id, tree + DRIVER_INODES_PER_LAYER);
  }
  return out;
}

/** The staging area's own files: journal, moved log, directories (the configs kept are hard links). */
const JOURNAL_INODES = 16;
/** A legacy root has no image/<driver> to count: layerdb's files per layer (dir, diff, cache-id, size, parent, tar-split) and the image config, about. */
const LEGACY_METADATA_PER_LAYER = 8;

/** Inodes the metadata takes beside the layers: image/<to> is a copy of image/<from>, plus the staging area's files. */
export function metadataInodes(root: string, from: string, layers: number): number {
  const meta = path.join(root, 'image', from);
  if (!fs.existsSync(meta)) return layers * LEGACY_METADATA_PER_LAYER + JOURNAL_INODES;
  let n = 0;
  walkTree(meta, { entry: (_p, st) => (n++, st.isDirectory()) });
  return n + JOURNAL_INODES;
}
