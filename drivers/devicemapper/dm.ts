// device-mapper through its ioctls on /dev/mapper/control (dm-ioctl.ts packs
// them), as libdevmapper does for moby. Why not dmsetup: measured in the VM
// (TCG), a dmsetup call costs ~250 ms (process start and libdevmapper
// loading), and a layer takes four to six dm calls to create, get and put —
// ~2.7 s of a layer's ~2.7 s; an ioctl is well under a millisecond. Without
// udev the /dev/mapper/<name> nodes are ours to make and remove, as libdm
// does with DM_DISABLE_UDEV=1.
import * as fs from 'node:fs';
import * as sys from '../../sys/syscalls.ts';
import { CMD, FLAG, dmIoctl, statusLines, targetMessage, targetSpec } from './dm-ioctl.ts';

/** /dev/mapper/<name> */
export const devName = (name: string) => `/dev/mapper/${name}`;

const errnoOf = (e: unknown) => (e instanceof sys.SysError ? e.code : null);

/** Is a dm device of that name there (active or suspended)? */
export function exists(name: string): boolean {
  try {
    dmIoctl(CMD.status, name);
    return true;
  } catch (e) {
    if (errnoOf(e) === 'ENXIO') return false;
    throw e;
  }
}

/** Create and activate `name` with one table line ("<start> <sectors> <target> <args>"), and its /dev/mapper node. */
export function create(name: string, table: string, opts: { readOnly?: boolean } = {}): void {
  const m = /^(\d+) (\d+) (\S+) (.*)$/.exec(table);
  if (!m) throw new Error(`devmapper: bad table line: ${table}`);
  const flags = opts.readOnly ? FLAG.readOnly : 0;
  const made = dmIoctl(CMD.create, name, { flags });
  try {
    dmIoctl(CMD.tableLoad, name, { flags, targetCount: 1, payload: targetSpec(Number(m[1]), Number(m[2]), m[3]!, m[4]!) });
    dmIoctl(CMD.suspend, name); // resume: the loaded table goes live
  } catch (e) {
    dmIoctl(CMD.remove, name);
    throw new Error(`devmapper: ${name}: ${table}: ${(e as Error).message}`);
  }
  const node = devName(name);
  fs.rmSync(node, { force: true });
  sys.mknod(node, sys.S_IFBLK | 0o600, made.dev);
}

export function remove(name: string): void {
  dmIoctl(CMD.remove, name);
  fs.rmSync(devName(name), { force: true });
}

export function suspend(name: string): void {
  dmIoctl(CMD.suspend, name, { flags: FLAG.suspend });
}

export function resume(name: string): void {
  dmIoctl(CMD.suspend, name);
}

/** A target message (thin-pool: create_thin, create_snap, delete, set_transaction_id). */
export function message(name: string, msg: string): void {
  try {
    dmIoctl(CMD.targetMsg, name, { payload: targetMessage(msg) });
  } catch (e) {
    throw new Error(`devmapper: ${name}: message "${msg}": ${(e as Error).message}`);
  }
}

/** The target status line, e.g. "0 4194304 thin-pool 0 3289/32768 0/32768 - rw …". */
export function status(name: string): string {
  return statusLines(dmIoctl(CMD.tableStatus, name)).join('\n');
}

/** The kernel's device-mapper interface version ("4.47.0"), for Status. */
export function libraryVersion(): string {
  return dmIoctl(CMD.version, '').version.join('.');
}

/** A thin pool's status, parsed (sizes in blocks of the pool's metadata (4 KiB) and data block size). */
export interface PoolStatus {
  transactionId: number;
  metadataUsed: number;
  metadataTotal: number;
  dataUsed: number;
  dataTotal: number;
}

export function poolStatus(pool: string): PoolStatus {
  const line = status(pool);
  const m = /thin-pool (\d+) (\d+)\/(\d+) (\d+)\/(\d+)/.exec(line);
  if (!m) throw new Error(`devmapper: ${pool}: not a thin-pool status: ${line}`);
  const [, t, mu, mt, du, dt] = m.map(Number) as number[];
  return { transactionId: t!, metadataUsed: mu!, metadataTotal: mt!, dataUsed: du!, dataTotal: dt! };
}
