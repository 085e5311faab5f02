// Loop devices through util-linux's losetup, with an explicit detach that waits.
//
// Why not `mount -o loop` and its autoclear: the kernel frees an autoclear loop
// device only when its last opener closes it, and udev's probe (or any blkid) may
// still hold it for a moment after umount returns. A caller that then checks
// `losetup -j` (or removes the image's directory) races that. Here every detach
// is explicit and returns only once the device no longer names the image.
import { execFileSync } from 'node:child_process';

const sleeper = new Int32Array(new SharedArrayBuffer(4));
const sleepMs = (ms: number) => Atomics.wait(sleeper, 0, 0, ms);

const losetup = (args: string[]) => execFileSync('losetup', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();

/** The loop devices (e.g. `/dev/loop3`) currently backed by `image`. */
export function loopDevicesOf(image: string): string[] {
  const out = losetup(['--noheadings', '--output', 'NAME', '--associated', image]);
  return out ? out.split('\n').map((l) => l.trim()).filter(Boolean) : [];
}

/** Attach `image` to a free loop device and return the device's path. */
export function attachLoop(image: string, opts: { readOnly?: boolean } = {}): string {
  return losetup(['--find', '--show', ...(opts.readOnly ? ['--read-only'] : []), image]);
}

/**
 * Detach `device` (which must no longer be mounted) and wait until the kernel has let
 * it go. One LOOP_CLR_FD is enough: on a device another process still holds open (a
 * udev probe) it sets autoclear and the kernel frees it when that opener closes, so
 * after it we only poll (detaching again could hit a device someone else has just
 * attached to the same number). `wait: false` after a failed unmount: the mount holds
 * the device, and waiting would only time out.
 */
export function detachLoop(device: string, image: string, opts: { wait?: boolean; timeoutMs?: number } = {}): void {
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const attached = () => loopDevicesOf(image).includes(device);
  if (!attached()) return;
  try {
    losetup(['--detach', device]);
  } catch (e) {
    // ENXIO: freed between our look and the detach
    if (attached()) throw new Error(`loop device ${device} (${image}) did not detach: ${(e as Error).message.trim()}`);
    return;
  }
  if (opts.wait === false) return;
  const deadline = Date.now() + timeoutMs;
  while (attached()) {
    if (Date.now() > deadline) throw new Error(`loop device ${device} (${image}) is still attached ${timeoutMs} ms after its detach (held open by another process?)`);
    sleepMs(50);
  }
}

export interface LoopMount {
  readonly device: string;
  readonly image: string;
  readonly dir: string;
  /** Unmount `dir` and detach the device; safe to call twice. */
  unmount(): void;
}

/**
 * Attach `image` and mount it on `dir` (file system type found by mount(8) unless
 * given). If the mount fails the device is detached before the error propagates.
 */
export function loopMount(image: string, dir: string, opts: { type?: string; options?: string; readOnly?: boolean } = {}): LoopMount {
  const device = attachLoop(image, { readOnly: opts.readOnly });
  const args = [...(opts.type ? ['-t', opts.type] : []), ...(opts.options ? ['-o', opts.options] : []), device, dir];
  try {
    execFileSync('mount', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    detachLoop(device, image);
    const stderr = (e as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(`mount ${args.join(' ')}: ${stderr || (e as Error).message}`);
  }
  let mounted = true;
  return {
    device, image, dir,
    unmount() {
      if (mounted) {
        execFileSync('umount', [dir], { stdio: ['ignore', 'pipe', 'pipe'] });
        mounted = false;
      }
      detachLoop(device, image);
    },
  };
}
