// struct dm_ioctl packing for /dev/mapper/control (linux/dm-ioctl.h, version
// 4): one request buffer holds the header, then the command's data at
// data_start (target specs with their parameter strings, a target message).
import * as sys from '../../sys/syscalls.ts';
import * as fs from 'node:fs';

const HEADER = 312; // sizeof(struct dm_ioctl)
const SPEC = 40; // sizeof(struct dm_target_spec)
const BUF = 16 * 1024;

export const CMD = { version: 0, create: 3, remove: 4, suspend: 6, status: 7, tableLoad: 9, tableStatus: 12, targetMsg: 14 } as const;
export const FLAG = { readOnly: 1 << 0, suspend: 1 << 1, bufferFull: 1 << 8 } as const;

/** _IOWR(0xfd, nr, struct dm_ioctl) */
const request = (nr: number) => ((3 << 30) | (HEADER << 16) | (0xfd << 8) | nr) >>> 0;

export interface Reply {
  flags: number;
  dev: number;
  version: [number, number, number];
  targetCount: number;
  /** the data area after data_start */
  data: Buffer;
}

let control: number | null = null;
function controlFd(): number {
  control ??= fs.openSync('/dev/mapper/control', 'r+');
  return control;
}

/** One dm ioctl on device `name` (may be ''), with `payload` at data_start. */
export function dmIoctl(cmd: number, name: string, opts: { flags?: number; payload?: Buffer; targetCount?: number } = {}): Reply {
  const b = Buffer.alloc(BUF);
  b.writeUInt32LE(4, 0); // version 4.0.0: the kernel accepts any minor ≤ its own
  b.writeUInt32LE(BUF, 12);
  b.writeUInt32LE(HEADER, 16);
  b.writeUInt32LE(opts.targetCount ?? 0, 20);
  b.writeUInt32LE(opts.flags ?? 0, 28);
  if (Buffer.byteLength(name) > 127) throw new Error(`devmapper: device name too long: ${name}`);
  b.write(name, 48, 'utf8');
  opts.payload?.copy(b, HEADER);
  sys.ioctl(controlFd(), request(cmd), b, name ? `/dev/mapper/control (${name})` : '/dev/mapper/control');
  const flags = b.readUInt32LE(28);
  if (flags & FLAG.bufferFull) throw new Error(`devmapper: ${name}: reply larger than ${BUF} bytes`);
  const dataStart = b.readUInt32LE(16);
  const dataSize = b.readUInt32LE(12);
  return {
    flags, dev: Number(b.readBigUInt64LE(40)),
    version: [b.readUInt32LE(0), b.readUInt32LE(4), b.readUInt32LE(8)],
    targetCount: b.readUInt32LE(20), data: Buffer.from(b.subarray(dataStart, dataSize)),
  };
}

/** One struct dm_target_spec + its NUL-terminated parameters, padded to 8 bytes. */
export function targetSpec(start: number, length: number, type: string, params: string): Buffer {
  const size = Math.ceil((SPEC + Buffer.byteLength(params) + 1) / 8) * 8;
  const b = Buffer.alloc(size);
  b.writeBigUInt64LE(BigInt(start), 0);
  b.writeBigUInt64LE(BigInt(length), 8);
  b.writeUInt32LE(size, 20); // next: relative to this spec
  b.write(type, 24, 'utf8');
  b.write(params, SPEC, 'utf8');
  return b;
}

/** struct dm_target_msg: sector, then the NUL-terminated message. */
export function targetMessage(msg: string): Buffer {
  const b = Buffer.alloc(8 + Buffer.byteLength(msg) + 1);
  b.write(msg, 8, 'utf8');
  return b;
}

/** The "<start> <length> <type> <status>" lines of a TABLE_STATUS reply. */
export function statusLines(r: Reply): string[] {
  const lines: string[] = [];
  let off = 0;
  for (let i = 0; i < r.targetCount; i++) {
    const start = r.data.readBigUInt64LE(off);
    const length = r.data.readBigUInt64LE(off + 8);
    const next = r.data.readUInt32LE(off + 20);
    const type = r.data.toString('utf8', off + 24, off + 40).replace(/\0.*$/s, '');
    const text = r.data.toString('utf8', off + SPEC).replace(/\0.*$/s, '');
    lines.push(`${start} ${length} ${type} ${text}`.trimEnd());
    off = next; // for replies, next is from the data start
  }
  return lines;
}
