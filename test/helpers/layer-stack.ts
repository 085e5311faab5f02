// Random layer stacks produced by the real kernel overlayfs, for checking the
// change walkers against each other. Each layer: mount overlay (lowers = the
// earlier layers' diff dirs, nearest first; upper = this layer's diff dir),
// apply random ops through the merged mount, compute the reference
// changesDirs(merged, lowers-only view) while mounted, unmount. Every diff dir
// is also copied in aufs form. Root only.
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

/**
 * Build a stack of 3–4 random layers for `seed` under a fresh temp dir and
 * call `check` for each layer (mounts are already gone then; the dirs stay
 * until `check` returns for the last layer). Always unmounts and removes.
 */
export function withRandomStack(seed: number, check: (layer: StackLayer) => void): void {
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
      for (const d of ['diff', 'work', 'merged', 'old']) fs.mkdirSync(`${dir}/${d}`, { recursive: true });
      const lowers = diffs.slice().reverse();
      // the base layer goes over an empty lower: the kernel wants at least one
      mountOverlay(`${dir}/merged`, { lowers: lowers.length ? lowers : [empty], upper: `${dir}/diff`, work: `${dir}/work` });
      mounted.push(`${dir}/merged`);
      const ops = applyRandomOps(rng, rawPath(`${dir}/merged`), k === 0 ? 30 : 5 + rng.int(26));
      let oldView = empty;
      if (lowers.length) {
        // a lowerdir-only (read-only) mount needs two lowers: the empty dir adds nothing
        mountOverlay(`${dir}/old`, { lowers: [...lowers, empty] });
        mounted.push(`${dir}/old`);
        oldView = `${dir}/old`;
      }
      const expected = changesDirs(`${dir}/merged`, oldView);
      unmountAll();
      copyOverlayDiffAsAufs(`${dir}/diff`, `${dir}/aufs`);
      check({
        index: k, ops, diff: `${dir}/diff`, lowers, aufsDiff: `${dir}/aufs`, aufsLowers: aufsDiffs.slice().reverse(), expected,
      });
      diffs.push(`${dir}/diff`);
      aufsDiffs.push(`${dir}/aufs`);
    }
  } finally {
    unmountAll();
    fs.rmSync(work, { recursive: true, force: true });
  }
}
