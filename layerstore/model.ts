// One typed model of an image store, whatever its layout: the modern
// content-addressable store (Docker ≥ 1.10), the legacy graph (Docker ≤ 1.9,
// back to 0.x) and a docker-registry v1 storage tree. Readers fill it; the
// views (images, history, inspect, verify, df, diff) only use it.
import type { Problems } from './problems.ts';

export type StoreKind = 'modern' | 'legacy' | 'registry-v1' | 'containerd';

/**
 * Whose CLI formats apply: docker 0.6 (SIZE "x (virtual y)"), docker 0.7–1.9
 * (VIRTUAL SIZE, `%.4g %s`), docker ≥ 1.10 (SIZE, go-units), a registry tree
 * (printed like the docker of its time, 0.7–1.9).
 */
export type Era = 'docker-0.6' | 'docker-0.7-1.9' | 'docker-1.10+';

export interface TagRecord {
  /** familiar repository name ("ubuntu", "thoward/scooby_snacks") */
  repository: string;
  /** tag, or null for a digest reference */
  tag: string | null;
  /** "sha256:…" for digest references */
  digest: string | null;
  /** image id as the model keys it */
  imageId: string;
  /** the file the reference was read from */
  source: string;
}

export interface HistoryRecord {
  created: Date | null;
  createdBy: string;
  comment: string;
  emptyLayer: boolean;
  author: string;
}

export interface ImageRecord {
  /** modern: "sha256:<hex>"; legacy and registry: the 64-hex (or older 16-hex) v1 id */
  id: string;
  /** image id of the parent (local build parent, legacy parent), or null */
  parent: string | null;
  created: Date | null;
  /**
   * Bytes. Legacy/registry: this image's own layer (docker 0.x–1.9 Size);
   * modern: all its layers (docker ≥ 1.10 Size).
   */
  size: number | null;
  /** Bytes of the whole image (all layers). */
  virtualSize: number | null;
  /** layer keys, base first */
  layers: string[];
  /** the image config / v1 JSON as parsed, null when unreadable */
  config: Record<string, unknown> | null;
  /** where the config / v1 JSON lives */
  configPath: string;
  history: HistoryRecord[];
  /** "repo:tag" references, sorted */
  tags: string[];
  /** "repo@sha256:…" references, sorted */
  digests: string[];
}

export interface LayerRecord {
  /** modern: chain id "sha256:…"; legacy/registry: the v1 image id */
  readonly key: string;
  /** "sha256:…" when recorded (modern diff file, legacy .migration-diffid) */
  readonly diffId: string | null;
  readonly chainId: string | null;
  /** key of the parent layer */
  readonly parent: string | null;
  /** recorded size in bytes (layerdb size, legacy layersize, registry json Size) */
  readonly size: number | null;
  /** the driver's id of the layer's data, in every layout (modern: cache-id; legacy: the v1 id; registry: null, no driver) */
  readonly cacheId: string | null;
  /** tar-split file (tar-split.json.gz / tar-data.json.gz) if present */
  readonly tarSplit: string | null;
  /** registry v1: the layer blob (gzip'd tar) */
  readonly blob: string | null;
  /** directory holding the layer's metadata */
  readonly dir: string;
}

export interface ContainerRecord {
  id: string;
  name: string;
  /** the image id as the model keys it */
  imageId: string | null;
  /** the storage driver recorded for the container */
  driver: string | null;
  created: Date | null;
  running: boolean;
  /** the state docker recorded (config.v2.json / config.json State) */
  state: ContainerState;
  /** Path and Args as docker lists them (arguments with spaces in single quotes) */
  command: string;
  /** the image name the container was created with (Config.Image), as `docker ps` shows it */
  imageName: string | null;
  /** driver id of the RW layer and of the init layer */
  mountId: string | null;
  initId: string | null;
  /** layer key the RW layer sits on (top image layer) */
  parentLayer: string | null;
  configPath: string;
}

export interface ContainerState {
  running: boolean;
  paused: boolean;
  restarting: boolean;
  dead: boolean;
  removalInProgress: boolean;
  exitCode: number;
  startedAt: Date | null;
  finishedAt: Date | null;
}

