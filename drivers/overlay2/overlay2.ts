// overlay2: Docker's overlay2 graphdriver on the kernel's overlayfs, with the
// same on-disk layout (layout.ts), so stores written by dockerd are readable
// here and the other way round.
//
// Native paths (when the probes allow them and `parent` is the direct
// parent): diff = export of <id>/diff converting overlay whiteouts; applyDiff
// = untar into <id>/diff writing overlay whiteouts; diffSize = size of
// <id>/diff; changes = computed from <id>/diff and the lower diff dirs without
// mounting (moby always mounts and walks both trees here).
// Everything else goes through the shared naive path.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { applyLayer } from '../../archive/apply.ts';
import { changesFromDiffDir } from '../../archive/changes.ts';
import { directorySize } from '../../archive/tree-size.ts';
import { exportDir } from '../../archive/export.ts';
import { removeTree } from '../../archive/remove-tree.ts';
import type { Change } from '../../archive/types.ts';
import {
  InvalidParameterError, LayerNotFoundError, QuotaNotSupportedError, errDTypeNotSupported, mustBeExistingHome,
  parentOrNull, parseStorageOptKeyValue, ramInBytes, validateId,
  type CreateOpts, type Driver, type InitOpts, type LayerInfo, type TarInput,
} from '../driver.ts';
import { Feature } from '../feature.ts';
import { removeStaleScratch } from '../scratch.ts';
import { naiveApplyDiff, naiveChanges, naiveDiff, naiveDiffSize } from '../naive.ts';
import { LayerMounts, overlaySpec } from '../mounter.ts';
import { ProjectQuota } from '../quota.ts';
import { backingFsName, supportsDType } from '../backing-fs.ts';
import { LINK_DIR, childLower, generateLinkId, planMount } from './layout.ts';
import { overlay2Lowers } from './links.ts';
import { readOnlyDriver } from '../read-only.ts';
import { PROBE_PREFIXES, indexOffPrefix, probeNativeDiff, probeOverlay, probeUserXattr } from './probes.ts';

export const NAME = 'overlay2';

/** What the native-diff probe found (probes.ts probeNativeDiff). */
export interface NativeDiff {
  native: boolean;
  reason: string;
}

/**
 * moby overlay2 Init: options `overlay2.size`, `overlay2.override_kernel_check`
 * (ignored), and strata's `overlay2.force_naive_diff`. How the probes run
 * depends on the open mode (driver.ts OpenMode).
 */
export async function init(home: string, options: string[], opts: InitOpts = {}): Promise<Driver> {
  let defaultSize = 0;
  let forceNaive = false;
  for (const opt of options) {
    const [key, val] = parseStorageOptKeyValue(opt);
    if (key === 'overlay2.size') defaultSize = ramInBytes(val);
    else if (key === 'overlay2.override_kernel_check') continue; // deprecated no-op, as in moby v23
    else if (key === 'overlay2.force_naive_diff') forceNaive = val === 'true' || val === '1';
    else throw new InvalidParameterError(`overlay2: unknown option ${key}`);
  }
  if (opts.mode === 'read-only') return openReadOnly(home);
  const manage = opts.mode === 'manage';
  if (manage) mustBeExistingHome(NAME, home);
  else {
    fs.mkdirSync(home, { recursive: true, mode: 0o710 });
    fs.mkdirSync(path.join(home, LINK_DIR), { recursive: true, mode: 0o700 });
  }
  removeStaleScratch(home, PROBE_PREFIXES);
  const backing = backingFsName(home);
  const feature = <T>(what: string, probe: () => T) => new Feature(NAME, what, home, probe);
  const mountable = feature('overlay mount', () => {
    const overlay = probeOverlay(home);
    if (overlay !== true) throw new Error(overlay);
    if (!supportsDType(home)) throw errDTypeNotSupported(NAME, backing);
    return true as const;
  });
  const quota = ProjectQuota.detect(home, (d) => fs.readdirSync(d).filter((n) => n !== LINK_DIR).map((n) => path.join(d, n)));
  if (defaultSize > 0 && typeof quota === 'string') {
    throw new InvalidParameterError(`Storage Option overlay2.size only supported for backingFS XFS. Found ${backing}`);
  }
  const userxattr = feature('userxattr', () => probeUserXattr(home).userxattr);
  const native = forceNaive
    ? Feature.known(NAME, 'native diff', home, { native: false, reason: 'forced by option' })
    : feature('native diff', () => probeNativeDiff(home, userxattr.get()));
  const d = new Overlay2Driver(home, backing, native, quota, defaultSize, userxattr, mountable);
  await d.reclaimDeadHolders();
  if (!manage) {
    mountable.get();
    userxattr.get();
    native.get();
  }
  return d;
}

