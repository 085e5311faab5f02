// `strata df [-v]`: `docker system df [-v]` read offline — images (size,
// shared, unique), containers (SizeRw), local volumes, build cache — and what
// docker cannot tell: every byte under the data root accounted for. Each
// driver directory is classified (an image layer's cache-id, a container's
// RW or init layer, a `-removing` leftover, an `-init` without a container,
// a directory BuildKit's database names, an orphan no metadata points at,
// driver bookkeeping such as l/), dangling overlay2 l/ links are listed, and
// the rest of the root (image/ metadata, containers/ with their logs,
// volumes/, buildkit/, other drivers' homes…) is measured too, so the total
// equals `du -sx --block-size=1 <root>`: disk blocks, each hardlinked inode
// once, other filesystems (mounted merged/ dirs) not entered.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DriverDirs, type DriverUnit } from './driver-dirs.ts';
import { knownLayouts } from '../drivers/all.ts';
import { humanSize, humanDuration, truncateId } from './docker-units.ts';
import { imageRows } from './images.ts';
import type { ContainerState, StoreModel } from '../layerstore/model.ts';
import { TEXT_CAP, listSorted, lstatQuiet, openRegular, readFileReadOnly } from '../sys/read-only-files.ts';
import { MODERN_TABLE, tabTable } from './tabwriter.ts';
import { firstLink, walkTree } from '../archive/tree-size.ts';
import { readMountinfo } from '../sys/mountinfo.ts';
import { readDirEntryStrings } from '../sys/read-dir.ts';

// ---- du ----------------------------------------------------------------------------

export interface Usage {
  /** bytes of disk blocks (st_blocks × 512), like du */
  disk: number;
  /** Σ st_size */
  apparent: number;
  /** entries counted (hardlinks once) */
  entries: number;
}

const zero = (): Usage => ({ disk: 0, apparent: 0, entries: 0 });

/**
 * du over several trees with one inode set: an inode with several links is
 * counted where it is met first. Mount points below the root (an overlay2
 * merged/ dir of a running container, a bind mount) are neither counted nor
 * entered, like du -x; a directory on another device that is not a mount
 * point (a btrfs subvolume: each has its own st_dev) is entered, where du -x
 * would skip it.
 */
export class DiskUsage {
  private readonly seen = new Set<string>();
  private mounts: Set<string> | null = null;
  /** directories that could not be listed (their contents are not counted), with the error code */
  readonly unreadable: { path: string; code: string }[] = [];
  constructor(private readonly dev: number) {}

  static forRoot(root: string): DiskUsage {
    return new DiskUsage(fs.lstatSync(root).dev);
  }

  /** A directory on another device: skip it when it is a mount point (or when mount points cannot be known). */
  private skipOtherDevice(p: Buffer): boolean {
    if (this.mounts === null) {
      this.mounts = new Set();
      try {
        for (const m of readMountinfo()) this.mounts.add(m.mountPointBytes.toString('latin1'));
      } catch {
        // no /proc: devices alone decide
      }
    }
    return this.mounts.size === 0 || this.mounts.has(p.toString('latin1'));
  }

  /** Usage of the entry `p` alone (a directory without its contents). */
  measureSelf(p: string): Usage {
    const u = zero();
    try {
      const st = fs.lstatSync(p);
      u.disk = st.blocks * 512;
      u.apparent = st.size;
      u.entries = 1;
    } catch {
      // absent
    }
    return u;
  }

  /** Usage of `p` and everything below it (a missing path counts 0). */
  measure(p: string): Usage {
    const u = zero();
    if (!lstatQuiet(p)) return u;
    walkTree(p, {
      entry: (q, st, parentDev) => this.count(q, st, u, parentDev),
      unreadable: (q, e) => { this.unreadable.push({ path: q.toString(), code: e.code ?? 'error' }); },
    }, this.dev);
    return u;
  }

