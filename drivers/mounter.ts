// Every mount a driver makes goes through here (containerd's mount/ package:
// drivers plan a spec, purely; this thin layer mounts it and tears it down).
//
//   kernel  mount(2) of a fstype with data and flags (overlay; kernel aufs is
//           the same spec), optionally from a cwd (overlay2's mountfrom case:
//           relative paths when the options would not fit in a page)
//   loop    a read-only loop mount of an image file (a rebuilt devicemapper
//           device)
//   fuse    a FUSE union helper process (fuse-overlayfs; aufs without the
//           module): started in the foreground as our own (detached) child,
//           returned from once its mount is in mountinfo,
//           ended with `fusermount3 -u`; its pid + start time recorded under
//           <run>/fuse so another process can release it and a mount whose
//           helper died (ENOTCONN) is found stale and cleaned
//
// Unmounting needs no spec: what is mounted at a target is read back from
// mountinfo, so another process (a later `strata layer umount`, or reclaim()
// after a killed holder) tears it down the same way. LayerMounts joins this
// to the cross-process reference counts of drivers/refcount.ts.
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { findTool } from '../sys/find-tool.ts';
import { attachLoop, detachLoop } from '../sys/loop.ts';
import { mountAt, parseMountinfo, readMountinfo, type MountInfo } from '../sys/mountinfo.ts';
import { listSorted } from '../sys/read-only-files.ts';
import * as sys from '../sys/syscalls.ts';
import { isAlive, tagOf, type HolderTag } from './holder.ts';
import { RefCounter } from './refcount.ts';

export type MountSpec =
  | { kind: 'kernel'; fstype: string; source: string; data: string; flags?: number; cwd?: string | null; appends?: string[] }
  | { kind: 'loop'; image: string; fstype: string; data: string }
  | { kind: 'fuse'; program: string; options: string };

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
    else if (spec.kind === 'loop') loopMountReadOnly(target, spec);
    else fuseMount(target, spec);
  } catch (e) {
    if (made) rmdirQuiet(target);
    throw e;
  }
}

