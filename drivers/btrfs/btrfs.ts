// btrfs: every layer is a subvolume, a child a snapshot of its parent's
// (moby daemon/graphdriver/btrfs), in Docker's layout so that homes move
// between dockerd and strata both ways:
//
//   <home>/subvolumes/<id>   the layer's subvolume: its whole tree
//   <home>/quotas/<id>       the `size` of a layer with a qgroup limit, in bytes
//
// Subvolumes are made, snapshotted and destroyed through ioctls (ioctl.ts),
// not the btrfs tool; remove destroys nested subvolumes first. `size` on a
// read-write layer limits its qgroup (qgroups are enabled on first use, or at
// init with btrfs.min_space, as moby does). The home is bind-mounted onto
// itself, like moby's mount.MakeMount.
//
// Diffs: changes(), diff() and diffSize() against the direct parent (the
// subvolume the layer is a snapshot of, by uuid) come from btrfs send
// (native-changes.ts); anything else, and whatever the native path refuses
// or fails at, takes the naive walk, and status() says which and why.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { changesSize } from '../../archive/changes.ts';
import { exportChanges } from '../../archive/export.ts';
import { removeTree } from '../../archive/remove-tree.ts';
import type { Change } from '../../archive/types.ts';
import { isMountPoint } from '../../sys/mountinfo.ts';
import { isDirectory } from '../../sys/read-only-files.ts';
import { MNT_DETACH, MS_BIND, SysError, umount2 } from '../../sys/syscalls.ts';
import { backingFsName } from '../backing-fs.ts';
import {
  InvalidParameterError, LayerNotFoundError, errPrerequisites, mustBeExistingHome, parentOrNull, parseStorageOptKeyValue,
  ramInBytes, validateId, type CreateOpts, type Driver, type InitOpts, type LayerInfo, type TarInput,
} from '../driver.ts';
import { isLayerName } from '../layout.ts';
import { mount } from '../mounter.ts';
import { naiveApplyDiff, naiveChanges, naiveDiff, naiveDiffSize } from '../naive.ts';
import { readOnlyDriver } from '../read-only.ts';
import {
  childSubvolumes, isSubvolume, qgroupDestroy, qgroupLimit, quotaEnable, quotaEnabled, quotaRescanWait, subvolCreate, subvolDestroyTree,
  subvolInfo, subvolSnapshot,
} from './ioctl.ts';
import { NativeRefusal, removeStaleSendScratch, sendChanges } from './native-changes.ts';

export const NAME = 'btrfs';
const SUBVOLUMES = 'subvolumes';
const QUOTAS = 'quotas';

interface Options {
  minSpace: number;
  /** strata's `btrfs.native_changes=false`: always the naive walk (benches compare both) */
  native: boolean;
  /** a read-only open: get() sets no qgroup limit */
  readOnly: boolean;
}

function parseOptions(options: string[]): Omit<Options, 'readOnly'> & { userDiskQuota: boolean } {
  const o = { minSpace: 0, native: true, userDiskQuota: false };
  for (const opt of options) {
    const [key, val] = parseStorageOptKeyValue(opt);
    if (key === 'btrfs.min_space') {
      o.minSpace = ramInBytes(val);
      o.userDiskQuota = true;
    } else if (key === 'btrfs.native_changes') o.native = !(val === 'false' || val === '0');
    else throw new InvalidParameterError(`unknown option ${key}`);
  }
  return o;
}

/** moby btrfs Init: a home on btrfs (else ErrPrerequisites), options `btrfs.min_space` and strata's `btrfs.native_changes`. */
export async function init(home: string, options: string[], opts: InitOpts = {}): Promise<Driver> {
  const o = parseOptions(options);
  const fsName = backingFsName(home);
  if (fsName !== 'btrfs') throw errPrerequisites(`${home} is on ${fsName}, not btrfs`);
  if (opts.mode === 'read-only') {
    mustBeExistingHome(NAME, home);
    const d = new BtrfsDriver(home, { ...o, native: false, readOnly: true }, false);
    return readOnlyDriver(d, { getRefused: null, layerDir: (id) => path.join(home, SUBVOLUMES, id) });
  }
  if (opts.mode === 'manage') mustBeExistingHome(NAME, home);
  else fs.mkdirSync(home, { recursive: true, mode: 0o710 });
  let bound = false;
  if (opts.mode !== 'manage' && !isMountPoint(home)) {
    mount(home, { kind: 'kernel', fstype: '', source: home, data: '', flags: MS_BIND });
    bound = true;
  }
  const d = new BtrfsDriver(home, { ...o, readOnly: false }, bound);
  try {
    removeStaleSendScratch(home);
    if (o.userDiskQuota) quotaEnable(home);
  } catch (e) {
    await d.cleanup();
    throw e;
  }
  return d;
}