  /** Count one entry; true when it is a directory whose contents are to be counted too. */
  private count(p: Buffer, st: fs.Stats, u: Usage, parentDev: number): boolean {
    if (st.dev !== parentDev && st.isDirectory() && this.skipOtherDevice(p)) return false;
    if (!st.isDirectory() && !firstLink(this.seen, st)) return false;
    u.disk += st.blocks * 512;
    u.apparent += st.size;
    u.entries++;
    return st.isDirectory();
  }
}

function add(a: Usage, b: Usage): void {
  a.disk += b.disk;
  a.apparent += b.apparent;
  a.entries += b.entries;
}

// ---- classification ------------------------------------------------------------------

export type DirClass =
  | 'image-layer' | 'container-layer' | 'container-init' | 'init-orphan' | 'removing' | 'buildkit' | 'orphan' | 'driver-metadata';

export interface DriverDirUsage {
  id: string;
  class: DirClass;
  /** what points at it: chain id, container id… */
  owner: string | null;
  paths: string[];
  usage: Usage;
}

export interface AreaUsage {
  /** e.g. "overlay2: image layers", "image/ (metadata)", "containers/ (configs, logs)" */
  area: string;
  paths: string[];
  usage: Usage;
}

export interface ImageUsage {
  repository: string;
  tag: string;
  id: string;
  created: string | null;
  size: number;
  sharedSize: number;
  uniqueSize: number;
  containers: number;
}

export interface ContainerUsage {
  id: string;
  image: string;
  command: string;
  localVolumes: number;
  sizeRw: number | null;
  sizeRootFs: number | null;
  created: string | null;
  /** docker's STATUS text ("Exited (0) 2 hours ago"), relative to the time df ran */
  status: string;
  /** the recorded State, times as ISO strings (the report is plain JSON) */
  state: ContainerStateRecord;
  names: string;
}

export interface VolumeUsage {
  name: string;
  links: number;
  size: number;
}

export interface DfReport {
  root: string;
  driver: string | null;
  /** one row per image, with its first reference, as docker system df -v */
  images: ImageUsage[];
  /** Σ sizes of all layers, each once (docker's LayersSize) */
  layersSize: number;
  containers: ContainerUsage[];
  volumes: VolumeUsage[];
  /** the driver directories BuildKit's databases name (its snapshots: the build cache) */
  buildCache: Usage;
  driverDirs: DriverDirUsage[];
  danglingLinks: string[];
  areas: AreaUsage[];
  /** Σ of the areas = du -sx of the root */
  total: Usage;
}

const CLASS_LABEL: Record<DirClass, string> = {
  'image-layer': 'image layers',
  'container-layer': 'container RW layers',
  'container-init': 'container init layers',
  'init-orphan': '-init layers without a container',
  removing: '-removing leftovers',
  buildkit: 'BuildKit snapshots',
  orphan: 'orphans (no metadata points at them)',
  'driver-metadata': 'driver bookkeeping (l/, files)',
};

/** BuildKit's bolt databases, to look driver ids up in (their keys and values are plain strings). */
function buildkitDbs(root: string): string[] {
  const dir = path.join(root, 'buildkit');
  return ['snapshots.db', 'metadata_v2.db', 'cache.db', 'containerdmeta.db'].map((f) => path.join(dir, f));
}

/**
 * Which of `needles` occur in any of `files`, streamed in 1 MiB chunks (a
 * bolt database runs to gigabytes: it is never read whole). Files that are
 * missing or not regular files are skipped.
 */
function foundIn(files: string[], needles: string[]): Set<string> {
  const found = new Set<string>();
  if (!needles.length) return found;
  const overlap = Math.max(...needles.map((n) => Buffer.byteLength(n))) - 1;
  const buf = Buffer.allocUnsafe((1 << 20) + overlap);
  for (const f of files) {
    let fd: number;
    try {
      fd = openRegular(f).fd;
    } catch {
      continue; // absent
    }
    try {
      let kept = 0;
      for (;;) {
        const n = fs.readSync(fd, buf, kept, buf.length - kept, null);
        if (n === 0) break;
        const window = buf.subarray(0, kept + n);
        for (const x of needles) if (!found.has(x) && window.includes(x)) found.add(x);
        kept = Math.min(overlap, window.length);
        window.copy(buf, 0, window.length - kept);
      }
    } finally {
      fs.closeSync(fd);
    }
  }
  return found;
}