/**
 * The read-only open (driver.ts OpenMode): no probe, mkdir or reclaim; the
 * diff dirs are read as they are (the native path), lowers through the
 * checked links (links.ts: parsed, never followed), and a comparison that
 * would need a mount (not the direct parent) is refused.
 */
function openReadOnly(home: string): Driver {
  mustBeExistingHome(NAME, home);
  const native = { native: true, reason: 'read-only open: the diff dirs are read as they are' };
  const d = new Overlay2Driver(home, 'unprobed (read-only open)', native, 'read-only open: no quota', 0, false, undefined, true);
  return readOnlyDriver(d, { getRefused: 'its mount would write merged/ into the home', layerDir: (id) => path.join(home, id, 'diff') });
}

export class Overlay2Driver implements Driver {
  readonly name = NAME;
  private readonly mounts: LayerMounts;
  private readonly nativeDiff: Feature<NativeDiff>;
  private readonly userxattr: Feature<boolean>;
  /** overlay mounts work here (and the backing fs has d_type) */
  private readonly mountable: Feature<true>;

  /**
   * Without init (the offline readers construct one so): `nativeDiff` and
   * `userxattr` may be given as known values, and `mountable` left out, which
   * assumes what no probe has checked.
   */
  constructor(
    readonly home: string,
    private readonly backingFs: string,
    nativeDiff: NativeDiff | Feature<NativeDiff>,
    private readonly quota: ProjectQuota | string,
    private readonly defaultSize: number,
    userxattr: boolean | Feature<boolean> = false,
    mountable?: Feature<true>,
    /** a read-only open: lowers read through the checked links, no naive fallback */
    private readonly readOnly = false,
  ) {
    this.mounts = new LayerMounts(home);
    const known = <T>(what: string, v: T | Feature<T>) => (v instanceof Feature ? v : Feature.known(NAME, what, home, v));
    this.nativeDiff = known('native diff', nativeDiff);
    this.userxattr = known('userxattr', userxattr);
    this.mountable = mountable ?? Feature.known(NAME, 'overlay mount', home, true as const);
  }

  /** Drop the mount references of killed processes, unmounting what no live one holds (init does this). */
  async reclaimDeadHolders(): Promise<void> {
    await this.mounts.reclaim();
  }

  /** `index=off,` where the kernel has the parameter, and `userxattr,` where needed, as moby does */
  private optPrefix(): string {
    return indexOffPrefix() + (this.userxattr.get() ? 'userxattr,' : '');
  }

  /** the whiteout form of the diff dirs: the opaque xattr follows the mount's namespace */
  private format(): 'overlay' | 'overlay-userxattr' {
    return this.userxattr.get() ? 'overlay-userxattr' : 'overlay';
  }

  private dir(id: string): string {
    return path.join(this.home, validateId(id));
  }

