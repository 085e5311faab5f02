// Random layer stacks produced by a real union (the kernel's overlayfs, or
// fuse-overlayfs writing its own upper), for checking the change walkers
// against each other. Each layer: mount the union (lowers = the
// earlier layers' diff dirs, nearest first; upper = this layer's diff dir),
// apply random ops through the merged mount, compute the reference
// changesDirs(merged, lowers-only view) while mounted, unmount. Every diff dir
// is also copied in aufs form. Root only.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { changesDirs } from '../../archive/changes.ts';
import { type Change, rawPath } from '../../archive/types.ts';
import { umount2, MNT_DETACH } from '../../sys/syscalls.ts';
import { copyOverlayDiffAsAufs } from './aufs-form-copy.ts';
import { mountOverlay } from './overlay-mount.ts';
import { applyRandomOps, Rng } from './random-layer-ops.ts';

export interface StackLayer {
  index: number;
  /** ops applied through the merged mount, for failure messages */
  ops: string[];
  /** this layer's overlay-form diff dir (the overlay upper) */
  diff: string;
  /** lower diff dirs, nearest first, overlay form */
  lowers: string[];
  /** the same in aufs form */
  aufsDiff: string;
  aufsLowers: string[];
  /** changesDirs(merged view with this layer, merged view without it) */
  expected: Change[];
}

export type Union = 'overlay' | 'fuse-overlayfs';

/**
 * fuse-overlayfs 1.10's defects, kept out of the comparison: it fails the copy-up
 * of a device, fifo or socket for a setattr (utimens, chmod, chown: EIO/ENXIO), and
 * after a copy-up splits a hard link on disk it still shows both names as the lower
 * inode (it maps copied-up files to their origin's inode), so no hard links.
 */
const FUSE_DEFECTS = { refused: ['EIO', 'ENXIO'], without: ['hardlink'] };

/**
 * fuse-overlayfs from the PATH; it daemonizes once the mount is up. The old view
 * (no upper) is mounted by it too, so each stack is read by the union that wrote it.
 */
function mountFuseOverlayfs(target: string, spec: { lowers: string[]; upper?: string; work?: string }): void {
  const opts = [`lowerdir=${spec.lowers.join(':')}`];
  if (spec.upper !== undefined) opts.push(`upperdir=${spec.upper}`, `workdir=${spec.work}`);
  execFileSync('fuse-overlayfs', ['-o', opts.join(','), target], { stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * Build a stack of 3–4 random layers for `seed` under a fresh temp dir and
 * call `check` for each layer (mounts are already gone then; the dirs stay
 * until `check` returns for the last layer). Always unmounts and removes.
 * With union 'fuse-overlayfs' the diff dirs are fuse-overlayfs's own uppers;
 * their aufs-form copies are not made (`aufsDiff` is '').
 */
export function withRandomStack(seed: number, check: (layer: StackLayer) => void, union: Union = 'overlay'): void {
  const mountUnion = union === 'overlay' ? mountOverlay : mountFuseOverlayfs;
  const rng = new Rng(seed);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-stack-'));
  const mounted: string[] = [];
  const unmountAll = () => {
    for (const m of mounted.splice(0).reverse()) {
      try {
        umount2(m);
      } catch {
        umount2(m, MNT_DETACH);
      }
    }
  };
  try {
    const empty = `${work}/empty`;
    fs.mkdirSync(empty);
    const diffs: string[] = [];
    const aufsDiffs: string[] = [];
    const layers = 3 + rng.int(2);
    for (let k = 0; k < layers; k++) {
      const dir = `${work}/l${k}`;
      for (const d of ['diff', 'work', 'merged', 'old', 'new']) fs.mkdirSync(`${dir}/${d}`, { recursive: true });
      const lowers = diffs.slice().reverse();
      // the base layer goes over an empty lower: the kernel wants at least one
      mountUnion(`${dir}/merged`, { lowers: lowers.length ? lowers : [empty], upper: `${dir}/diff`, work: `${dir}/work` });
      mounted.push(`${dir}/merged`);
      const ops = applyRandomOps(rng, rawPath(`${dir}/merged`), k === 0 ? 30 : 5 + rng.int(26), union === 'fuse-overlayfs' ? FUSE_DEFECTS : {});
      let oldView = empty;
      if (lowers.length) {
        // a lowerdir-only (read-only) mount needs two lowers: the empty dir adds nothing
        mountUnion(`${dir}/old`, { lowers: [...lowers, empty] });
        mounted.push(`${dir}/old`);
        oldView = `${dir}/old`;
      }
      let newView = `${dir}/merged`;
      if (union === 'fuse-overlayfs') {
        // the reference is what persists, as docker's naive diff sees it: a fresh mount
        umount2(newView);
        mounted.splice(mounted.indexOf(newView), 1);
        mountUnion(`${dir}/new`, { lowers: [`${dir}/diff`, ...lowers, empty] });
        mounted.push(`${dir}/new`);
        newView = `${dir}/new`;
      }
      const expected = changesDirs(newView, oldView);
      unmountAll();
      const aufs = union === 'overlay' ? `${dir}/aufs` : '';
      if (aufs) copyOverlayDiffAsAufs(`${dir}/diff`, aufs);
      check({
        index: k, ops, diff: `${dir}/diff`, lowers, aufsDiff: aufs, aufsLowers: aufsDiffs.slice().reverse(), expected,
      });
      diffs.push(`${dir}/diff`);
      aufsDiffs.push(aufs);
    }
  } finally {
    unmountAll();
    fs.rmSync(work, { recursive: true, force: true });
  }
}