export interface DfOptions {
  /** measure container RW layers (docker's SizeRw; default true) */
  containerSizes?: boolean;
  /** the time container STATUS is relative to (default: now) */
  now?: Date;
}

export type ContainerStateRecord = Omit<ContainerState, 'startedAt' | 'finishedAt'> & { startedAt: string | null; finishedAt: string | null };

function stateRecord(s: ContainerState): ContainerStateRecord {
  return { ...s, startedAt: s.startedAt?.toISOString() ?? null, finishedAt: s.finishedAt?.toISOString() ?? null };
}

/** moby's State.String(): the STATUS column of docker ps / system df. */
export function containerStatus(s: ContainerStateRecord, now: Date): string {
  const since = (d: string | null) => humanDuration(now.getTime() - (d === null ? now.getTime() : Date.parse(d)));
  if (s.running) {
    if (s.paused) return `Up ${since(s.startedAt)} (Paused)`;
    if (s.restarting) return `Restarting (${s.exitCode}) ${since(s.finishedAt)} ago`;
    return `Up ${since(s.startedAt)}`;
  }
  if (s.removalInProgress) return 'Removal In Progress';
  if (s.dead) return 'Dead';
  if (s.startedAt === null) return 'Created';
  if (s.finishedAt === null) return '';
  return `Exited (${s.exitCode}) ${since(s.finishedAt)} ago`;
}

