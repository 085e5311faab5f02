// overlay (v1): Docker's first overlayfs graphdriver (moby
// daemon/graphdriver/overlay; deprecated in 18.09, removed in 24.0), with its
// exact on-disk layout (layout.ts), so a /var/lib/docker/overlay written by
// dockerd is readable here and the other way round.
//
// The overlayfs of its day took one lowerdir, so every *image* layer is a
// complete root filesystem (<id>/root), and only container layers (and the
// -init layer below them) are overlay mounts: an upper/ over one image root.
// applyDiff over a parent that has root/ builds the child's root/ as a
// hardlink copy of the parent's (every directory a new inode, every regular
// file a hardlink of the parent's) and untars the layer on top. The untar
// replaces files, never writes into them (archive/apply.ts removes an existing
// non-directory before creating the entry), so the parent's files stay as they
// were. File data is shared between image layers; directories are not, which
// is the inode appetite overlay was deprecated for.
//
// Diffs are naive (moby NaiveDiffDriverWithApply): diff, changes and diffSize
// mount and compare trees; applyDiff takes the hardlink path when the parent
// has root/ and otherwise the naive apply (moby's ErrApplyDiffFallback).
//
// Contract beyond driver.ts: an image layer made by the hardlink apply shares
// its regular files' inodes with its parent, so writing into one of its files
// through get() writes into the parent's file too. moby's layer store never
// writes into image layers; callers here must not either.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import * as sys from '../../sys/syscalls.ts';
import { applyLayer } from '../../archive/apply.ts';
import { removeTree } from '../../archive/remove-tree.ts';
import type { Change } from '../../archive/types.ts';
import {
  InvalidParameterError, LayerNotFoundError, QuotaNotSupportedError, errDTypeNotSupported, mustBeExistingHome,
  parentOrNull, parseStorageOptKeyValue, tarSource, validateId,
  type CreateOpts, type Driver, type InitOpts, type LayerInfo, type TarInput,
} from '../driver.ts';
import { Feature } from '../feature.ts';
import { makeScratch, removeStaleScratch } from '../scratch.ts';
import { backingFsName, supportsDType } from '../backing-fs.ts';
import { naiveApplyDiff, naiveChanges, naiveDiff, naiveDiffSize } from '../naive.ts';
import { PROBE_PREFIXES, indexOffPrefix, probeOverlay } from '../overlay2/probes.ts';
import { LayerMounts, overlaySpec, unmount } from '../mounter.ts';
import { isMountPoint } from '../../sys/mountinfo.ts';
import { copyTree } from '../../archive/copy-tree.ts';
import { readOnlyDriver } from '../read-only.ts';
import { TMP_ROOT_PREFIX, layerMetadata, layerPaths, mountData, type LayerPaths } from './layout.ts';

export const NAME = 'overlay';

const isRoot = process.getuid?.() === 0;

/**
 * moby overlay Init: no options at all; a test mount and the d_type check,
 * at init when opened to use the home, on first need when opened to manage
 * an existing one (driver.ts OpenMode).
 */
export async function init(home: string, options: string[], opts: InitOpts = {}): Promise<Driver> {
  for (const opt of options) {
    const [key] = parseStorageOptKeyValue(opt);
    throw new InvalidParameterError(`${NAME}: unknown option ${key}`);
  }
  if (opts.mode === 'read-only') {
    // no probe, mkdir or reclaim; a mount would write merged/ into the home
    mustBeExistingHome(NAME, home);
    return readOnlyDriver(new OverlayDriver(home, 'unprobed (read-only open)'), { getRefused: 'its mount would write merged/ into the home', layerDir: (id) => path.join(home, id) });
  }
  const manage = opts.mode === 'manage';
  if (manage) mustBeExistingHome(NAME, home);
  const created = !manage && !fs.existsSync(home);
  fs.mkdirSync(home, { recursive: true, mode: 0o710 });
  try {
    removeStaleScratch(home, PROBE_PREFIXES);
    removeDeadApplyCopies(home);
    const backing = backingFsName(home);
    const mountable = new Feature(NAME, 'overlay mount', home, () => {
      const overlay = probeOverlay(home);
      if (overlay !== true) throw new Error(overlay);
      if (!supportsDType(home)) throw errDTypeNotSupported(NAME, backing);
      return true as const;
    });
    const d = new OverlayDriver(home, backing, mountable);
    await d.reclaimDeadHolders();
    if (!manage) mountable.get();
    return d;
  } catch (e) {
    if (created) fs.rmSync(home, { recursive: true, force: true }); // leave no empty home behind a refusal
    throw e;
  }
}

/**
 * The hardlink copies (`<id>/tmproot-<holder>-*`) of applies killed midway:
 * each holds a whole tree's directories, so a store that saw a few killed
 * applies runs out of inodes. Removed at init (one readdir per layer) and
 * before each apply into the same layer.
 */
function removeDeadApplyCopies(home: string): void {
  for (const e of fs.readdirSync(home, { withFileTypes: true })) {
    if (e.isDirectory() && !e.name.startsWith('.')) removeStaleScratch(path.join(home, e.name), [TMP_ROOT_PREFIX], { untagged: false });
  }
}

