// `strata images`: the image list as the docker CLI of the store's era
// printed it, the layer-sharing tree `docker images --tree` drew (docker
// 0.7–1.6), and one JSON object per row.
//
//   docker 0.6      REPOSITORY TAG IMAGE ID CREATED SIZE, "131.3 MB (virtual 131.3 MB)"
//   docker 0.7–1.9  REPOSITORY TAG IMAGE ID CREATED VIRTUAL SIZE, "131.3 MB"
//   docker ≥ 1.10   REPOSITORY TAG IMAGE ID CREATED SIZE, "72.8MB" (docker 20.10's columns)
//
// Row order: images newest first (the daemon sorted by creation time; equal
// times are ordered by id here, where docker's unstable sort left them
// arbitrary), within an image its references sorted by repository and tag
// (docker ≤ 1.9 printed them in Go map order, i.e. at random).
import {
  humanDuration, humanDurationLegacy, humanSize, humanSizeLegacy, humanSizeWithPrecision, truncateId,
} from './docker-units.ts';
import { childrenOf, type ImageRecord, type StoreModel } from '../layerstore/model.ts';
import { LEGACY_TABLE, MODERN_TABLE, tabTable } from './tabwriter.ts';

export interface ImagesOptions {
  /** show intermediate images too (docker images -a) */
  all?: boolean;
  /** full ids */
  noTrunc?: boolean;
  /** the time CREATED is relative to (default: now) */
  now?: Date;
}

/** One line of `docker images`, and the JSON object per image row. */
export interface ImageRow {
  repository: string;
  tag: string;
  id: string;
  parent: string | null;
  created: string | null;
  /** bytes (see ImageRecord.size for its meaning per era) */
  size: number | null;
  virtualSize: number | null;
  /** layer keys, base first */
  layers: string[];
}