export async function diskUsage(model: StoreModel, opts: DfOptions = {}): Promise<DfReport> {
  const root = model.root;
  const du = DiskUsage.forRoot(root);
  const areas: AreaUsage[] = [];
  const driverDirs: DriverDirUsage[] = [];
  let danglingLinks: string[] = [];
  const homes = new Set<string>();
  /** the home, when it is a symlink to something that is not this store's home (see foreignHome) */
  let foreignLink: string | null = null;

  // --- images and layers (docker system df): the images `docker image ls` lists
  // (tagged ones and dangling heads, no intermediates); a layer is shared when
  // more than one of those uses it (moby counts layer references over them)
  const listed = [...new Set(imageRows(model).map((r) => r.id))].map((id) => model.images.get(id)!);
  const layerRefs = new Map<string, number>();
  for (const img of listed) for (const l of new Set(img.layers)) layerRefs.set(l, (layerRefs.get(l) ?? 0) + 1);
  const layerSize = (k: string) => model.layers.get(k)?.size ?? 0;
  const ctrCount = new Map<string, number>();
  for (const c of model.containers) if (c.imageId) ctrCount.set(c.imageId, (ctrCount.get(c.imageId) ?? 0) + 1);
  const images: ImageUsage[] = [];
  for (const img of listed) {
    const size = model.kind === 'modern' ? img.size ?? 0 : img.virtualSize ?? 0;
    const shared = img.layers.filter((l) => (layerRefs.get(l) ?? 0) > 1).reduce((s, l) => s + layerSize(l), 0);
    // docker system df -v shows one row per image, with its first reference
    // (the daemon sorts references lexically by their normalized names)
    const ref = firstTag(img.tags) ?? '<none>:<none>';
    const i = ref.lastIndexOf(':');
    images.push({
      repository: ref.slice(0, i), tag: ref.slice(i + 1), id: img.id, created: img.created?.toISOString() ?? null,
      size, sharedSize: shared, uniqueSize: size - shared, containers: ctrCount.get(img.id) ?? 0,
    });
  }
  let layersSize = 0;
  for (const l of model.layers.values()) layersSize += l.size ?? 0;

  // --- driver directories
  const dirs = model.driver ? new DriverDirs(model.driver, root) : null;
  const containers: ContainerUsage[] = [];
  if (dirs) {
    homes.add(dirs.home);
    const inv = dirs.inventory();
    danglingLinks = inv.danglingLinks;
    const owners = new Map<string, { class: DirClass; owner: string }>();
    if (model.kind === 'modern') {
      for (const l of model.layers.values()) if (l.cacheId) owners.set(l.cacheId, { class: 'image-layer', owner: l.key });
    } else {
      for (const l of model.layers.values()) owners.set(l.key, { class: 'image-layer', owner: l.key });
    }
    for (const c of model.containers) {
      if (c.mountId) owners.set(c.mountId, { class: 'container-layer', owner: c.id });
      if (c.initId) owners.set(c.initId, { class: 'container-init', owner: c.id });
    }
    // RW layers recorded in layerdb/mounts without a container config still belong to that record
    if (model.kind === 'modern') {
      const mounts = path.join(model.metaDir, 'layerdb', 'mounts');
      for (const id of lstatQuiet(mounts)?.isDirectory() ? listSorted(mounts) : []) {
        if (!lstatQuiet(path.join(mounts, id))?.isDirectory()) continue; // not followed: the format has no links here
        for (const [f, cls] of [['mount-id', 'container-layer'], ['init-id', 'container-init']] as const) {
          try {
            const v = readFileReadOnly(path.join(mounts, id, f), TEXT_CAP).toString('utf8').trim();
            if (v && !owners.has(v)) owners.set(v, { class: cls, owner: id });
          } catch {
            // absent
          }
        }
      }
    }
    // only the ids no metadata owns are looked up in BuildKit's databases
    const bk = foundIn(buildkitDbs(root), inv.units.map((u) => u.id).filter((id) => !owners.has(id) && !id.endsWith('-removing')));
    const classify = (u: DriverUnit): { class: DirClass; owner: string | null } => {
      const o = owners.get(u.id);
      if (o) return o;
      if (u.id.endsWith('-removing')) return { class: 'removing', owner: null };
      if (bk.has(u.id)) return { class: 'buildkit', owner: null };
      if (u.id.endsWith('-init')) return { class: 'init-orphan', owner: null };
      return { class: 'orphan', owner: null };
    };
    // a symlinked home is followed (operators move it to another disk), but
    // only one that is this store's: else its entries are nobody's orphans
    const foreign = foreignHome(dirs.home, owners, inv.units.map((u) => u.id));
    if (foreign) {
      model.problems.warn(dirs.home, `${foreign}: its entries are not counted as the store's driver directories`);
      homes.delete(dirs.home); // measured below as the top-level symlink it is, not followed (du -sx)
      foreignLink = dirs.home;
      inv.units = [];
      danglingLinks = [];
    }
    for (const u of inv.units) {
      const c = classify(u);
      const usage = zero();
      for (const p of u.paths) add(usage, du.measure(p));
      driverDirs.push({ id: u.id, class: c.class, owner: c.owner, paths: u.paths, usage });
    }
    if (!foreign) {
      const meta = zero();
      for (const p of inv.other) add(meta, du.measure(p));
      driverDirs.push({ id: '', class: 'driver-metadata', owner: null, paths: inv.other, usage: meta });
      // the home directory's own blocks (and those of diff/, layers/… subdirectories of aufs-like layouts)
      const own = inv.ownDirs;
      const homeOwn = zero();
      for (const p of own) add(homeOwn, du.measureSelf(p));
      driverDirs[driverDirs.length - 1].usage.disk += homeOwn.disk;
      driverDirs[driverDirs.length - 1].usage.apparent += homeOwn.apparent;
      driverDirs[driverDirs.length - 1].usage.entries += homeOwn.entries;
    }
    for (const cls of Object.keys(CLASS_LABEL) as DirClass[]) {
      const sel = driverDirs.filter((d) => d.class === cls);
      if (!sel.length) continue;
      const usage = zero();
      for (const d of sel) add(usage, d.usage);
      areas.push({ area: `${path.relative(root, dirs.home) || '.'}/: ${CLASS_LABEL[cls]}`, paths: sel.flatMap((d) => d.paths), usage });
    }

    // containers (SizeRw as docker computes it)
    for (const c of model.containers) {
      let sizeRw: number | null = null;
      if (opts.containerSizes !== false && c.mountId && (!c.driver || c.driver === model.driver || model.kind !== 'modern')) {
        try {
          const parent = c.initId && dirs.reachable(c.initId) ? c.initId : (c.parentLayer ? model.layers.get(c.parentLayer)?.cacheId ?? null : null);
          sizeRw = await dirs.diffSize(c.mountId, parent);
        } catch {
          sizeRw = null;
        }
      }
      const img = c.imageId ? model.images.get(c.imageId) : undefined;
      const imgSize = img ? (model.kind === 'modern' ? img.size : img.virtualSize) : null;
      containers.push({
        id: c.id, image: c.imageName ?? (c.imageId ? truncateId(c.imageId) : ''), command: c.command,
        localVolumes: 0, sizeRw, sizeRootFs: sizeRw !== null && imgSize !== null ? sizeRw + imgSize : null,
        created: c.created?.toISOString() ?? null, status: containerStatus(stateRecord(c.state), opts.now ?? new Date()), state: stateRecord(c.state), names: c.name,
      });
    }
  }

  // --- volumes
  const volumes: VolumeUsage[] = [];
  const volDir = path.join(root, 'volumes');
  const links = volumeLinks(model);
  for (const name of listSorted(volDir)) {
    const p = path.join(volDir, name);
    if (!fs.lstatSync(p).isDirectory()) continue;
    volumes.push({ name, links: links.get(name) ?? 0, size: new DiskUsage(fs.lstatSync(root).dev).measure(path.join(p, '_data')).apparent });
  }
  for (const c of containers) c.localVolumes = model.containers.find((x) => x.id === c.id) ? countVolumes(model, c.id) : 0;

  // --- the rest of the root
  const buildCache = zero();
  const top = listSorted(root);
  const rootOwn = du.measureSelf(root);
  const layouts = knownLayouts();
  areas.push({ area: './ (the root directory itself)', paths: [root], usage: rootOwn });
  for (const name of top) {
    const p = path.join(root, name);
    if (homes.has(p)) continue;
    const usage = du.measure(p);
    let area: string;
    if (name === 'image') area = 'image/ (image and layer metadata)';
    else if (name === 'containers') area = 'containers/ (configs, logs)';
    else if (name === 'volumes') area = 'volumes/';
    else if (name === 'buildkit') area = 'buildkit/ (BuildKit databases)';
    else if (layouts.some((l) => !l.graphdriver && l.homeIn(root) === p)) area = `${name}/ (pre-1.10 image metadata)`;
    else if (p === foreignLink) area = `${name} (symlink to what is not this store's driver home, not followed)`;
    else if (layouts.some((l) => l.graphdriver && l.homeIn(root) === p)) area = `${name}/ (home of a storage driver not in use)`;
    else area = `${name}${fs.lstatSync(p).isDirectory() ? '/' : ''}`;
    areas.push({ area, paths: [p], usage });
  }
  for (const u of du.unreadable) model.problems.warn(u.path, `cannot be listed (${u.code}): its contents are not counted`);
  // BuildKit's snapshots live in the driver home (its databases, in buildkit/, are an area of their own)
  for (const d of driverDirs) if (d.class === 'buildkit') add(buildCache, d.usage);
  const total = zero();
  for (const a of areas) add(total, a.usage);
  return { root, driver: model.driver, images, layersSize, containers, volumes, buildCache, driverDirs, danglingLinks, areas, total };
}

