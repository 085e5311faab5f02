// Every mount a driver makes goes through here (containerd's mount/ package:
// drivers plan a spec, purely; this thin layer mounts it and tears it down).
//
//   kernel  mount(2) of a fstype with data and flags (overlay; kernel aufs is
//           the same spec), optionally from a cwd (overlay2's mountfrom case:
//           relative paths when the options would not fit in a page)
//   loop    a read-only loop mount of an image file (a rebuilt devicemapper
//           device)
//
// Unmounting needs no spec: what is mounted at a target is read back from
// mountinfo, so another process (a later `strata layer umount`, or reclaim()
// after a killed holder) tears it down the same way. LayerMounts joins this
// to the cross-process reference counts of drivers/refcount.ts.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { attachLoop, detachLoop } from '../sys/loop.ts';
import { mountAt } from '../sys/mountinfo.ts';
import * as sys from '../sys/syscalls.ts';
import { RefCounter } from './refcount.ts';

export type MountSpec =
  | { kind: 'kernel'; fstype: string; source: string; data: string; flags?: number; cwd?: string | null }
  | { kind: 'loop'; image: string; fstype: string; data: string };

/** The kernel overlay spec of a lower/upper/work option string. */
export function overlaySpec(data: string, cwd: string | null = null): MountSpec {
  return { kind: 'kernel', fstype: 'overlay', source: 'overlay', data, cwd };
}

/** Mount `spec` on `target` (created, mode 0700, if missing; removed again if the mount fails). */
export function mount(target: string, spec: MountSpec): void {
  const made = !fs.existsSync(target);
  if (made) fs.mkdirSync(target, { recursive: true, mode: 0o700 });
  try {
    if (spec.kind === 'kernel') kernelMount(target, spec);
    else loopMountReadOnly(target, spec);
  } catch (e) {
    if (made) rmdirQuiet(target);
    throw e;
  }
}

function kernelMount(target: string, spec: Extract<MountSpec, { kind: 'kernel' }>): void {
  if (!spec.cwd) return sys.mount(spec.source, target, spec.fstype, spec.flags ?? 0, spec.data);
  // relative paths: mount from `cwd` (moby re-execs a helper for this; our
  // mount is one synchronous call, so the cwd change cannot interleave)
  const back = process.cwd();
  process.chdir(spec.cwd);
  try {
    sys.mount(spec.source, target, spec.fstype, spec.flags ?? 0, spec.data);
  } finally {
    process.chdir(back);
  }
}

function loopMountReadOnly(target: string, spec: Extract<MountSpec, { kind: 'loop' }>): void {
  const device = attachLoop(spec.image, { readOnly: true });
  try {
    sys.mount(device, target, spec.fstype, sys.MS_RDONLY, spec.data);
  } catch (e) {
    detachLoop(device, spec.image);
    throw e;
  }
}

/**
 * Tear down what is mounted at `target`, whoever mounted it: MNT_DETACH
 * (moby Put), the loop device behind it detached, then `target` removed
 * unless `keepDir` (rmdir also drops the mount in other mount namespaces).
 * Not mounted is not an error.
 */
export function unmount(target: string, opts: { keepDir?: boolean } = {}): void {
  const m = mountAt(target);
  const loop = m && /^\/dev\/loop\d+$/.test(m.source) ? { device: m.source, image: backingFile(m.source) } : null;
  try {
    sys.umount2(target, sys.MNT_DETACH);
  } catch (e) {
    if (!(e instanceof sys.SysError && e.code === 'EINVAL')) throw e; // EINVAL: not mounted
  }
  if (loop?.image) detachLoop(loop.device, loop.image);
  if (!opts.keepDir) rmdirQuiet(target);
}

/** The image behind loop device `device`, from sysfs (null once it is detached). */
function backingFile(device: string): string | null {
  try {
    return fs.readFileSync(`/sys/block/${path.basename(device)}/loop/backing_file`, 'utf8').trim();
  } catch {
    return null;
  }
}

function rmdirQuiet(p: string): void {
  try {
    fs.rmdirSync(p);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

/**
 * A driver's mounts, counted across processes: the first get() of an id
 * mounts its spec, the last put() (from any process) unmounts it.
 */
export class LayerMounts {
  readonly refs: RefCounter;
  constructor(home: string) {
    this.refs = new RefCounter(home);
  }

  /** Take a reference on `id`, mounting `plan()` on `target` when nobody holds one. */
  async get(id: string, target: string, plan: () => MountSpec): Promise<void> {
    await this.refs.acquire(id, target, () => mount(target, plan()));
  }

  async persist(id: string, target: string): Promise<void> {
    await this.refs.persist(id, target);
  }

  async put(id: string, target: string): Promise<void> {
    await this.refs.release(id, target, () => unmount(target));
  }

  /** Drop dead holders' references, unmounting what no live one holds (driver init). */
  async reclaim(): Promise<void> {
    await this.refs.reclaim((_id, target) => unmount(target));
  }

  /** Unmount everything recorded (moby Cleanup). */
  async cleanup(): Promise<void> {
    await this.refs.releaseAll((_id, target) => unmount(target));
  }

  /** Layer removal: unmount `id` if mounted and forget its record. */
  async forget(id: string): Promise<void> {
    await this.refs.forget(id, (target) => unmount(target));
  }
}
