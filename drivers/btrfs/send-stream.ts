// A parser for the btrfs send stream, version 1 (btrfs-progs
// Documentation/dev/dev-send-stream.rst, kernel-shared/send.h), reduced to
// what a change list needs: which paths the stream touches.
//
//   stream  "btrfs-stream\0" le32 version, then commands
//   command le32 len, le16 cmd, le32 crc, then `len` bytes of attributes
//   attr    le16 type, le16 len, `len` bytes
//
// Paths are relative to the subvolume root and name the receiver's tree as
// it is at that command: a rename's orphan names (`o<ino>-<gen>-<seq>`) and
// the old places of later-renamed directories are intermediate states, in
// neither final tree. That is why the hints are a superset (archive/changes.ts
// ChangeHints): every path named is `touched`, and rename targets and new
// directories are `full` (their subtree may hold entries the stream never
// names there, moved in with them).
import type { ChangeHints } from '../../archive/changes.ts';

const MAGIC = Buffer.from('btrfs-stream\0', 'latin1');
const HEADER = MAGIC.length + 4;
const CMD_HEADER = 10;

// commands (enum btrfs_send_cmd), v1
const C = {
  SUBVOL: 1, SNAPSHOT: 2, MKFILE: 3, MKDIR: 4, MKNOD: 5, MKFIFO: 6, MKSOCK: 7, SYMLINK: 8, RENAME: 9, LINK: 10,
  UNLINK: 11, RMDIR: 12, SET_XATTR: 13, REMOVE_XATTR: 14, WRITE: 15, CLONE: 16, TRUNCATE: 17, CHMOD: 18,
  CHOWN: 19, UTIMES: 20, END: 21, UPDATE_EXTENT: 22,
} as const;
// attributes
const A_PATH = 15;
const A_PATH_TO = 16;
const A_PATH_LINK = 17;

/** Commands whose only path (A_PATH) names the entry they change. */
const ON_PATH = new Set<number>([
  C.MKFILE, C.MKNOD, C.MKFIFO, C.MKSOCK, C.SYMLINK, C.UNLINK, C.RMDIR, C.SET_XATTR, C.REMOVE_XATTR,
  C.WRITE, C.CLONE, C.TRUNCATE, C.CHMOD, C.CHOWN, C.UTIMES, C.UPDATE_EXTENT,
]);

export class SendStreamError extends Error {
  constructor(msg: string, offset: number) {
    super(`btrfs send stream: ${msg} at byte ${offset}`);
    this.name = 'SendStreamError';
  }
}

/** Fed the stream chunk by chunk (push), then end(): the ChangeHints it implies. */
export class SendStreamHints {
  readonly touched = new Set<string>();
  readonly full = new Set<string>();
  /** commands seen, by number (for tests and status) */
  readonly commands = new Map<number, number>();
  private buf: Buffer = Buffer.alloc(0);
  private offset = 0;
  private headerSeen = false;
  private ended = false;

  push(chunk: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    let at = 0;
    if (!this.headerSeen) {
      if (this.buf.length < HEADER) return;
      if (!this.buf.subarray(0, MAGIC.length).equals(MAGIC)) throw new SendStreamError('no btrfs-stream magic', 0);
      const version = this.buf.readUInt32LE(MAGIC.length);
      if (version !== 1) throw new SendStreamError(`version ${version}, expected 1`, MAGIC.length);
      this.headerSeen = true;
      at = HEADER;
    }
    while (this.buf.length - at >= CMD_HEADER) {
      const len = this.buf.readUInt32LE(at);
      if (this.buf.length - at < CMD_HEADER + len) break;
      this.command(this.buf.readUInt16LE(at + 4), this.buf.subarray(at + CMD_HEADER, at + CMD_HEADER + len), this.offset + at);
      at += CMD_HEADER + len;
    }
    this.offset += at;
    this.buf = this.buf.subarray(at);
  }

  /** The hints, once the stream is complete (an END command, nothing after it). */
  end(): ChangeHints {
    if (!this.headerSeen) throw new SendStreamError('stream ends inside its header', this.offset);
    if (this.buf.length) throw new SendStreamError(`stream ends inside a command (${this.buf.length} bytes left)`, this.offset);
    if (!this.ended) throw new SendStreamError('stream ends without an END command', this.offset);
    return { touched: this.touched, full: this.full };
  }

  private command(cmd: number, body: Buffer, offset: number): void {
    if (this.ended) throw new SendStreamError(`command ${cmd} after END`, offset);
    this.commands.set(cmd, (this.commands.get(cmd) ?? 0) + 1);
    if (cmd === C.END) {
      this.ended = true;
      return;
    }
    if (cmd === C.SUBVOL || cmd === C.SNAPSHOT) return; // names the subvolume, not an entry
    const attrs = parseAttrs(body, offset + CMD_HEADER);
    const p = (type: number) => {
      const v = attrs.get(type);
      if (v === undefined) throw new SendStreamError(`command ${cmd} without attribute ${type}`, offset);
      return `/${v.toString('latin1')}`.replace(/\/$/, ''); // raw bytes, rooted ('' is the root itself)
    };
    if (ON_PATH.has(cmd)) this.touched.add(p(A_PATH));
    else if (cmd === C.MKDIR) this.touch(p(A_PATH), true);
    else if (cmd === C.RENAME) {
      this.touched.add(p(A_PATH));
      this.touch(p(A_PATH_TO), true);
    } else if (cmd === C.LINK) {
      this.touched.add(p(A_PATH));
      this.touched.add(p(A_PATH_LINK));
    } else throw new SendStreamError(`unknown command ${cmd}`, offset);
  }

  private touch(path: string, full: boolean): void {
    this.touched.add(path);
    if (full) this.full.add(path);
  }
}

/** A command's attributes by type (v1: every attribute carries its length). */
function parseAttrs(body: Buffer, offset: number): Map<number, Buffer> {
  const attrs = new Map<number, Buffer>();
  for (let at = 0; at < body.length;) {
    if (body.length - at < 4) throw new SendStreamError('truncated attribute header', offset + at);
    const type = body.readUInt16LE(at);
    const len = body.readUInt16LE(at + 2);
    if (body.length - at - 4 < len) throw new SendStreamError(`attribute ${type} longer than its command`, offset + at);
    attrs.set(type, body.subarray(at + 4, at + 4 + len));
    at += 4 + len;
  }
  return attrs;
}