/** A familiar reference normalized as the reference store keys it ("ubuntu:x" → "docker.io/library/ubuntu:x"). */
export function normalizedName(ref: string): string {
  const slash = ref.indexOf('/');
  const first = slash < 0 ? '' : ref.slice(0, slash);
  const hasDomain = first !== '' && (first.includes('.') || first.includes(':') || first === 'localhost');
  if (hasDomain) return ref;
  return slash < 0 ? `docker.io/library/${ref}` : `docker.io/${ref}`;
}

/** The reference docker lists first for an image: the lexically smallest normalized one. */
export function firstTag(tags: string[]): string | null {
  if (!tags.length) return null;
  return [...tags].sort((a, b) => {
    const x = normalizedName(a);
    const y = normalizedName(b);
    return x < y ? -1 : x > y ? 1 : 0;
  })[0];
}

/** statfs magic numbers of pseudo filesystems no driver home lives on */
const PSEUDO_FS: Record<number, string> = { 0x9fa0: 'proc', 0x62656572: 'sysfs', 0x64626720: 'debugfs', 0x27e0eb: 'cgroup', 0x63677270: 'cgroup2' };

/**
 * Why a driver home that is a symlink is not this store's home, or null when
 * it is not a symlink or plausibly is: its target must hold at least one of
 * the layer dirs the metadata names (verify names each missing one); when the
 * metadata names none, it must not be a pseudo filesystem or hold character
 * devices (/dev), which no driver layout has.
 */