function byCreatedDesc(a: ImageRecord, b: ImageRecord): number {
  const ta = a.created?.getTime() ?? -Infinity;
  const tb = b.created?.getTime() ?? -Infinity;
  if (ta !== tb) return tb - ta;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

function splitRepoTag(ref: string): [string, string] {
  const i = ref.lastIndexOf(':');
  return [ref.slice(0, i), ref.slice(i + 1)];
}

/** The rows `docker images [-a]` shows, in its order. */
export function imageRows(model: StoreModel, opts: ImagesOptions = {}): ImageRow[] {
  const children = childrenOf(model);
  const rows: ImageRow[] = [];
  const images = [...model.images.values()].sort(byCreatedDesc);
  for (const img of images) {
    const base = {
      id: img.id, parent: img.parent, created: img.created?.toISOString() ?? null,
      size: img.size, virtualSize: img.virtualSize, layers: img.layers,
    };
    if (img.tags.length) {
      for (const ref of img.tags) {
        const [repository, tag] = splitRepoTag(ref);
        rows.push({ repository, tag, ...base });
      }
      continue;
    }
    if (img.digests.length) {
      // docker ≥ 1.10 shows digest-only references as "<repo> <none>", once per repository
      for (const repo of [...new Set(img.digests.map((d) => d.slice(0, d.indexOf('@'))))]) rows.push({ repository: repo, tag: '<none>', ...base });
      continue;
    }
    // untagged: shown when it is a head (no children), or with -a
    if (opts.all || !children.has(img.id)) rows.push({ repository: '<none>', tag: '<none>', ...base });
  }
  return rows;
}

function ago(model: StoreModel, created: string | null, now: Date): string {
  if (created === null) return 'N/A';
  // the API carried whole seconds
  const ms = now.getTime() - Math.floor(new Date(created).getTime() / 1000) * 1000;
  return `${model.era === 'docker-1.10+' ? humanDuration(ms) : humanDurationLegacy(ms)} ago`;
}

function displayId(model: StoreModel, id: string, noTrunc: boolean): string {
  if (noTrunc) return id;
  return truncateId(id);
}

/** The `docker images` table of that era. */
export function renderImages(model: StoreModel, rows: ImageRow[], opts: ImagesOptions = {}): string {
  const now = opts.now ?? new Date();
  const noTrunc = opts.noTrunc ?? false;
  const na = (n: number | null, f: (x: number) => string) => (n === null ? 'N/A' : f(n));
  switch (model.era) {
    case 'docker-0.6':
      return tabTable(['REPOSITORY', 'TAG', 'IMAGE ID', 'CREATED', 'SIZE'], rows.map((r) => [
        r.repository, r.tag, displayId(model, r.id, noTrunc), ago(model, r.created, now),
        r.virtualSize !== null && r.virtualSize > 0
          ? `${na(r.size, humanSizeLegacy)} (virtual ${humanSizeLegacy(r.virtualSize)})`
          : na(r.size, humanSizeLegacy),
      ]), LEGACY_TABLE);
    case 'docker-0.7-1.9':
      return tabTable(['REPOSITORY', 'TAG', 'IMAGE ID', 'CREATED', 'VIRTUAL SIZE'], rows.map((r) => [
        r.repository, r.tag, displayId(model, r.id, noTrunc), ago(model, r.created, now), na(r.virtualSize, humanSizeLegacy),
      ]), LEGACY_TABLE);
    default:
      return tabTable(['REPOSITORY', 'TAG', 'IMAGE ID', 'CREATED', 'SIZE'], rows.map((r) => [
        r.repository, r.tag, displayId(model, r.id, noTrunc), ago(model, r.created, now),
        na(r.size, (n) => humanSizeWithPrecision(n, 3)),
      ]), MODERN_TABLE);
  }
}

// ---- the tree ----------------------------------------------------------------

export interface TreeNode {
  /** image id (legacy, registry) or chain id (modern) */
  id: string;
  virtualSize: number | null;
  /** images whose top layer this is (modern), or the image itself (legacy) */
  images: string[];
  tags: string[];
  children: TreeNode[];
}

/**
 * The layer-sharing tree. Legacy and registry stores: one node per image (an
 * image is a layer there), parents above children, children newest first, as
 * `docker images --tree` drew it. Modern stores: one node per layer (chain
 * id), since images only share layers there; a node lists the images whose
 * top layer it is.
 */
export function imageTree(model: StoreModel): TreeNode[] {
  if (model.kind === 'legacy' || model.kind === 'registry-v1') {
    const children = childrenOf(model);
    const node = (img: ImageRecord): TreeNode => ({
      id: img.id, virtualSize: img.virtualSize, images: [img.id], tags: img.tags,
      children: (children.get(img.id) ?? []).map((c) => model.images.get(c)!).sort(byCreatedDesc).map(node),
    });
    return [...model.images.values()].filter((i) => !i.parent || !model.images.has(i.parent)).sort(byCreatedDesc).map(node);
  }
  interface Acc { node: TreeNode; created: number; parent: string | null }
  const nodes = new Map<string, Acc>();
  for (const img of [...model.images.values()].sort(byCreatedDesc)) {
    let vsize = 0;
    let known = true;
    img.layers.forEach((chain, i) => {
      const s = model.layers.get(chain)?.size ?? null;
      if (s === null) known = false;
      vsize += s ?? 0;
      let acc = nodes.get(chain);
      if (!acc) {
        acc = { node: { id: chain, virtualSize: known ? vsize : null, images: [], tags: [], children: [] }, created: img.created?.getTime() ?? -Infinity, parent: i ? img.layers[i - 1] : null };
        nodes.set(chain, acc);
      }
      if (i === img.layers.length - 1) {
        acc.node.images.push(img.id);
        acc.node.tags.push(...img.tags);
      }
    });
  }
  const roots: Acc[] = [];
  for (const acc of nodes.values()) {
    const p = acc.parent ? nodes.get(acc.parent) : undefined;
    if (p) p.node.children.push(acc.node);
    else roots.push(acc);
  }
  for (const acc of nodes.values()) acc.node.tags.sort();
  return roots.map((r) => r.node);
}

/** The tree as `docker images --tree` printed it (│ ├─ └─ prefixes). */
export function renderImageTree(model: StoreModel, roots: TreeNode[], opts: ImagesOptions = {}): string {
  const lines: string[] = [];
  const modern = model.kind === 'modern' || model.kind === 'containerd';
  const size = (n: number | null) => (n === null ? 'N/A' : modern ? humanSize(n) : humanSizeLegacy(n));
  const print = (n: TreeNode, prefix: string) => {
    let s = `${prefix}${displayId(model, n.id, opts.noTrunc ?? false)} Virtual Size: ${size(n.virtualSize)}`;
    if (modern && n.images.length) s += ` Image: ${n.images.map((i) => displayId(model, i, opts.noTrunc ?? false)).join(', ')}`;
    if (n.tags.length) s += ` Tags: ${n.tags.join(', ')}`;
    lines.push(s);
  };
  const walk = (nodes: TreeNode[], prefix: string) => {
    nodes.forEach((n, i) => {
      const last = i === nodes.length - 1;
      print(n, prefix + (last ? '└─' : '├─'));
      walk(n.children, prefix + (last ? '  ' : '│ '));
    });
  };
  walk(roots, '');
  return lines.map((l) => l + '\n').join('');
}
