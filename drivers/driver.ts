// The graphdriver contract: one interface every storage driver implements,
// the error family auto-selection relies on, and the storage-option parsing
// drivers share. Semantics follow moby's daemon/graphdriver (ProtoDriver +
// DiffDriver); where strata differs it says so here.
//
// The model
// ---------
// A driver stores *layers*, each named by an opaque id chosen by the caller
// (moby's layer store uses a random 64-hex "cache-id" for image layers,
// "<mount-id>" and "<mount-id>-init" for a container's layers). A layer is
// created empty or as a child of a parent layer; a child starts out with
// exactly the parent's content and from then on changes independently:
// nothing written into a child is ever visible in its parent.
//
//   create(id, parent)          image layer (read-only use by convention)
//   createReadWrite(id, parent) container layer; the only place `size` quota
//                               storage options are honoured
//   get(id) → path              mount (if the driver mounts) and return the
//                               directory that shows the layer's full tree:
//                               its own changes over all its ancestors
//   put(id)                     release what get() took
//
// get/put are reference counted: n get() calls need n put() calls before a
// mounting driver unmounts. Drivers that mount keep those counts across
// processes (drivers/refcount.ts), so two strata processes can use the same
// layer at once. Callers must put() every successful get(), also on error.
//
// Worked example (what moby's layer store does for `docker run`):
//
//   await d.create(L1, null);              // base image layer
//   await d.applyDiff(L1, null, tar1);     // size = Σ tar header sizes
//   await d.create(L2, L1);                // next image layer
//   await d.applyDiff(L2, L1, tar2);
//   await d.createReadWrite(`${C}-init`, L2);   // init layer (/etc/hosts …)
//   await d.createReadWrite(C, `${C}-init`);    // container layer
//   const rootfs = await d.get(C);         // run the container in rootfs
//   …
//   await d.put(C);
//   await d.changes(C, `${C}-init`);       // `docker diff`
//   d.diff(C, `${C}-init`);                // `docker commit` tar
//
// Diff family (moby DiffDriver)
// -----------------------------
// diff/changes/applyDiff/diffSize compare a layer with a parent layer, which
// may be any ancestor or '' / null for "nothing" (then every path is an Add
// and diff() is a tar of the whole tree). Drivers with a native fast path
// (aufs, overlay2) take it only when `parent` is the layer's direct parent and
// otherwise fall back to the naive implementation (drivers/naive.ts), which
// mounts both layers and compares the trees.
// - diff() tars are uncompressed and always carry whiteouts in the aufs/tar
//   form (`.wh.<name>`, `<dir>/.wh..wh..opq`), whatever the on-disk format.
// - applyDiff() takes such a tar and returns the layer size: the sum of tar
//   header sizes on the naive path; the native paths return the size of the
//   layer's own directory (moby's directory.Size).
// - diffSize() is the byte size of the changes: Σ lstat sizes of added or
//   modified non-directories, each hardlinked inode once.
//
// Errors
// ------
// NotSupportedError (and only it) means "this driver cannot run here": auto
// selection skips such drivers silently. Any other error from a driver's init
// aborts selection. Messages are moby's, for log compatibility.
import { statSync } from 'node:fs';
import { Readable } from 'node:stream';
import type { Change } from '../archive/types.ts';
import { isLayerName } from './layout.ts';

/** moby CreateOpts. */
export interface CreateOpts {
  /** SELinux mount label; drivers here accept and ignore it (no SELinux support). */
  mountLabel?: string;
  /** `--storage-opt` key/values, e.g. `{ size: '50M' }`. */
  storageOpt?: Record<string, string>;
}

/** What a tar argument may be: a Node stream, any async iterable of bytes, or the bytes. */
export type TarInput = NodeJS.ReadableStream | AsyncIterable<Uint8Array> | Uint8Array;

/** A TarInput as applyLayer takes it. */
export function tarSource(tar: TarInput): NodeJS.ReadableStream | AsyncIterable<Uint8Array> {
  return tar instanceof Uint8Array ? Readable.from([tar]) : tar;
}

/** A layer known to the driver, for listings (`strata layer ls`). */
export interface LayerInfo {
  id: string;
  /** the parent id; null: recorded as having none; undefined: the driver does not record parents (vfs, btrfs) */
  parent?: string | null;
}