function foreignHome(home: string, owners: Map<string, unknown>, ids: string[]): string | null {
  if (!lstatQuiet(home)?.isSymbolicLink()) return null;
  let target: string;
  try {
    target = fs.realpathSync(home);
  } catch {
    return null; // dangling: nothing is listed through it anyway
  }
  const what = `is a symlink to ${target}`;
  if (owners.size > 0) {
    return ids.some((id) => owners.has(id)) ? null : `${what}, which holds none of the ${owners.size} layer directories the metadata names`;
  }
  try {
    const fsName = PSEUDO_FS[Number(fs.statfsSync(target).type)];
    if (fsName) return `${what}, a ${fsName} filesystem`;
    const dev = readDirEntryStrings(target).find((e) => e.isCharacterDevice());
    if (dev) return `${what}, which holds a character device (${dev.name}), not a driver home`;
  } catch {
    return null; // unreadable: the inventory reports it
  }
  return null;
}

function containerMounts(model: StoreModel, id: string): { Name?: string; Type?: string }[] {
  const c = model.containers.find((x) => x.id === id);
  if (!c) return [];
  try {
    const cfg = JSON.parse(readFileReadOnly(c.configPath).toString('utf8')) as { MountPoints?: Record<string, { Name?: string; Type?: string }> };
    return Object.values(cfg.MountPoints ?? {});
  } catch {
    return [];
  }
}

function countVolumes(model: StoreModel, id: string): number {
  return containerMounts(model, id).filter((m) => m.Type === 'volume' || (m.Name && !m.Type)).length;
}

function volumeLinks(model: StoreModel): Map<string, number> {
  const m = new Map<string, number>();
  for (const c of model.containers) for (const mp of containerMounts(model, c.id)) if (mp.Name) m.set(mp.Name, (m.get(mp.Name) ?? 0) + 1);
  return m;
}

// ---- rendering ------------------------------------------------------------------------

const pct = (part: number, whole: number) => (whole > 0 ? `${Math.round((part * 100) / whole)}%` : '0%');

/**
 * `docker system df` (summary) or `-v` (tables), then the accounting of the
 * root. docker has two clocks here: the daemon words container STATUS when it
 * answers, the client words every CREATED when it prints; `statusNow` is the
 * first (the same instant unless a caller replays docker's output).
 */
