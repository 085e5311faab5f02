// Declarative layer content for the conformance suite, after containerd's
// fstest appliers: a layer is a list of operations, applied once to a
// mounted driver layer and once to a plain "flat" directory that holds the
// expected result of the whole chain.
//
// Every operation that creates or rewrites something sets its mtime (and
// atime) to the layer's stamp, so both trees get identical times and can be
// compared to the nanosecond. Stamps are wall-clock nanoseconds, strictly
// increasing and never on a whole second (a whole-second mtime compares
// equal to any time in that second under moby's rule, which would hide a
// rewrite from a naive diff for reasons unrelated to the driver).
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as sys from '../../sys/syscalls.ts';

export interface Applier {
  /** what it does, for failure messages */
  readonly what: string;
  /** apply below `root` with mtimes = `stamp` (ns since the epoch) */
  apply(root: string, stamp: bigint): void;
}

let lastStamp = 0n;
/** The next layer stamp (see the file comment). */
export function nextStamp(): bigint {
  let now = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
  if (now <= lastStamp) now = lastStamp + 1n;
  if (now % 1_000_000_000n === 0n) now += 1n;
  lastStamp = now;
  return now;
}

/** `p` below `root`; a Buffer `p` is a raw byte name (non-UTF-8 names) relative to the root. */
function at(root: string, p: string): string;
function at(root: string, p: string | Buffer): string | Buffer;
function at(root: string, p: string | Buffer): string | Buffer {
  if (Buffer.isBuffer(p)) return Buffer.concat([Buffer.from(root + '/'), p]);
  const rel = p.replace(/^\/+/, '');
  return rel === '' ? root : path.join(root, rel);
}

function show(p: string | Buffer): string {
  return Buffer.isBuffer(p) ? JSON.stringify(p.toString('latin1')) : p;
}

function touch(p: string | Buffer, stamp: bigint): void {
  sys.lutimensNs(p, stamp, stamp);
}

function op(what: string, fn: (root: string, stamp: bigint) => void): Applier {
  return { what, apply: fn };
}

/** A file with exactly `content` and `mode` (perm bits incl. setuid/setgid/sticky), replacing what was there. */
export function createFile(p: string | Buffer, content: string | Buffer, mode: number): Applier {
  return op(`createFile ${show(p)}`, (root, stamp) => {
    const abs = at(root, p);
    fs.rmSync(abs, { force: true }); // a new inode, as a fresh write after unlink
    fs.writeFileSync(abs, content, { mode: mode & 0o777 });
    fs.chmodSync(abs, mode);
    touch(abs, stamp);
  });
}

/** Rewrite the content of an existing file in place (same inode; mode kept). */
export function writeFile(p: string, content: string | Buffer): Applier {
  return op(`writeFile ${p}`, (root, stamp) => {
    const abs = at(root, p);
    fs.writeFileSync(abs, content);
    touch(abs, stamp);
  });
}

/** mkdir -p, then chmod to exactly `mode` (fstest.CreateDir). */
export function mkdir(p: string, mode: number): Applier {
  return op(`mkdir ${p}`, (root, stamp) => {
    const abs = at(root, p);
    fs.mkdirSync(abs, { recursive: true, mode: mode & 0o777 });
    fs.chmodSync(abs, mode);
    touch(abs, stamp);
  });
}

/** rm -rf (a missing path is fine). */
export function remove(p: string): Applier {
  return op(`remove ${p}`, (root) => fs.rmSync(at(root, p), { recursive: true, force: true }));
}

/** rename(2) */
export function rename(from: string, to: string): Applier {
  return op(`rename ${from} ${to}`, (root) => fs.renameSync(at(root, from), at(root, to)));
}

/** lchown */
export function chown(p: string, uid: number, gid: number): Applier {
  return op(`chown ${p} ${uid}:${gid}`, (root) => fs.lchownSync(at(root, p), uid, gid));
}

/** chmod (not for symlinks) */
export function chmod(p: string, mode: number): Applier {
  return op(`chmod ${p} ${mode.toString(8)}`, (root) => fs.chmodSync(at(root, p), mode));
}

/** A symlink `p` → `target` (target taken literally). */
export function symlink(target: string, p: string): Applier {
  return op(`symlink ${p} -> ${target}`, (root, stamp) => {
    const abs = at(root, p);
    fs.symlinkSync(target, abs);
    touch(abs, stamp);
  });
}

/** A hardlink `p` to the existing `existing`. */
export function link(existing: string, p: string): Applier {
  return op(`link ${p} => ${existing}`, (root) => fs.linkSync(at(root, existing), at(root, p)));
}

/** A fifo. */
export function mkfifo(p: string, mode: number): Applier {
  return op(`mkfifo ${p}`, (root, stamp) => {
    const abs = at(root, p);
    sys.mknod(abs, sys.S_IFIFO | (mode & 0o777), 0);
    fs.chmodSync(abs, mode);
    touch(abs, stamp);
  });
}

/** A character or block device. */
export function mknod(p: string, type: 'char' | 'block', major: number, minor: number, mode: number): Applier {
  return op(`mknod ${p} ${type} ${major}:${minor}`, (root, stamp) => {
    const abs = at(root, p);
    sys.mknod(abs, (type === 'char' ? sys.S_IFCHR : sys.S_IFBLK) | (mode & 0o777), sys.makedev(major, minor));
    fs.chmodSync(abs, mode);
    touch(abs, stamp);
  });
}

/** An extended attribute (name with namespace, e.g. `user.foo`, `security.capability`). */
export function setXattr(p: string, name: string, value: string | Buffer): Applier {
  return op(`setxattr ${p} ${name}`, (root) => sys.lsetxattr(at(root, p), name, Buffer.from(value)));
}

/** Several operations as one applier, in order. */
export function apply(...ops: Applier[]): Applier {
  return op(ops.map((o) => o.what).join('; '), (root, stamp) => {
    for (const o of ops) o.apply(root, stamp);
  });
}