/** moby ProtoDriver: the lifecycle half every driver implements itself. */
export interface ProtoDriver {
  /** driver name, e.g. "overlay2" (moby String()) */
  readonly name: string;
  /** The driver's home directory, `<root>/<name>`. */
  readonly home: string;
  /** New empty (or parent-copy) layer meant to be a container's writable layer; `size` storage option honoured where supported. */
  createReadWrite(id: string, parent: string | null, opts?: CreateOpts): Promise<void>;
  /** New image layer; storage options are refused on most drivers. */
  create(id: string, parent: string | null, opts?: CreateOpts): Promise<void>;
  /** Delete the layer and everything the driver keeps for it. Removing an unknown id is not an error. */
  remove(id: string): Promise<void>;
  /** Mount (ref-counted) and return the absolute path of the layer's full tree. */
  get(id: string, mountLabel?: string): Promise<string>;
  /** Release one get(); a mounting driver unmounts when the last reference goes. */
  put(id: string): Promise<void>;
  /**
   * Turn one get() reference of this process on `id` into a persistent one,
   * which outlives the process and only a put() (from any process) releases:
   * what `strata layer mount` leaves for a later `layer umount`. References
   * not persisted die with their process (drivers/refcount.ts). Optional:
   * drivers that do not mount have nothing to keep.
   */
  persist?(id: string): Promise<void>;
  /** True when the driver has a layer with this id. */
  exists(id: string): boolean;
  /** Key/value pairs for `docker info` (moby Status). */
  status(): [string, string][];
  /** Key/values for `docker inspect` GraphDriver.Data (moby GetMetadata). */
  metadata(id: string): Record<string, string>;
  /** Shutdown: unmount everything this driver mounted. */
  cleanup(): Promise<void>;
  /** Every layer id the driver holds (containers/storage ListLayers); optional. */
  layers?(): LayerInfo[];
}

/** moby DiffDriver: the four diff methods (naive or native). */
export interface DiffDriver {
  /** Uncompressed tar of the changes of `id` relative to `parent` ('' / null = the whole tree), aufs-form whiteouts. Errors arrive as stream errors. */
  diff(id: string, parent: string | null): Readable;
  /** Changes of `id` relative to `parent`, sorted by path then kind; no parent → all Adds. */
  changes(id: string, parent: string | null): Promise<Change[]>;
  /** Extract an uncompressed layer tar into `id`; returns the layer size (see above). */
  applyDiff(id: string, parent: string | null, tar: TarInput): Promise<number>;
  /** Byte size of the changes of `id` relative to `parent`. */
  diffSize(id: string, parent: string | null): Promise<number>;
}

/** moby Driver = ProtoDriver + DiffDriver. */
export interface Driver extends ProtoDriver, DiffDriver {}

/**
 * How a driver home is opened.
 * - `use` (the default; moby's only way): the driver may create the home, and
 *   probes the kernel and filesystem at init, so that a driver that cannot run
 *   here refuses at once (auto-selection relies on it).
 * - `manage`: an existing home, for recovery and bookkeeping as much as for
 *   use. Init creates nothing and probes nothing; each probe runs when an
 *   operation first needs its feature (create, get, the native diff paths)
 *   and that operation fails with the probe's reason. remove, put, layers,
 *   exists and metadata need no probe, so they work on a home whose probes
 *   fail, e.g. on a full disk.
 * In both modes init removes probe scratch dirs and reclaims the mount
 * references that killed processes left (drivers/scratch.ts, refcount.ts).
 * - `read-only` (the offline readers: inspect, migrate's source side): an
 *   existing home, and nothing written into it. Init probes nothing, creates
 *   nothing and reclaims nothing; create, createReadWrite, remove, applyDiff
 *   and persist are refused with one line (read-only.ts). get() reads where
 *   that needs no write (vfs); a driver whose mount would write into the home
 *   (merged/ dirs) refuses it, and compares layers only where it needs no
 *   mount (overlay2: its native diff against the direct parent).
 */
export type OpenMode = 'use' | 'manage' | 'read-only';

export interface InitOpts {
  mode?: OpenMode;
}

/** moby InitFunc: `home` is always `<root>/<name>`; `options` are the driver's `key=value` options. */
export type InitFunc = (home: string, options: string[], opts?: InitOpts) => Promise<Driver>;

