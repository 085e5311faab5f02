// device-mapper through dmsetup (libdevmapper's own tool; moby links the same
// library). Why not our own ioctls on /dev/mapper/control: one layer is three
// to five dm calls (create_snap message, suspend/resume of an active origin,
// table load + resume to activate, remove), and a dmsetup call costs ~10 ms
// native (tens of ms under the VM's TCG) next to the mkfs, mount and file
// writes of the same layer — see the figures in the README; dmsetup also
// creates the /dev/mapper nodes itself when udev is absent (DM_DISABLE_UDEV=1).
import { execFileSync } from 'node:child_process';
import { findTool } from '../../sys/find-tool.ts';

const env = { ...process.env, DM_DISABLE_UDEV: '1' };

function dmsetup(args: string[]): string {
  const tool = findTool('dmsetup');
  if (!tool) throw new Error('devmapper: dmsetup is not installed (package dmsetup)');
  try {
    return execFileSync(tool, args, { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`devmapper: dmsetup ${args.join(' ')}: ${(err.stderr ?? '').trim() || err.message}`);
  }
}

/** /dev/mapper/<name> */
export const devName = (name: string) => `/dev/mapper/${name}`;

/** Is a dm device of that name there (active or suspended)? */
export function exists(name: string): boolean {
  const tool = findTool('dmsetup');
  if (!tool) return false;
  try {
    execFileSync(tool, ['info', name], { env, stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Create and activate `name` with one table line ("<start> <sectors> <target> <args>"). */
export function create(name: string, table: string, opts: { readOnly?: boolean } = {}): void {
  dmsetup(['create', name, ...(opts.readOnly ? ['--readonly'] : []), '--table', table]);
}

export function remove(name: string): void {
  dmsetup(['remove', name]);
}

export function suspend(name: string): void {
  dmsetup(['suspend', name]);
}

export function resume(name: string): void {
  dmsetup(['resume', name]);
}

/** A target message (thin-pool: create_thin, create_snap, delete, set_transaction_id). */
export function message(name: string, msg: string): void {
  dmsetup(['message', name, '0', msg]);
}

/** The target status line, e.g. "0 4194304 thin-pool 0 3289/32768 0/32768 - rw …". */
export function status(name: string): string {
  return dmsetup(['status', name]);
}

/** libdevmapper's version ("1.02.185 (2022-05-18)"), for Status. */
export function libraryVersion(): string {
  const m = /Library version:\s*(.*)/.exec(dmsetup(['version']));
  return m ? m[1]!.trim() : '';
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
