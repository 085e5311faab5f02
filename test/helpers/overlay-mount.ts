// Mounting real kernel overlayfs stacks in tests (root only).
import fs from 'node:fs';
import { mount, umount2, MS_RDONLY, SysError } from '../../sys/syscalls.ts';

/** Whether this kernel lists overlay (it may still need `modprobe overlay` if built as a module). */
export function overlayListed(): boolean {
  try {
    return /\boverlay\b/.test(fs.readFileSync('/proc/filesystems', 'utf8'));
  } catch {
    return false;
  }
}

// Options that keep the upper dir a plain diff dir: no index, no redirects, no metacopy.
// Older kernels reject ones they do not know (EINVAL), so the largest accepted subset is probed once.
const WANTED = ['index=off', 'redirect_dir=off', 'metacopy=off'];
let accepted: string[] | undefined;

export interface OverlaySpec {
  /** lower dirs, nearest first */
  lowers: string[];
  /** upper and work dir; omit both for a read-only lowerdir-only mount (needs >= 2 lowers) */
  upper?: string;
  work?: string;
}

function data(spec: OverlaySpec, opts: string[]): string {
  const parts = [...opts, `lowerdir=${spec.lowers.join(':')}`];
  if (spec.upper !== undefined) parts.push(`upperdir=${spec.upper}`, `workdir=${spec.work}`);
  return parts.join(',');
}

/** Mount an overlay at `target`; returns the unmount function (idempotent). */
export function mountOverlay(target: string, spec: OverlaySpec): () => void {
  for (const p of [...spec.lowers, spec.upper, spec.work]) {
    if (p?.includes(',') || p?.includes(':')) throw new Error(`overlay path with ',' or ':': ${p}`);
  }
  const flags = spec.upper === undefined ? MS_RDONLY : 0;
  if (accepted === undefined) {
    let last: unknown;
    for (const opts of subsetsLargestFirst(WANTED)) {
      try {
        mount('overlay', target, 'overlay', flags, data(spec, opts));
        accepted = opts;
        break;
      } catch (e) {
        // EINVAL: an option this kernel does not know (or a bad spec: then every subset fails)
        if (!(e instanceof SysError) || e.code !== 'EINVAL') throw e;
        last = e;
      }
    }
    if (accepted === undefined) throw last;
  } else {
    mount('overlay', target, 'overlay', flags, data(spec, accepted));
  }
  let mounted = true;
  return () => {
    if (!mounted) return;
    umount2(target);
    mounted = false;
  };
}

function subsetsLargestFirst(xs: string[]): string[][] {
  const all: string[][] = [];
  for (let m = (1 << xs.length) - 1; m >= 0; m--) all.push(xs.filter((_, i) => m & (1 << i)));
  return all.sort((a, b) => b.length - a.length);
}

/** The overlay options this kernel accepted (after the first mount). */
export function overlayOptions(): string[] | undefined {
  return accepted;
}