  private readText(id: string, name: string): string | null {
    try {
      return fs.readFileSync(path.join(this.dir(id), name), 'utf8').trim();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
  }

  private mustExist(id: string, where: string): void {
    if (!this.exists(id)) throw new LayerNotFoundError(NAME, id, where);
  }

  // ---- lifecycle -------------------------------------------------------------

  async createReadWrite(id: string, parent: string | null, opts?: CreateOpts): Promise<void> {
    const storageOpt = { ...opts?.storageOpt };
    if (this.defaultSize > 0 && storageOpt.size === undefined) storageOpt.size = String(this.defaultSize);
    await this.createLayer(id, parent, storageOpt, true);
  }

  async create(id: string, parent: string | null, opts?: CreateOpts): Promise<void> {
    if (opts?.storageOpt && 'size' in opts.storageOpt) {
      throw new InvalidParameterError('--storage-opt size is only supported for ReadWrite Layers');
    }
    await this.createLayer(id, parent, opts?.storageOpt ?? {}, false);
  }

  private async createLayer(id: string, parentArg: string | null, storageOpt: Record<string, string>, rw: boolean): Promise<void> {
    const parent = parentOrNull(parentArg);
    const dir = this.dir(id);
    if (fs.existsSync(dir)) throw new Error(`${NAME}: layer ${id} already exists`);
    this.mountable.get(); // a layer that could never be mounted here is not made
    let size = 0;
    for (const [k, v] of Object.entries(storageOpt)) {
      if (k.toLowerCase() === 'size') size = ramInBytes(v);
      else throw new InvalidParameterError(`Unknown option ${k}`);
    }
    if (size > 0 && typeof this.quota === 'string') {
      throw new QuotaNotSupportedError(`--storage-opt is supported only for overlay over xfs with 'pquota' mount option (${this.quota})`);
    }
    void rw;
    let lower: string | null = null;
    if (parent) {
      this.mustExist(parent, `parent of ${id}`);
      lower = childLower(this.readText(parent, 'link') ?? '', this.readText(parent, 'lower'));
    }
    fs.mkdirSync(dir, { mode: 0o710 });
    try {
      if (size > 0) (this.quota as ProjectQuota).setQuota(dir, size);
      fs.mkdirSync(path.join(dir, 'diff'), { mode: 0o755 });
      const link = generateLinkId();
      fs.mkdirSync(path.join(this.home, LINK_DIR), { recursive: true, mode: 0o700 }); // a managed home may lack it
      fs.symlinkSync(path.join('..', id, 'diff'), path.join(this.home, LINK_DIR, link));
      fs.writeFileSync(path.join(dir, 'link'), link, { mode: 0o644 });
      if (parent && lower) {
        fs.writeFileSync(path.join(this.dir(parent), 'committed'), '', { mode: 0o600 });
        fs.mkdirSync(path.join(dir, 'work'), { mode: 0o700 });
        fs.writeFileSync(path.join(dir, 'lower'), lower, { mode: 0o666 });
      }
    } catch (e) {
      await this.remove(id).catch(() => undefined);
      throw e;
    }
  }

  async remove(id: string): Promise<void> {
    const dir = this.dir(id);
    await this.mounts.forget(id);
    const link = this.readText(id, 'link');
    if (link) fs.rmSync(path.join(this.home, LINK_DIR, link), { force: true });
    removeTree(dir); // any depth: a layer may hold paths longer than PATH_MAX
  }

  async get(id: string): Promise<string> {
    this.mustExist(id, 'get');
    const dir = this.dir(id);
    const lower = this.readText(id, 'lower');
    if (!lower) return path.join(dir, 'diff'); // base layer: nothing to mount
    const merged = path.join(dir, 'merged');
    this.mountable.get();
    const prefix = this.optPrefix();
    await this.mounts.get(id, merged, () => {
      const plan = planMount(this.home, id, lower, fs.existsSync(path.join(dir, 'committed')), prefix);
      return overlaySpec(plan.data, plan.cwd);
    });
    return merged;
  }

  async persist(id: string): Promise<void> {
    if (!this.readText(id, 'lower')) return; // a base layer is its diff dir: nothing mounted, nothing to keep
    await this.mounts.persist(id, path.join(this.dir(id), 'merged'));
  }

  async put(id: string): Promise<void> {
    if (!this.readText(id, 'lower')) return;
    await this.mounts.put(id, path.join(this.dir(id), 'merged'));
  }

  exists(id: string): boolean {
    try {
      return fs.statSync(this.dir(id)).isDirectory();
    } catch {
      return false;
    }
  }

  status(): [string, string][] {
    return [
      ['Backing Filesystem', this.backingFs],
      ['Supports d_type', 'true'],
      ['Native Overlay Diff', this.nativeDiff.describe((n) => String(n.native))],
      ...this.whyNotNative(),
      ['userxattr', this.userxattr.describe(String)],
    ];
  }

  private whyNotNative(): [string, string][] {
    try {
      const n = this.nativeDiff.get();
      return n.native ? [] : [['Native Overlay Diff (why not)', n.reason]];
    } catch {
      return []; // the probe's failure is the value shown above
    }
  }

  metadata(id: string): Record<string, string> {
    this.mustExist(id, 'metadata');
    const dir = this.dir(id);
    const md: Record<string, string> = { MergedDir: path.join(dir, 'merged'), UpperDir: path.join(dir, 'diff'), WorkDir: path.join(dir, 'work') };
    const lowers = this.lowerDiffDirs(id);
    if (lowers.length) md.LowerDir = lowers.join(':');
    return md;
  }

  async cleanup(): Promise<void> {
    await this.mounts.cleanup();
  }

  layers(): LayerInfo[] {
    const byLink = new Map<string, string>();
    const ids: string[] = [];
    for (const name of fs.readdirSync(this.home)) {
      if (name === LINK_DIR || name.startsWith('.') || !this.exists(name)) continue;
      ids.push(name);
      const link = this.readText(name, 'link');
      if (link) byLink.set(link, name);
    }
    return ids.sort().map((id) => {
      const first = this.readText(id, 'lower')?.split(':')[0];
      const parent = first ? byLink.get(first.slice(LINK_DIR.length + 1)) : undefined;
      return parent ? { id, parent } : { id };
    });
  }

  // ---- diff --------------------------------------------------------------------

  /** Absolute diff dirs of the layer's lowers, nearest first (through the l/ links). */
  private lowerDiffDirs(id: string): string[] {
    if (this.readOnly) return overlay2Lowers(this.home, id).map((l) => path.join(this.home, l, 'diff'));
    const lower = this.readText(id, 'lower');
    if (!lower) return [];
    return lower.split(':').map((l) => fs.realpathSync(path.join(this.home, l)));
  }

  /** moby isParent: `parent` is the layer's direct parent ('' for a base layer). */
  private isParent(id: string, parent: string | null): boolean {
    const lowers = this.lowerDiffDirs(id);
    if (parent === null) return lowers.length === 0;
    if (lowers.length === 0) return false;
    return path.dirname(lowers[0]) === fs.realpathSync(this.dir(parent));
  }

  private useNative(id: string, parentArg: string | null): boolean {
    const parent = parentOrNull(parentArg);
    if (this.readOnly) {
      const lowers = overlay2Lowers(this.home, id);
      if (parent === null ? lowers.length === 0 : lowers[0] === parent) return true;
      throw new Error(`layer ${id} is not a child of ${parent ?? 'nothing'} by its ${path.join(this.dir(id), 'lower')} (${lowers[0] ?? 'a base layer'}); comparing them would need a mount, which a read-only open does not do`);
    }
    return this.nativeDiff.get().native && this.isParent(id, parent);
  }

  diff(id: string, parent: string | null): Readable {
    this.mustExist(id, 'diff');
    if (!this.useNative(id, parent)) return naiveDiff(this, id, parent);
    return exportDir(path.join(this.dir(id), 'diff'), { whiteouts: this.format() });
  }

  async changes(id: string, parent: string | null): Promise<Change[]> {
    this.mustExist(id, 'changes');
    if (!this.useNative(id, parent)) return naiveChanges(this, id, parent);
    return changesFromDiffDir(path.join(this.dir(id), 'diff'), this.lowerDiffDirs(id), this.format());
  }

  async applyDiff(id: string, parent: string | null, tar: TarInput): Promise<number> {
    this.mustExist(id, 'applyDiff');
    if (!this.useNative(id, parent)) return naiveApplyDiff(this, id, parent, tar);
    const diff = path.join(this.dir(id), 'diff');
    await applyLayer(tar, diff, { whiteouts: this.format() });
    return directorySize(diff);
  }

  async diffSize(id: string, parent: string | null): Promise<number> {
    this.mustExist(id, 'diffSize');
    if (!this.useNative(id, parent)) return naiveDiffSize(this, id, parent);
    return directorySize(path.join(this.dir(id), 'diff'));
  }
}

