// aufs: Docker's aufs graphdriver with moby's exact layout (layout.ts), so a
// store dockerd wrote on an aufs host is opened here and one written here is
// what dockerd (≤ 23) reads. Layers with parents are mounted with the aufs
// module where /proc/filesystems has it, as moby mounts them (mount-plan.ts),
// and through a FUSE union (fuse-overlayfs) everywhere else. The writable
// branch is diff/<id> either way; what the FUSE union wrote there is turned
// back into the aufs form when the last reference is put (whiteout-form.ts).
//
// Native diff paths (parent = the direct parent, and the diff dir not under
// a live FUSE mount, i.e. in aufs form): diff = tar of diff/<id> without the
// aufs internals; applyDiff = untar keeping aufs whiteouts; diffSize =
// directory.Size(diff/<id>); changes = the aufs walk of diff/<id> over its
// parents' diff dirs. Everything else is the shared naive path.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { applyLayer } from '../../archive/apply.ts';
import { changesFromDiffDir } from '../../archive/changes.ts';
import { exportDir } from '../../archive/export.ts';
import { removeTree } from '../../archive/remove-tree.ts';
import { directorySize } from '../../archive/tree-size.ts';
import type { Change } from '../../archive/types.ts';
import { findTool } from '../../sys/find-tool.ts';
import { listSorted } from '../../sys/read-only-files.ts';
import { runningInUserNS } from '../../sys/userns.ts';
import * as sys from '../../sys/syscalls.ts';
import { backingFsName } from '../backing-fs.ts';
import {
  InvalidParameterError, LayerNotFoundError, QuotaNotSupportedError, errIncompatibleFS, errNotSupported, mustBeExistingHome, parentOrNull,
  parseStorageOptKeyValue, validateId,
  type CreateOpts, type Driver, type InitOpts, type LayerInfo, type TarInput,
} from '../driver.ts';
import { Feature } from '../feature.ts';
import { isLayerName } from '../layout.ts';
import { LayerMounts, type MountSpec } from '../mounter.ts';
import { naiveApplyDiff, naiveChanges, naiveDiff, naiveDiffSize } from '../naive.ts';
import { readOnlyDriver } from '../read-only.ts';
import { removeStaleScratch, withScratch } from '../scratch.ts';
import { FUSE_WORK_DIR, aufsInFilesystems, dirperm1ProbeData, fuseUnionOptions, fuseWorkDir, planAufsMount } from './mount-plan.ts';
import { toAufsForm } from './whiteout-form.ts';

export const NAME = 'aufs';
const SUBDIRS = ['mnt', 'diff', 'layers'] as const;
const PROBE_PREFIX = '.strata-aufs-probe';
const FUSE_PROGRAM = 'fuse-overlayfs';
/** layers/<id> holds one 64-hex id a line per ancestor: 1 MiB is some 16000 of them */
const MAX_LAYERS_FILE = 1 << 20;

/** Which union mounts a layer with parents here. */
export type Union = 'aufs' | 'fuse-overlayfs';

/**
 * The kernel's aufs where /proc/filesystems lists it, else fuse-overlayfs
 * where it and /dev/fuse are; else why neither. `forced` (the aufs.union
 * option) takes the one named or fails.
 */
export function chooseUnion(forced: Union | null = null): Union {
  const kernel = aufsInFilesystems(readQuiet('/proc/filesystems'));
  if (forced === 'aufs' && !kernel) throw errNotSupported('AUFS was not found in /proc/filesystems');
  if (kernel && forced !== 'fuse-overlayfs') {
    if (runningInUserNS()) throw errNotSupported('AUFS cannot be used in non-init user namespace'); // moby ErrAufsNested
    return 'aufs';
  }
  const missing = [!fs.existsSync('/dev/fuse') && '/dev/fuse', !findTool(FUSE_PROGRAM) && FUSE_PROGRAM, !findTool('fusermount3') && 'fusermount3'].filter(Boolean);
  if (missing.length) throw errNotSupported(`AUFS was not found in /proc/filesystems, and its FUSE union needs ${missing.join(', ')}`);
  return 'fuse-overlayfs';
}