export class BtrfsDriver implements Driver {
  readonly name = NAME;
  /** why the last changes() against a direct parent took the naive walk ('' while none has) */
  private lastFallback = '';

  constructor(readonly home: string, private readonly options: Options, private bound: boolean) {}

  private subvolumes(): string {
    return path.join(this.home, SUBVOLUMES);
  }

  private dir(id: string): string {
    return path.join(this.subvolumes(), validateId(id));
  }

  private quotaFile(id: string): string {
    return path.join(this.home, QUOTAS, validateId(id));
  }

  private mustExist(id: string, where: string): string {
    const dir = this.dir(id);
    if (!this.exists(id)) throw new LayerNotFoundError(NAME, id, where);
    return dir;
  }

  // ---- lifecycle -------------------------------------------------------------

  async createReadWrite(id: string, parent: string | null, opts?: CreateOpts): Promise<void> {
    await this.createLayer(id, parent, opts, true);
  }

  async create(id: string, parent: string | null, opts?: CreateOpts): Promise<void> {
    await this.createLayer(id, parent, opts, false);
  }

  /** moby Create (CreateReadWrite is the same call there); `size` is honoured on read-write layers only, as the graphdriver contract says. */
  private async createLayer(id: string, parentArg: string | null, opts: CreateOpts | undefined, rw: boolean): Promise<void> {
    let size: number | null = null;
    for (const [key, val] of Object.entries(opts?.storageOpt ?? {})) {
      if (key.toLowerCase() !== 'size') throw new InvalidParameterError(`unknown option ${key}`);
      if (!rw) throw new InvalidParameterError('--storage-opt size is only supported for ReadWrite Layers');
      size = ramInBytes(val);
    }
    if (size !== null) this.checkSize(size);
    const parent = parentOrNull(parentArg);
    const dir = this.dir(id);
    fs.mkdirSync(this.subvolumes(), { recursive: true, mode: 0o710 });
    if (parent === null) subvolCreate(this.subvolumes(), id);
    else subvolSnapshot(this.mustExist(parent, `parent of ${id}`), this.subvolumes(), id);
    try {
      if (size !== null) {
        quotaEnable(this.home);
        qgroupLimit(dir, size);
        fs.mkdirSync(path.join(this.home, QUOTAS), { recursive: true, mode: 0o700 });
        fs.writeFileSync(this.quotaFile(id), String(size), { mode: 0o644 });
      }
    } catch (e) {
      await this.remove(id).catch(() => undefined);
      throw e;
    }
  }

  /** moby setStorageSize's refusals. */
  private checkSize(size: number): void {
    if (size === 0) throw new InvalidParameterError(`btrfs: invalid storage size: ${humanSize(0)}`);
    if (this.options.minSpace > 0 && size < this.options.minSpace) {
      throw new InvalidParameterError(`btrfs: storage size cannot be less than ${humanSize(this.options.minSpace)}`);
    }
  }

  /** moby Remove: the quota file, the qgroup where qgroups are on, nested subvolumes, the subvolume. Unknown ids are no error. */
  async remove(id: string): Promise<void> {
    const dir = this.dir(id);
    if (!fs.lstatSync(dir, { throwIfNoEntry: false })) return;
    fs.rmSync(this.quotaFile(id), { force: true });
    if (!isSubvolume(dir)) {
      // a symlink (never followed: the ioctls would act on what it names) or a plain directory
      removeTree(dir);
      return;
    }
    const quota = quotaEnabled(this.home);
    const qgroup = quota ? subvolInfo(dir).id : null;
    subvolDestroyTree(this.subvolumes(), id);
    if (qgroup !== null) {
      try {
        qgroupDestroy(this.home, qgroup);
      } catch {
        // moby logs and goes on: the kernel may still hold the qgroup of a subvolume being cleaned
      }
    }
    removeTree(dir); // a plain directory left where a subvolume was (moby EnsureRemoveAll)
    if (quota) quotaRescanWait(this.home);
  }

  /** moby Get: the subvolume itself (nothing mounted); a recorded size is applied again (a home moved between filesystems). */
  async get(id: string): Promise<string> {
    const dir = this.mustExist(id, 'get');
    const size = this.recordedSize(id);
    if (size !== null && size >= this.options.minSpace && !this.options.readOnly) {
      quotaEnable(this.home);
      qgroupLimit(dir, size);
    }
    return dir;
  }

  private recordedSize(id: string): number | null {
    let text: string;
    try {
      text = fs.readFileSync(this.quotaFile(id), 'utf8');
    } catch {
      return null;
    }
    // moby strconv.ParseUint(s, 10, 64): decimal digits only, anything else is no size ("1e3", "0x10", "5\n" are not 1000, 16, 5)
    const n = /^[0-9]+$/.test(text) ? Number(text) : NaN;
    return Number.isSafeInteger(n) && n > 0 ? n : null;
  }