export class OverlayDriver implements Driver {
  readonly name = NAME;
  private readonly mounts: LayerMounts;
  /** `index=off,` where the kernel has it (as overlay2 mounts; moby's overlay v1 passed nothing) */
  private readonly optPrefix: string;

  /** `mountable` left out: assumed, unprobed (a caller that did not init). */
  constructor(readonly home: string, private readonly backingFs: string, private readonly mountable = Feature.known(NAME, 'overlay mount', home, true as const)) {
    this.mounts = new LayerMounts(home);
    this.optPrefix = indexOffPrefix();
  }

  /** Drop the mount references of killed processes, unmounting what no live one holds (init does this). */
  async reclaimDeadHolders(): Promise<void> {
    await this.mounts.reclaim();
  }

  private paths(id: string): LayerPaths {
    return layerPaths(this.home, validateId(id));
  }

  private mustExist(id: string, where: string): LayerPaths {
    const p = this.paths(id);
    if (!isDir(p.dir)) throw new LayerNotFoundError(NAME, id, where);
    return p;
  }

  /** The lower-id of an overlay layer, as written (Docker writes no newline). */
  private lowerId(id: string, p: LayerPaths): string {
    let text: string;
    try {
      text = fs.readFileSync(p.lowerId, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new Error(`${NAME}: layer ${id} has neither root/ nor lower-id (${p.dir})`, { cause: e });
      }
      throw e;
    }
    try {
      return validateId(text);
    } catch (e) {
      throw new Error(`${NAME}: layer ${id}: ${p.lowerId} does not hold a layer id: ${JSON.stringify(text)}`, { cause: e });
    }
  }

  // ---- lifecycle -------------------------------------------------------------

  /** moby: the same as create (overlay has no read-write specifics). */
  async createReadWrite(id: string, parent: string | null, opts?: CreateOpts): Promise<void> {
    await this.create(id, parent, opts);
  }

  /**
   * No parent: an empty image layer (`root/`). A parent with `root/`: an
   * overlay layer over it (empty `upper/` with the mode of that root, `work/`,
   * `lower-id`). A parent that is itself an overlay layer: its `lower-id` and
   * a content copy of its `upper/` (whiteout devices, opaque markers and every
   * other xattr included) — how a container layer inherits its -init layer.
   * On error nothing of the new layer is left.
   */
  async create(id: string, parentArg: string | null, opts?: CreateOpts): Promise<void> {
    refuseStorageOpts(opts);
    const parent = parentOrNull(parentArg);
    const p = this.paths(id);
    if (fs.existsSync(p.dir)) throw new Error(`${NAME}: layer ${id} already exists`);
    this.mountable.get(); // a layer that could never be mounted here is not made
    const pp = parent === null ? null : this.mustExist(parent, `parent of ${id}`);
    fs.mkdirSync(p.dir, 0o710);
    try {
      fs.chmodSync(p.dir, 0o710); // whatever the umask
      if (pp === null) {
        mkdirMode(p.root, 0o755); // 0755, or unprivileged users in the container cannot read /
        return;
      }
      const parentRoot = fs.lstatSync(pp.root, { throwIfNoEntry: false });
      if (parentRoot) {
        mkdirMode(p.upper, parentRoot.mode & 0o7777);
        mkdirMode(p.work, 0o700);
        fs.writeFileSync(p.lowerId, parent!, { mode: 0o600 });
        return;
      }
      const lowerId = this.lowerId(parent!, pp);
      fs.writeFileSync(p.lowerId, lowerId, { mode: 0o600 });
      mkdirMode(p.upper, fs.lstatSync(pp.upper).mode & 0o7777);
      mkdirMode(p.work, 0o700);
      copyTree(pp.upper, p.upper, { xattrs: keepInUpperCopy });
    } catch (e) {
      fs.rmSync(p.dir, { recursive: true, force: true });
      throw e;
    }
  }

  /** Unmount if mounted (our reference records or not: moby's EnsureRemoveAll does too), then delete. */
  async remove(id: string): Promise<void> {
    const p = this.paths(id);
    await this.mounts.forget(id);
    unmount(p.merged);
    removeTree(p.dir); // any depth: a layer may hold paths longer than PATH_MAX
  }

  /** An image layer is its root/ (no mount, no reference); an overlay layer is mounted on merged/, ref-counted across processes. */
  async get(id: string): Promise<string> {
    const p = this.mustExist(id, 'get');
    if (isDir(p.root)) return p.root;
    const data = mountData(this.home, id, this.lowerId(id, p), this.optPrefix);
    this.mountable.get();
    try {
      await this.mounts.get(id, p.merged, () => overlaySpec(data));
    } catch (e) {
      if (!(e instanceof sys.SysError)) throw e;
      throw new Error(`error creating overlay mount to ${p.merged}: ${e.message}`, { cause: e });
    }
    return p.merged;
  }

  async persist(id: string): Promise<void> {
    const p = this.paths(id);
    if (isDir(p.root)) return; // an image layer is its root/: nothing mounted, nothing to keep
    await this.mounts.persist(id, p.merged);
  }