function readQuiet(p: string): string {
  try {
    return fs.readFileSync(p, 'utf8');
  } catch {
    return '';
  }
}

/**
 * moby aufs Init (which takes no options); strata's `aufs.force_naive_diff`
 * sends every diff method down the naive path (to hold both to one suite),
 * and `aufs.union=aufs|fuse-overlayfs` picks the union instead of the kernel.
 * The open modes as driver.ts OpenMode says.
 */
export async function init(home: string, options: string[], opts: InitOpts = {}): Promise<Driver> {
  let forceNaive = false;
  let forced: Union | null = null;
  for (const opt of options) {
    const [key, val] = parseStorageOptKeyValue(opt);
    if (key === 'aufs.force_naive_diff') forceNaive = val === 'true' || val === '1';
    else if (key === 'aufs.union' && (val === 'aufs' || val === 'fuse-overlayfs')) forced = val;
    else if (key === 'aufs.union') throw new InvalidParameterError(`aufs: aufs.union must be aufs or fuse-overlayfs, not ${JSON.stringify(val)}`);
    else throw new InvalidParameterError(`aufs: unknown option ${key}`);
  }
  if (opts.mode === 'read-only') {
    mustBeExistingHome(NAME, home);
    const d = new AufsDriver(home, 'unprobed (read-only open)', Feature.known(NAME, 'union', home, 'fuse-overlayfs' as Union), true, false);
    return readOnlyDriver(d, { getRefused: 'its mount would write into mnt/ and the diff dir', layerDir: (id) => path.join(home, 'diff', id) });
  }
  const manage = opts.mode === 'manage';
  if (manage) mustBeExistingHome(NAME, home);
  const backing = backingFsName(fs.existsSync(home) ? home : path.dirname(home));
  const union = new Feature(NAME, 'union', home, () => {
    const u = chooseUnion(forced);
    // moby: aufs over aufs, btrfs or ecryptfs is refused (the FUSE union has no such limit)
    if (u === 'aufs' && ['aufs', 'btrfs', 'ecryptfs'].includes(backing)) throw errIncompatibleFS(`AUFS is not supported over ${backing}`);
    return u;
  });
  if (!manage) {
    union.get();
    for (const s of SUBDIRS) fs.mkdirSync(path.join(home, s), { recursive: true, mode: 0o710 });
  }
  removeStaleScratch(home, [PROBE_PREFIX]);
  const d = new AufsDriver(home, backing, union, false, forceNaive);
  d.removeStaleRemovals();
  await d.reclaimDeadHolders();
  await d.finishConversions();
  return d;
}

export class AufsDriver implements Driver {
  readonly name = NAME;
  private readonly mounts: LayerMounts;
  private readonly dirperm1: Feature<boolean>;

  constructor(
    readonly home: string,
    private readonly backingFs: string,
    private readonly union: Feature<Union>,
    private readonly readOnly: boolean,
    private readonly forceNaive: boolean,
  ) {
    this.mounts = new LayerMounts(home, { keepDirs: true, afterUnmount: (id) => this.afterUnmount(id) });
    this.dirperm1 = new Feature(NAME, 'dirperm1', home, () => this.union.get() === 'aufs' && this.probeDirperm1());
  }

  diffDir(id: string): string {
    return path.join(this.home, 'diff', validateId(id));
  }

  private mntDir(id: string): string {
    return path.join(this.home, 'mnt', validateId(id));
  }

  private layersFile(id: string): string {
    return path.join(this.home, 'layers', validateId(id));
  }