  async put(id: string): Promise<void> {
    validateId(id);
  }

  exists(id: string): boolean {
    return isLayerName(id) && isDirectory(path.join(this.subvolumes(), id));
  }

  /** moby's Status fields of the btrfs driver (Build/Library Version), in strata's terms, and which changes path runs. */
  status(): [string, string][] {
    const native = this.options.native ? 'true (BTRFS_IOC_SEND against the direct parent)' : 'false (btrfs.native_changes=false)';
    const out: [string, string][] = [
      ['Build Version', 'strata: btrfs ioctls through libc, no libbtrfs (send stream v1)'],
      ['Library Version', `kernel ${os.release()}`],
      ['Quotas', safe(() => String(quotaEnabled(this.home)))],
      ['Native Changes', native],
    ];
    if (this.lastFallback) out.push(['Native Changes (last fallback)', this.lastFallback]);
    return out;
  }

  /** moby GetMetadata returns nothing for btrfs; strata names the layer's tree, which migrations read. */
  metadata(id: string): Record<string, string> {
    return { SourceDir: this.mustExist(id, 'metadata') };
  }

  async cleanup(): Promise<void> {
    // umount2 itself, not mounter.unmount: that one detaches the loop device a
    // mount's source names, and a bind mount names the backing fs's device
    if (this.bound) {
      try {
        umount2(this.home, MNT_DETACH);
      } catch (e) {
        if (!(e instanceof SysError && e.code === 'EINVAL')) throw e; // unmounted meanwhile
      }
    }
    this.bound = false;
  }

  layers(): LayerInfo[] {
    let names: string[];
    try {
      names = fs.readdirSync(this.subvolumes());
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
    return names.filter((n) => this.exists(n)).sort().map((id) => ({ id }));
  }

  // ---- diff --------------------------------------------------------------------

  /**
   * The native changes of `id` against `parent`, or null when the naive walk
   * must answer (recorded for status(), with why). No parent: every path is
   * an Add, which only the walk can list.
   */
  private async native(id: string, parentArg: string | null): Promise<Change[] | null> {
    const parent = parentOrNull(parentArg);
    if (!this.options.native || parent === null) return null;
    const dir = this.mustExist(id, 'changes');
    const parentDir = this.mustExist(parent, 'changes');
    try {
      const why = this.whyNotNative(dir, parentDir, id, parent);
      if (why) throw new NativeRefusal(why);
      return await sendChanges(this.home, dir, parentDir);
    } catch (e) {
      this.lastFallback = `${id} against ${parent}: ${(e as Error).message}`;
      return null;
    }
  }

  private whyNotNative(dir: string, parentDir: string, id: string, parent: string): string | null {
    if (process.getuid?.() !== 0) return 'snapshots and BTRFS_IOC_SEND need CAP_SYS_ADMIN';
    const [c, p] = [subvolInfo(dir), subvolInfo(parentDir)];
    if (c.parentUuid !== p.uuid) return `${parent} is not the direct parent of ${id} (not the subvolume it is a snapshot of)`;
    for (const [d, name] of [[dir, id], [parentDir, parent]]) {
      const nested = childSubvolumes(d);
      if (nested.length) return `${name} holds nested subvolumes (${nested.join(', ')}), which a snapshot leaves out`;
    }
    return null;
  }

  diff(id: string, parent: string | null): Readable {
    const d = this;
    async function* chunks(): AsyncGenerator<Buffer> {
      const changes = await d.native(id, parent);
      if (changes === null) {
        yield* naiveDiff(d, id, parent) as AsyncIterable<Buffer>;
        return;
      }
      const tar = exportChanges(await d.get(id), changes);
      try {
        for await (const chunk of tar) yield chunk as Buffer;
      } finally {
        tar.destroy();
      }
    }
    return Readable.from(chunks(), { objectMode: false });
  }

  async changes(id: string, parent: string | null): Promise<Change[]> {
    return (await this.native(id, parent)) ?? naiveChanges(this, id, parent);
  }

  async applyDiff(id: string, parent: string | null, tar: TarInput): Promise<number> {
    return naiveApplyDiff(this, id, parent, tar);
  }

  async diffSize(id: string, parent: string | null): Promise<number> {
    const changes = await this.native(id, parent);
    if (changes === null) return naiveDiffSize(this, id, parent);
    return changesSize(await this.get(id), changes);
  }
}

function safe(f: () => string): string {
  try {
    return f();
  } catch (e) {
    return (e as Error).message;
  }
}

/** go-units HumanSize: decimal units, 4 significant digits. */
function humanSize(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return `${Number(n.toPrecision(4))}${units[i]}`;
}