/** Container State from its config JSON (missing fields: docker's zero values). */
export function containerStateOf(v: unknown): ContainerState {
  const o = typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : {};
  const time = (t: unknown) => {
    const d = parseCreated(t);
    return d === null || d.getUTCFullYear() <= 1 ? null : d; // Go's zero time: 0001-01-01
  };
  return {
    running: o.Running === true, paused: o.Paused === true, restarting: o.Restarting === true, dead: o.Dead === true,
    removalInProgress: o.RemovalInProgress === true, exitCode: typeof o.ExitCode === 'number' ? o.ExitCode : 0,
    startedAt: time(o.StartedAt), finishedAt: time(o.FinishedAt),
  };
}

/** moby's container listing Command: Path, then Args, those containing a space in single quotes. */
export function commandOf(path: unknown, args: unknown): string {
  const p = typeof path === 'string' ? path : '';
  const a = Array.isArray(args) ? args.map((x) => (typeof x === 'string' ? x : '')) : [];
  if (!a.length) return p;
  return `${p} ${a.map((x) => (x.includes(' ') ? `'${x}'` : x)).join(' ')}`;
}

export interface StoreModel {
  kind: StoreKind;
  era: Era;
  /** the data root (or the registry storage root) */
  root: string;
  /** the storage driver whose metadata was read (null for a registry tree) */
  driver: string | null;
  /** the metadata directory (image/<driver>, graph, images) */
  metaDir: string;
  images: Map<string, ImageRecord>;
  layers: Map<string, LayerRecord>;
  containers: ContainerRecord[];
  tags: TagRecord[];
  problems: Problems;
}

/** Images whose parent is `id`. */
export function childrenOf(model: StoreModel): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const img of model.images.values()) {
    if (!img.parent) continue;
    const list = m.get(img.parent);
    if (list) list.push(img.id);
    else m.set(img.parent, [img.id]);
  }
  return m;
}

/** Parse a docker timestamp (RFC 3339 with up to ns); null when absent or bad. */
export function parseCreated(v: unknown): Date | null {
  if (typeof v !== 'string' || v === '') return null;
  // JS Dates keep ms: cut the fraction to 3 digits (the time zone may follow)
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$/.exec(v.trim());
  if (!m) return null;
  const frac = m[2] ? m[2].slice(0, 4) : '';
  const d = new Date(`${m[1]}${frac}${m[3] ?? 'Z'}`);
  return Number.isNaN(d.getTime()) ? null : d;
}

/**
 * Fill in each image's `layers` (base first), `virtualSize` (the sum of the
 * chain's own sizes; null when a size is unknown and nothing was summed) and
 * `history` (the chain's own entries, base first), following `parentOf`. A
 * missing parent or a loop ends the chain where it breaks; `broken` is told
 * which image, where, why, and the chain's lowest image so far.
 */
export function assembleImageChains(
  model: StoreModel,
  parentOf: (id: string) => string | null,
  broken: (img: ImageRecord, at: string, why: 'missing' | 'loop', child: string) => void,
): void {
  // each image's own history entry, taken before the chains replace them
  const own = new Map([...model.images.values()].map((i) => [i.id, i.history[0]]));
  for (const img of model.images.values()) {
    const chain: string[] = [];
    const seen = new Set<string>();
    let cur: string | null = img.id;
    let vsize = 0;
    let complete = true;
    while (cur !== null) {
      const layer: ImageRecord | undefined = seen.has(cur) ? undefined : model.images.get(cur);
      if (!layer) {
        broken(img, cur, seen.has(cur) ? 'loop' : 'missing', chain.length ? chain[0] : img.id);
        complete = false;
        break;
      }
      seen.add(cur);
      chain.unshift(cur);
      vsize += layer.size ?? 0;
      if (layer.size === null) complete = false;
      cur = parentOf(cur);
    }
    img.layers = chain;
    img.virtualSize = complete || vsize > 0 ? vsize : null;
    img.history = chain.map((id) => own.get(id)!);
  }
}

/** Record reference `t` and list it on its image (tag first, as docker lists name:tag@digest); false when that image is not in the model. */
export function addTag(model: StoreModel, t: TagRecord): boolean {
  model.tags.push(t);
  const img = model.images.get(t.imageId);
  if (!img) return false;
  if (t.tag !== null) img.tags.push(`${t.repository}:${t.tag}`);
  else if (t.digest !== null) img.digests.push(`${t.repository}@${t.digest}`);
  return true;
}

/** Every image's references in sorted order, once all are added. */
export function sortImageRefs(model: StoreModel): void {
  for (const img of model.images.values()) {
    img.tags.sort();
    img.digests.sort();
  }
}