  /**
   * moby getParentIDs: the lines of layers/<id>, nearest parent first. A
   * hostile store's file is refused, not read whole or followed: a FIFO,
   * one past MAX_LAYERS_FILE, a line that is no layer id.
   */
  parentIds(id: string): string[] {
    const file = this.layersFile(id);
    let fd: number;
    try {
      fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOFOLLOW);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new LayerNotFoundError(NAME, id, file);
      throw e;
    }
    let text: string;
    try {
      const st = fs.fstatSync(fd);
      if (!st.isFile()) throw new Error(`${NAME}: ${file} is not a regular file`);
      if (st.size > MAX_LAYERS_FILE) throw new Error(`${NAME}: ${file} is ${st.size} bytes, too large for a list of parent ids`);
      text = fs.readFileSync(fd, 'utf8');
    } finally {
      fs.closeSync(fd);
    }
    const ids = text.split('\n').map((s) => s.trim()).filter(Boolean);
    const bad = ids.find((p) => !isLayerName(p));
    if (bad !== undefined) throw new Error(`${NAME}: ${file} names ${JSON.stringify(bad.slice(0, 80))}, which is not a layer id`);
    return ids;
  }

  /** The parents' diff dirs; a layers/<id> naming `id` itself or one parent twice (a cycle) is refused. */
  private lowerDirs(id: string): string[] {
    const ids = this.parentIds(id);
    const twice = [id, ...ids].find((p, i, all) => all.indexOf(p) !== i);
    if (twice !== undefined) throw new Error(`${NAME}: ${this.layersFile(id)} names ${twice} ${twice === id ? 'itself' : 'twice'}: its ancestry is a cycle`);
    return ids.map((p) => this.diffDir(p));
  }

  /** diff/<id> itself, never through a symlink: a union or a conversion there would write outside the store. */
  private ownDiffDir(id: string): string {
    const dir = this.diffDir(id);
    const st = fs.lstatSync(dir, { throwIfNoEntry: false });
    if (st && !st.isDirectory()) throw new Error(`${NAME}: ${dir} is not a directory (a ${st.isSymbolicLink() ? 'symlink' : 'file'}): refusing to use it as layer ${id}'s branch`);
    return dir;
  }

  private mustExist(id: string, where: string): void {
    if (!this.exists(id)) throw new LayerNotFoundError(NAME, id, where);
  }

  /** moby Init: `<id>-removing` dirs a killed Remove left in mnt/ and diff/ are removed. */
  removeStaleRemovals(): void {
    for (const sub of ['mnt', 'diff']) {
      for (const n of listSorted(path.join(this.home, sub))) if (n.endsWith('-removing')) removeTree(path.join(this.home, sub, n));
    }
  }

  async reclaimDeadHolders(): Promise<void> {
    await this.mounts.reclaim();
  }

  /**
   * A FUSE workdir with nothing mounted over its layer: a process ended
   * between the union's unmount and the end of the conversion (killed, or
   * the helper unmounted by hand). The conversion is done now (it may run
   * again on a half-converted branch), so diff/<id> is in aufs form again.
   */
  async finishConversions(): Promise<void> {
    // none listed: no FUSE union has run
    for (const id of listSorted(path.join(this.home, FUSE_WORK_DIR))) {
      if (!isLayerName(id)) continue;
      await this.mounts.whileUnmounted(id, this.mntDir(id), () => this.afterUnmount(id));
    }
  }

  // ---- lifecycle ---------------------------------------------------------------

  async createReadWrite(id: string, parent: string | null, opts?: CreateOpts): Promise<void> {
    await this.create(id, parent, opts);
  }

  async create(id: string, parentArg: string | null, opts?: CreateOpts): Promise<void> {
    const keys = Object.keys(opts?.storageOpt ?? {});
    // moby refuses every storage opt with one message; a size is also a quota the driver cannot set
    if (keys.some((k) => k.toLowerCase() === 'size')) throw new QuotaNotSupportedError('--storage-opt is not supported for aufs');
    if (keys.length) throw new InvalidParameterError('--storage-opt is not supported for aufs');
    const parent = parentOrNull(parentArg);
    const lines = parent === null ? [] : [parent, ...this.parentIds(parent)];
    if (this.exists(id)) throw new Error(`${NAME}: layer ${id} already exists`);
    this.union.get(); // a layer that could never be mounted here is not made
    try {
      for (const s of ['mnt', 'diff']) fs.mkdirSync(path.join(this.home, s, id), { recursive: true, mode: 0o755 });
      fs.writeFileSync(this.layersFile(id), lines.map((l) => `${l}\n`).join(''), { mode: 0o644 });
    } catch (e) {
      await this.remove(id).catch(() => undefined);
      throw e;
    }
  }

  /** moby Remove: unmount, layers/<id> deleted, diff/ and mnt/ entries renamed `-removing` and then removed. */
  async remove(id: string): Promise<void> {
    validateId(id);
    await this.mounts.forget(id);
    fs.rmSync(this.layersFile(id), { force: true });
    for (const dir of [this.diffDir(id), this.mntDir(id)]) {
      const gone = `${dir}-removing`;
      try {
        fs.renameSync(dir, gone);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw e;
      }
      removeTree(gone);
    }
    this.dropWorkDir(id);
  }

  /** The FUSE workdir of `id`, and their common dir once it is empty. */
  private dropWorkDir(id: string): void {
    const work = fuseWorkDir(this.home, id);
    if (fs.existsSync(work)) removeTree(work);
    try {
      fs.rmdirSync(path.dirname(work));
    } catch {
      // other layers are mounted, or there was none
    }
  }

  async get(id: string): Promise<string> {
    this.mustExist(id, 'get');
    const lowers = this.lowerDirs(id);
    if (lowers.length === 0) return this.ownDiffDir(id); // a base layer is not mounted
    const target = this.mntDir(id);
    await this.mounts.get(id, target, () => this.plan(id, lowers));
    return target;
  }

  /** The mount of `id` over `lowers`: kernel aufs, or the FUSE union with its workdir made. */
  private plan(id: string, lowers: string[]): MountSpec {
    const rw = this.ownDiffDir(id);
    if (this.union.get() === 'aufs') {
      const p = planAufsMount(rw, lowers, { dirperm1: this.dirperm1.get() });
      return { kind: 'kernel', fstype: 'aufs', source: 'none', data: p.data, appends: p.appends };
    }
    const work = fuseWorkDir(this.home, id);
    fs.rmSync(work, { recursive: true, force: true }); // a killed helper's leftovers
    fs.mkdirSync(work, { recursive: true, mode: 0o700 });
    return { kind: 'fuse', program: FUSE_PROGRAM, options: fuseUnionOptions(rw, lowers, work) };
  }

  /** After the last put: the FUSE union's writes turned into aufs form, its workdir removed. */
  private afterUnmount(id: string): void {
    if (!this.exists(id)) return;
    const work = fuseWorkDir(this.home, id);
    if (!fs.existsSync(work)) return; // a kernel aufs mount writes aufs form itself
    toAufsForm(this.ownDiffDir(id), this.lowerDirs(id));
    this.dropWorkDir(id);
  }

  async persist(id: string): Promise<void> {
    if (this.lowerDirs(id).length === 0) return;
    await this.mounts.persist(id, this.mntDir(id));
  }

  async put(id: string): Promise<void> {
    let lowers: string[];
    try {
      lowers = this.lowerDirs(id);
    } catch {
      return; // removed meanwhile: nothing mounted
    }
    if (lowers.length === 0) return;
    await this.mounts.put(id, this.mntDir(id));
  }

  /** moby Exists: layers/<id> is there. */
  exists(id: string): boolean {
    try {
      return fs.lstatSync(this.layersFile(id)).isFile();
    } catch {
      return false;
    }
  }

  status(): [string, string][] {
    const dirs = listSorted(path.join(this.home, 'layers')).length; // 0 with no layers/ yet
    return [
      ['Root Dir', this.home],
      ['Backing Filesystem', this.backingFs],
      ['Dirs', String(dirs)],
      ['Dirperm1 Supported', this.dirperm1.describe(String)],
      ['Native Diff', String(!this.forceNaive)],
      ['Union', this.union.describe((u) => (u === 'aufs' ? 'aufs (kernel module)' : 'fuse-overlayfs (no aufs in /proc/filesystems)'))],
    ];
  }

  /** moby GetMetadata is nil for aufs; strata shows where the layer's parts are. */
  metadata(id: string): Record<string, string> {
    this.mustExist(id, 'metadata');
    return { DiffDir: this.diffDir(id), LayersFile: this.layersFile(id), MountDir: this.mntDir(id) };
  }

  async cleanup(): Promise<void> {
    await this.mounts.cleanup();
  }

  layers(): LayerInfo[] {
    return listSorted(path.join(this.home, 'layers')).filter((n) => this.exists(n)).map((id) => ({ id, parent: this.parentIds(id)[0] ?? null }));
  }

  // ---- the dirperm1 probe (kernel aufs only) ------------------------------------------

  /** moby useDirperm: a one-branch aufs mount with dirperm1 succeeds. */
  private probeDirperm1(): boolean {
    return withScratch(this.home, PROBE_PREFIX, (dir) => {
      const base = path.join(dir, 'base');
      const union = path.join(dir, 'union');
      fs.mkdirSync(base);
      fs.mkdirSync(union);
      try {
        sys.mount('none', union, 'aufs', 0, dirperm1ProbeData(base));
      } catch {
        return false;
      }
      sys.umount2(union, sys.MNT_DETACH);
      return true;
    });
  }

  // ---- diff ---------------------------------------------------------------------------

  /** moby isParent, strictly: `parent` is the first line of layers/<id> (none for a base layer). */
  private isParent(id: string, parent: string | null): boolean {
    const first = this.parentIds(id)[0] ?? null;
    return first === parent;
  }

  /** The native path applies: direct parent, and diff/<id> in aufs form (no FUSE workdir: no live union, no conversion pending). */
  private useNative(id: string, parentArg: string | null): boolean {
    const parent = parentOrNull(parentArg);
    if (this.readOnly) {
      if (fs.existsSync(fuseWorkDir(this.home, id))) {
        throw new Error(`${NAME}: ${this.diffDir(id)} is not in aufs form (a FUSE union is mounted on it, or its conversion was cut short); a read-write open finishes it`);
      }
      if (this.isParent(id, parent)) return true;
      throw new Error(`layer ${id} is not a child of ${parent ?? 'nothing'} by its ${this.layersFile(id)}; comparing them would need a mount, which a read-only open does not do`);
    }
    return !this.forceNaive && this.isParent(id, parent) && !fs.existsSync(fuseWorkDir(this.home, id));
  }

  diff(id: string, parent: string | null): Readable {
    this.mustExist(id, 'diff');
    if (!this.useNative(id, parent)) return naiveDiff(this, id, parent);
    return exportDir(this.diffDir(id), { whiteouts: 'aufs' });
  }

  async changes(id: string, parent: string | null): Promise<Change[]> {
    this.mustExist(id, 'changes');
    if (!this.useNative(id, parent)) return naiveChanges(this, id, parent);
    return changesFromDiffDir(this.diffDir(id), this.lowerDirs(id), 'aufs');
  }

  async applyDiff(id: string, parent: string | null, tar: TarInput): Promise<number> {
    this.mustExist(id, 'applyDiff');
    if (!this.useNative(id, parent)) return naiveApplyDiff(this, id, parent, tar);
    await applyLayer(tar, this.diffDir(id), { whiteouts: 'aufs' });
    return directorySize(this.diffDir(id));
  }

  async diffSize(id: string, parent: string | null): Promise<number> {
    this.mustExist(id, 'diffSize');
    if (!this.useNative(id, parent)) return naiveDiffSize(this, id, parent);
    return directorySize(this.diffDir(id));
  }
}