function kernelMount(target: string, spec: Extract<MountSpec, { kind: 'kernel' }>): void {
  if (spec.appends?.length) return appendingMount(target, spec, spec.appends);
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

/** aufs past a page: the first mount, then one MS_REMOUNT per run of appended branches (torn down if one fails). */
function appendingMount(target: string, spec: Extract<MountSpec, { kind: 'kernel' }>, appends: string[]): void {
  sys.mount(spec.source, target, spec.fstype, spec.flags ?? 0, spec.data);
  try {
    for (const data of appends) sys.mount(spec.source, target, spec.fstype, sys.MS_REMOUNT, data);
  } catch (e) {
    sys.umount2(target, sys.MNT_DETACH);
    throw e;
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

// ---- FUSE helpers ------------------------------------------------------------

/** Where the helper of a FUSE mount at `target` is recorded. */
function helperRecord(target: string): string {
  const run = process.env.STRATA_FUSE_DIR ?? '/run/strata/fuse';
  return path.join(run, createHash('sha256').update(path.resolve(target)).digest('hex').slice(0, 24));
}

/** What a helper record names: the helper, and the mount it serves (mountinfo id and st_dev). */
interface HelperRecord {
  target: string;
  helper: HolderTag;
  mount: { id: number; dev: string };
}

/**
 * The recorded helper of the FUSE mount now at `target` (pid + start time),
 * if any. A record is about one mount: when what is at `target` is not the
 * mount it names (by mountinfo id and dev; both are reused, so isStaleFuse
 * also asks the connection), it names nothing.
 */
export function fuseHelper(target: string, m: MountInfo | undefined = mountAt(target)): HolderTag | null {
  let rec: HelperRecord;
  try {
    rec = JSON.parse(fs.readFileSync(helperRecord(target), 'utf8')) as HelperRecord;
  } catch {
    return null;
  }
  if (!m || rec.mount?.id !== m.id || rec.mount?.dev !== m.dev || typeof rec.helper !== 'string') return null;
  return argvNames(rec.helper, [m.mountPoint, path.resolve(target)]) ? rec.helper : null;
}

/**
 * The process of `tag`, if alive, has `target` as an argument, as the helper
 * mounting it does (a record forged or gone wrong naming PID 1 or any other
 * process is not waited on); a dead one is taken at its record's word (stale).
 */
function argvNames(tag: HolderTag, targets: string[]): boolean {
  if (!isAlive(tag)) return true;
  try {
    const argv = fs.readFileSync(`/proc/${tag.split('.')[0]}/cmdline`, 'utf8').split('\0');
    return targets.some((t) => argv.includes(t));
  } catch {
    return true; // gone meanwhile: as dead
  }
}

/** How long a FUSE helper may take to make its mount. */
const FUSE_MOUNT_TIMEOUT_MS = 30_000;

/**
 * Start the helper in the foreground (-f) as our own child, detached (its own
 * session: it serves the mount past our exit, for other processes to share
 * and end), so its pid is known, not searched for. Returned from once its
 * mount is in mountinfo: poll(2) wakes on each change of the mount table
 * (POLLPRI on /proc/self/mountinfo) and on the child's exit (its pidfd).
 */
function fuseMount(target: string, spec: Extract<MountSpec, { kind: 'fuse' }>): void {
  const program = findTool(spec.program);
  if (!program) throw new Error(`${spec.program} is not installed`);
  const rec = helperRecord(target);
  fs.mkdirSync(path.dirname(rec), { recursive: true, mode: 0o700 });
  pruneHelperRecords(path.dirname(rec));
  const errFile = `${rec}.stderr`;
  const errFd = fs.openSync(errFile, 'w', 0o600);
  let child: ReturnType<typeof spawn>;
  try {
    child = spawn(program, ['-f', '-o', spec.options, path.resolve(target)], { detached: true, stdio: ['ignore', 'ignore', errFd] });
  } finally {
    fs.closeSync(errFd);
  }
  child.unref();
  const pid = child.pid;
  if (pid === undefined) throw new Error(`${spec.program} ${target}: could not be started`);
  try {
    const m = awaitFuseMount(target, pid, () => exitMessage(errFile, spec.program, target));
    const helper = tagOf(pid);
    if (!helper) {
      fusermountU(target); // mounted, then gone: nothing serves it
      throw new Error(exitMessage(errFile, spec.program, target));
    }
    const record: HelperRecord = { target: path.resolve(target), helper, mount: { id: m.id, dev: m.dev } };
    fs.writeFileSync(rec + '.tmp', JSON.stringify(record) + '\n');
    fs.renameSync(rec + '.tmp', rec);
  } finally {
    fs.rmSync(errFile, { force: true });
  }
}

/**
 * Remove the records that name nothing any more: their helper is dead and no
 * mount with their id and dev is at their target. A mount detached behind our
 * back (umount -l by hand or by a test's teardown, a process killed between
 * unmount and removal) leaves its record; pruning at each new FUSE mount keeps
 * the run dir to the mounts that exist. A live helper's record is kept even
 * where this namespace does not see its mount (it may serve another's).
 */
function pruneHelperRecords(run: string): void {
  const mounts = readMountinfo();
  for (const name of listSorted(run)) {
    if (name.includes('.')) continue; // .tmp / .stderr: a mount being made
    const file = path.join(run, name);
    let rec: HelperRecord;
    try {
      rec = JSON.parse(fs.readFileSync(file, 'utf8')) as HelperRecord;
    } catch {
      continue; // unreadable: not ours to judge
    }
    if (typeof rec.helper !== 'string' || typeof rec.target !== 'string' || isAlive(rec.helper)) continue;
    const m = mountAt(rec.target, mounts);
    if (m?.id === rec.mount?.id && m?.dev === rec.mount?.dev) continue; // its stale mount: isStaleFuse needs it
    fs.rmSync(file, { force: true });
  }
}

/** The FUSE mount `pid` makes at `target`, once mountinfo has it; its exit (or the timeout, which ends it) is an error. */
function awaitFuseMount(target: string, pid: number, exitMessage: () => string): MountInfo {
  const pidfd = sys.pidfdOpen(pid);
  const mi = fs.openSync('/proc/self/mountinfo', 'r');
  try {
    const deadline = Date.now() + FUSE_MOUNT_TIMEOUT_MS;
    for (;;) {
      // reading the table also re-arms its POLLPRI
      const m = mountAt(target, parseMountinfo(readWhole(mi)));
      if (m?.fstype.startsWith('fuse')) return m;
      const left = deadline - Date.now();
      if (pidfd === null) throw new Error(exitMessage());
      if (left <= 0) {
        process.kill(pid, 'SIGTERM');
        throw new Error(`${path.basename(target)}: the FUSE helper (pid ${pid}) made no mount at ${target} in ${FUSE_MOUNT_TIMEOUT_MS / 1000} s`);
      }
      const [exited] = sys.poll([{ fd: pidfd, events: sys.POLLIN }, { fd: mi, events: sys.POLLPRI }], left);
      if (exited) {
        const again = mountAt(target, parseMountinfo(readWhole(mi)));
        if (again?.fstype.startsWith('fuse')) return again; // mounted, then exited: the caller finds no helper
        throw new Error(exitMessage());
      }
    }
  } finally {
    if (pidfd !== null) fs.closeSync(pidfd);
    fs.closeSync(mi);
  }
}

/** What a helper that exited said on stderr. */
function exitMessage(errFile: string, program: string, target: string): string {
  let said = '';
  try {
    said = fs.readFileSync(errFile, 'utf8').split('\n').map((l) => l.trim()).filter(Boolean).join('; '); // one line
  } catch {
    // nothing written
  }
  return `${program} ${target}: ${said || 'exited without mounting'}`;
}

/** The whole of a /proc file, read from its start through `fd`. */
function readWhole(fd: number): string {
  const chunks: Buffer[] = [];
  const buf = Buffer.alloc(64 * 1024);
  let pos = 0;
  for (;;) {
    const n = fs.readSync(fd, buf, 0, buf.length, pos);
    if (n === 0) break;
    chunks.push(Buffer.from(buf.subarray(0, n)));
    pos += n;
  }
  return Buffer.concat(chunks).toString('utf8');
}

function fusermountU(target: string): void {
  execFileSync(findTool('fusermount3') ?? 'fusermount3', ['-u', target], { stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * Is the mount at `target` a FUSE mount whose recorded helper is dead and
 * whose connection is (every access fails ENOTCONN)? Both: mount ids and
 * devs are reused at once after an unmount, so a record left by a killed
 * helper can seem to name a live mount made at the same path since — which
 * is someone else's, and must not be unmounted.
 */
export function isStaleFuse(target: string): boolean {
  const m = mountAt(target);
  if (!m?.fstype.startsWith('fuse')) return false;
  const helper = fuseHelper(target, m);
  return helper !== null && !isAlive(helper) && connectionGone(target);
}

function connectionGone(target: string): boolean {
  try {
    fs.statSync(target);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOTCONN';
  }
}

/**
 * End the FUSE connection behind `m` if it outlived our unmount: a mount
 * namespace made while it was mounted (a container, `unshare --mount`) holds
 * a copy, and the helper goes on serving that copy — writing into the layer
 * after its last put. Aborting it through fusectl (its connections are named
 * by the superblock's dev) ends the helper; a connection already gone is
 * left alone.
 */
function abortConnection(m: MountInfo): void {
  const [maj, min] = m.dev.split(':').map(Number);
  withFusectl((dir) => {
    const abort = path.join(dir, String(maj * 2 ** 20 + min), 'abort');
    try {
      fs.writeFileSync(abort, '1');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  });
}

/** Run `fn` on a fusectl mount: the system's where mounted, else one of our own, mounted for the call. */
function withFusectl(fn: (dir: string) => void): void {
  const there = readMountinfo().find((x) => x.fstype === 'fusectl');
  if (there) return fn(there.mountPoint);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-fusectl-'));
  try {
    sys.mount('fusectl', dir, 'fusectl', sys.MS_NOSUID | sys.MS_NODEV, '');
    try {
      fn(dir);
    } finally {
      sys.umount2(dir, sys.MNT_DETACH);
    }
  } finally {
    fs.rmdirSync(dir);
  }
}

/** End a FUSE mount: `fusermount3 -u` (a dead helper's mount too), then wait for its helper to exit. */
function fuseUnmount(target: string, m: MountInfo): void {
  const helper = fuseHelper(target, m);
  try {
    fusermountU(target);
  } catch {
    // fusermount3 refuses what it cannot unmount (not in its mtab view): the kernel's way
    sys.umount2(target, sys.MNT_DETACH);
  }
  abortConnection(m);
  if (helper && isAlive(helper) && !sys.waitForExit(Number(helper.split('.')[0]), 10_000)) {
    throw new Error(`the FUSE helper of ${target} (pid ${helper.split('.')[0]}) did not exit after its unmount`);
  }
  fs.rmSync(helperRecord(target), { force: true });
}

/**
 * Tear down what is mounted at `target`, whoever mounted it: MNT_DETACH
 * (moby Put), the loop device behind it detached, then `target` removed
 * unless `keepDir` (rmdir also drops the mount in other mount namespaces).
 * Not mounted is not an error.
 */
export function unmount(target: string, opts: { keepDir?: boolean } = {}): void {
  const m = mountAt(target);
  if (m?.fstype.startsWith('fuse')) fuseUnmount(target, m);
  else if (m) {
    const loop = /^\/dev\/loop\d+$/.test(m.source) ? { device: m.source, image: backingFile(m.source) } : null;
    try {
      sys.umount2(target, sys.MNT_DETACH);
    } catch (e) {
      if (!(e instanceof sys.SysError && e.code === 'EINVAL')) throw e; // EINVAL: unmounted meanwhile
    }
    if (loop?.image) detachLoop(loop.device, loop.image);
  }
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
export interface LayerMountsOpts {
  /** keep the mount point dirs at unmount (aufs's mnt/<id> live as long as the layer) */
  keepDirs?: boolean;
  /** run after the last reference's unmount of `id` (put, reclaim, cleanup; not forget) */
  afterUnmount?: (id: string, target: string) => void;
}

export class LayerMounts {
  readonly refs: RefCounter;
  private readonly opts: LayerMountsOpts;
  constructor(home: string, opts: LayerMountsOpts = {}) {
    this.refs = new RefCounter(home);
    this.opts = opts;
  }

  private unmountLast(id: string, target: string, keepDir = this.opts.keepDirs): void {
    unmount(target, { keepDir });
    this.opts.afterUnmount?.(id, target);
  }

  /** Take a reference on `id`, mounting `plan()` on `target` when nobody holds one. */
  async get(id: string, target: string, plan: () => MountSpec): Promise<void> {
    await this.refs.acquire(id, target, () => mount(target, plan()), () => {
      if (isStaleFuse(target)) this.unmountLast(id, target, true); // its helper was killed: mount afresh
    });
  }

  async persist(id: string, target: string): Promise<void> {
    await this.refs.persist(id, target);
  }

  async put(id: string, target: string): Promise<void> {
    await this.refs.release(id, target, () => this.unmountLast(id, target));
  }

  /** Drop dead holders' references, unmounting what no live one holds (driver init). */
  async reclaim(): Promise<void> {
    await this.refs.reclaim((id, target) => this.unmountLast(id, target));
  }

  /** Unmount everything recorded (moby Cleanup). */
  async cleanup(): Promise<void> {
    await this.refs.releaseAll((id, target) => this.unmountLast(id, target));
  }

  /** Run `fn` for `id` under its lock while nothing is mounted at `target` (work its last unmount left undone). */
  async whileUnmounted(id: string, target: string, fn: () => void): Promise<void> {
    await this.refs.whileUnmounted(id, target, fn);
  }

  /** Layer removal: unmount `id` if mounted and forget its record. */
  async forget(id: string): Promise<void> {
    await this.refs.forget(id, (target) => unmount(target, { keepDir: this.opts.keepDirs }));
  }
}