/** `manage` and `read-only` mode's precondition: the home exists (nothing is created to manage or read). */
export function mustBeExistingHome(driver: string, home: string): void {
  let st: ReturnType<typeof statSync> | undefined;
  try {
    st = statSync(home);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (!st?.isDirectory()) throw new Error(`${driver}: ${home}: no such driver home`);
}

// ---- errors ----------------------------------------------------------------

export const MSG_NOT_SUPPORTED = 'driver not supported';
export const MSG_PREREQUISITES = 'prerequisites for driver not satisfied (wrong filesystem?)';
export const MSG_INCOMPATIBLE_FS = 'backing file system is unsupported for this graph driver';
export const MSG_QUOTA_NOT_SUPPORTED = 'Filesystem does not support, or has not enabled quotas';

/**
 * moby NotSupportedError: the driver cannot work on this host or filesystem.
 * Auto-selection skips drivers that throw it; any other error is fatal.
 * `detail` (not part of the message) says why, for `strata drivers`.
 */
export class NotSupportedError extends Error {
  readonly detail: string | undefined;
  constructor(message: string = MSG_NOT_SUPPORTED, detail?: string) {
    super(message);
    this.name = 'NotSupportedError';
    this.detail = detail;
  }
}

/** moby ErrNotSupported: `driver not supported`. */
export const errNotSupported = (detail?: string) => new NotSupportedError(MSG_NOT_SUPPORTED, detail);
/** moby ErrPrerequisites: wrong backing filesystem (btrfs, zfs). */
export const errPrerequisites = (detail?: string) => new NotSupportedError(MSG_PREREQUISITES, detail);
/** moby ErrIncompatibleFS. */
export const errIncompatibleFS = (detail?: string) => new NotSupportedError(MSG_INCOMPATIBLE_FS, detail);

/** moby overlayutils.ErrDTypeNotSupported: `fs` is the backing filesystem name (xfs, extfs, …). */
export function errDTypeNotSupported(driver: string, fs: string): NotSupportedError {
  let msg = `${driver}: the backing ${fs} filesystem is formatted without d_type support, which leads to incorrect behavior.`;
  if (fs === 'xfs') msg += ' Reformat the filesystem with ftype=1 to enable d_type support.';
  else if (fs === 'extfs') msg += ' Reformat the filesystem (or use tune2fs) with -O filetype flag to enable d_type support.';
  msg += ' Backing filesystems without d_type support are not supported.';
  return new NotSupportedError(msg);
}

/** moby IsDriverNotSupported. */
export function isDriverNotSupported(err: unknown): err is NotSupportedError {
  return err instanceof NotSupportedError;
}

/** moby quota.ErrQuotaNotSupported (errdefs NotImplemented). `detail` says what is missing. */
export class QuotaNotSupportedError extends Error {
  readonly detail: string | undefined;
  constructor(detail?: string) {
    super(MSG_QUOTA_NOT_SUPPORTED);
    this.name = 'QuotaNotSupportedError';
    this.detail = detail;
  }
}

/** moby errdefs.InvalidParameter: a bad option or argument. */
export class InvalidParameterError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidParameterError';
  }
}

/** A layer id the driver does not have. */
export class LayerNotFoundError extends Error {
  readonly id: string;
  constructor(driver: string, id: string, where: string) {
    super(`${driver}: layer ${id} does not exist (${where})`);
    this.name = 'LayerNotFoundError';
    this.id = id;
  }
}

// ---- ids and options ---------------------------------------------------------

/**
 * Layer ids become directory names: refuse anything that is not one plain,
 * non-empty path component (moby silently takes filepath.Base; we refuse).
 */
export function validateId(id: string): string {
  if (!isLayerName(id)) {
    throw new InvalidParameterError(`invalid layer id ${JSON.stringify(id)}: must be one path component without '/'`);
  }
  return id;
}

/** `null`, `undefined` and '' all mean "no parent". */
export function parentOrNull(parent: string | null | undefined): string | null {
  return parent === undefined || parent === null || parent === '' ? null : parent;
}

/** moby graphdriver.ParseStorageOptKeyValue: `key=value`, key lower-cased, both trimmed. */
export function parseStorageOptKeyValue(opt: string): [string, string] {
  const i = opt.indexOf('=');
  if (i < 0) throw new InvalidParameterError(`unable to parse storage-opt: ${opt}`);
  return [opt.slice(0, i).trim().toLowerCase(), opt.slice(i + 1).trim()];
}

const KiB = 1024;
const binaryMultiples: Record<string, number> = { k: KiB, m: KiB ** 2, g: KiB ** 3, t: KiB ** 4, p: KiB ** 5 };

/**
 * go-units RAMInBytes: a size with an optional binary suffix (`50M`, `1.5g`,
 * `10 KiB`, `512b`); suffixes are case-insensitive and mean powers of 1024.
 * Errors are go-units': `invalid size: '<s>'`, `invalid suffix: '<sfx>'`.
 */
export function ramInBytes(size: string): number {
  // go-units parseSize: split at the last digit, '.' or space
  let sep = -1;
  for (let i = size.length - 1; i >= 0; i--) {
    if ('0123456789. '.includes(size[i])) { sep = i; break; }
  }
  if (sep === -1) throw new InvalidParameterError(`invalid size: '${size}'`);
  const num = size[sep] === ' ' ? size.slice(0, sep) : size.slice(0, sep + 1);
  let sfx = size.slice(sep + 1);
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(num)) {
    throw new InvalidParameterError(`strconv.ParseFloat: parsing ${JSON.stringify(num)}: invalid syntax`);
  }
  let n = Number(num);
  if (n < 0) throw new InvalidParameterError(`invalid size: '${size}'`);
  if (sfx.length === 0) return Math.trunc(n);
  const bad = () => new InvalidParameterError(`invalid suffix: '${sfx}'`);
  if (sfx.length > 3) throw bad();
  sfx = sfx.toLowerCase();
  if (sfx[0] === 'b') {
    if (sfx.length > 1) throw bad();
    return Math.trunc(n);
  }
  const mul = binaryMultiples[sfx[0]];
  if (mul === undefined) throw bad();
  n *= mul;
  if ((sfx.length === 2 && sfx[1] !== 'b') || (sfx.length === 3 && sfx.slice(1) !== 'ib')) throw bad();
  return Math.trunc(n);
}