  async put(id: string): Promise<void> {
    const p = this.paths(id);
    if (isDir(p.root)) return;
    await this.mounts.put(id, p.merged);
  }

  exists(id: string): boolean {
    return isDir(this.paths(id).dir);
  }

  status(): [string, string][] {
    return [['Backing Filesystem', this.backingFs], ['Supports d_type', 'true']];
  }

  metadata(id: string): Record<string, string> {
    const p = this.mustExist(id, 'metadata');
    return layerMetadata(this.home, id, isDir(p.root) ? null : this.lowerId(id, p));
  }

  async cleanup(): Promise<void> {
    await this.mounts.cleanup();
  }

  /** Layer ids. No parents: an image layer keeps none, and lower-id names the image below, not the parent. */
  layers(): LayerInfo[] {
    return fs.readdirSync(this.home, { withFileTypes: true })
      .filter((e) => e.isDirectory() && !e.name.startsWith('.'))
      .map((e) => e.name)
      .sort()
      .map((id) => ({ id }));
  }

  // ---- diff --------------------------------------------------------------------

  diff(id: string, parent: string | null): Readable {
    this.mustExist(id, 'diff');
    return naiveDiff(this, id, parent);
  }

  async changes(id: string, parent: string | null): Promise<Change[]> {
    this.mustExist(id, 'changes');
    return naiveChanges(this, id, parent);
  }

  async diffSize(id: string, parent: string | null): Promise<number> {
    this.mustExist(id, 'diffSize');
    return naiveDiffSize(this, id, parent);
  }

  /**
   * Over a parent with root/: the hardlink apply, after which `id` is an image
   * layer (root/ only; upper/, work/, merged/ and lower-id are gone). Otherwise
   * (no parent, or an overlay-layer parent) the naive apply into get(id).
   * Either way returns moby's size: Σ tar header sizes (ApplyUncompressedLayer).
   */
  async applyDiff(id: string, parentArg: string | null, tar: TarInput): Promise<number> {
    const p = this.mustExist(id, 'applyDiff');
    const parent = parentOrNull(parentArg);
    const parentRoot = parent === null ? null : this.paths(parent).root;
    if (parentRoot === null || !isDir(parentRoot)) return naiveApplyDiff(this, id, parent, tar);
    return this.applyOnHardlinkCopy(id, p, parentRoot, tar);
  }

  /** moby overlay ApplyDiff: hardlink-copy the parent's root into tmproot*, untar onto it, rename it to root/. */
  private async applyOnHardlinkCopy(id: string, p: LayerPaths, parentRoot: string, tar: TarInput): Promise<number> {
    if (isMountPoint(p.merged)) {
      throw new Error(`${NAME}: applyDiff ${id}: the layer is mounted on ${p.merged}; put() it first (the apply replaces its upper/ with a root/)`);
    }
    if (fs.existsSync(p.root)) throw new Error(`${NAME}: applyDiff ${id}: ${p.root} already exists`);
    removeStaleScratch(p.dir, [TMP_ROOT_PREFIX], { untagged: false }); // a killed apply's copy
    const tmp = makeScratch(p.dir, TMP_ROOT_PREFIX);
    let size: number;
    try {
      copyTree(parentRoot, tmp, { mode: 'hardlink' });
      size = await applyLayer(tarSource(tar), tmp, { whiteouts: 'none' });
      fs.renameSync(tmp, p.root);
    } catch (e) {
      removeTree(tmp);
      throw e;
    }
    for (const q of [p.upper, p.work, p.merged, p.lowerId]) removeTree(q);
    return size;
  }
}

/**
 * moby refuses every storage option on overlay (`--storage-opt is not
 * supported for overlay`). `size` gets the quota error family, which is what
 * callers test for; anything else is a bad parameter.
 */
function refuseStorageOpts(opts: CreateOpts | undefined): void {
  const keys = Object.keys(opts?.storageOpt ?? {});
  if (keys.length === 0) return;
  const msg = `--storage-opt is not supported for ${NAME}`;
  if (keys.some((k) => k.toLowerCase() === 'size')) throw new QuotaNotSupportedError(msg);
  throw new InvalidParameterError(msg);
}

/**
 * The xattrs a child's copy of an upper/ keeps: all of them, also overlayfs's
 * own (opaque markers, and origin/impure/redirect, which stay true because the
 * child has the same lowerdir), except the upper root's trusted.overlay.uuid:
 * that names the parent's overlay instance, and the kernel makes the child's.
 * (moby copied only security.capability and trusted.overlay.opaque, so a
 * container lost the other xattrs of files its -init layer had copied up.)
 */
function keepInUpperCopy(name: string): boolean {
  return name !== 'trusted.overlay.uuid';
}

function mkdirMode(p: string, mode: number): void {
  fs.mkdirSync(p, mode);
  fs.chmodSync(p, mode); // the umask, and mkdir(2) drops setuid/setgid/sticky
  if (isRoot) fs.chownSync(p, 0, 0);
}

function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return false;
    throw e;
  }
}