export function renderDf(r: DfReport, verbose: boolean, now = new Date(), statusNow = now): string {
  const byId = new Map<string, ImageUsage>();
  for (const i of r.images) byId.set(i.id, i);
  const activeImages = [...byId.values()].filter((i) => i.containers > 0);
  const used = activeImages.reduce((s, i) => s + i.size - i.sharedSize, 0);
  const ctrSize = r.containers.reduce((s, c) => s + (c.sizeRw ?? 0), 0);
  const ctrReclaim = r.containers.filter((c) => !c.state.running).reduce((s, c) => s + (c.sizeRw ?? 0), 0);
  const volSize = r.volumes.reduce((s, v) => s + v.size, 0);
  const volReclaim = r.volumes.filter((v) => v.links === 0).reduce((s, v) => s + v.size, 0);
  let out = '';
  if (!verbose) {
    out += tabTable(['TYPE', 'TOTAL', 'ACTIVE', 'SIZE', 'RECLAIMABLE'], [
      ['Images', String(byId.size), String(activeImages.length), humanSize(r.layersSize), `${humanSize(r.layersSize - used)} (${pct(r.layersSize - used, r.layersSize)})`],
      ['Containers', String(r.containers.length), String(r.containers.filter((c) => c.state.running).length), humanSize(ctrSize), `${humanSize(ctrReclaim)} (${pct(ctrReclaim, ctrSize)})`],
      ['Local Volumes', String(r.volumes.length), String(r.volumes.filter((v) => v.links > 0).length), humanSize(volSize), `${humanSize(volReclaim)} (${pct(volReclaim, volSize)})`],
      ['Build Cache', '0', '0', humanSize(r.buildCache.disk), humanSize(r.buildCache.disk)],
    ], MODERN_TABLE);
  } else {
    // the API carries creation times in whole seconds
    const ago = (c: string | null) => (c ? `${humanDuration(now.getTime() - Math.floor(Date.parse(c) / 1000) * 1000)} ago` : 'N/A');
    out += 'Images space usage:\n\n';
    out += tabTable(['REPOSITORY', 'TAG', 'IMAGE ID', 'CREATED', 'SIZE', 'SHARED SIZE', 'UNIQUE SIZE', 'CONTAINERS'],
      r.images.map((i) => [i.repository, i.tag, truncateId(i.id), ago(i.created), humanSize(i.size), humanSize(i.sharedSize), humanSize(i.uniqueSize), String(i.containers)]), MODERN_TABLE);
    out += '\nContainers space usage:\n\n';
    out += tabTable(['CONTAINER ID', 'IMAGE', 'COMMAND', 'LOCAL VOLUMES', 'SIZE', 'CREATED', 'STATUS', 'NAMES'],
      r.containers.map((c) => [truncateId(c.id), c.image, JSON.stringify([...c.command].length > 20 ? [...c.command].slice(0, 19).join('') + '…' : c.command), String(c.localVolumes), c.sizeRw === null ? 'N/A' : humanSize(c.sizeRw), ago(c.created), containerStatus(c.state, statusNow), c.names]), MODERN_TABLE);
    out += '\nLocal Volumes space usage:\n\n';
    out += tabTable(['VOLUME NAME', 'LINKS', 'SIZE'], r.volumes.map((v) => [v.name, String(v.links), humanSize(v.size)]), MODERN_TABLE);
    out += `\nBuild cache usage: ${humanSize(r.buildCache.disk)}\n`;
  }
  out += `\nOn disk (${r.root}, like du -sx): ${humanSize(r.total.disk)} in ${r.total.entries} entries\n\n`;
  out += tabTable(['WHAT', 'DISK', 'APPARENT', 'ENTRIES'],
    r.areas.map((a) => [a.area, humanSize(a.usage.disk), humanSize(a.usage.apparent), String(a.usage.entries)]), MODERN_TABLE);
  const odd = r.driverDirs.filter((d) => d.class === 'orphan' || d.class === 'removing' || d.class === 'init-orphan' || d.class === 'buildkit');
  if (odd.length || r.danglingLinks.length) {
    out += '\nNot referenced by the image store:\n\n';
    out += tabTable(['KIND', 'DISK', 'PATH'], [
      ...odd.map((d) => [d.class, humanSize(d.usage.disk), d.paths.join(' ')]),
      ...r.danglingLinks.map((l) => ['dangling-link', '0B', `${l} -> ${safeReadlink(l)}`]),
    ], MODERN_TABLE);
  }
  if (verbose) {
    out += '\nDriver directories:\n\n';
    out += tabTable(['ID', 'KIND', 'OWNER', 'DISK', 'APPARENT'],
      r.driverDirs.filter((d) => d.id !== '').map((d) => [d.id, d.class, d.owner ? truncateId(d.owner) : '-', humanSize(d.usage.disk), humanSize(d.usage.apparent)]), MODERN_TABLE);
  }
  return out;
}

function safeReadlink(p: string): string {
  try {
    return fs.readlinkSync(p);
  } catch {
    return '?';
  }
}
