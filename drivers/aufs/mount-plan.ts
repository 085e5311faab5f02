// How an aufs layer with parents is mounted, planned purely (unit-tested
// without the module): the kernel aufs options exactly as moby's aufsMount
// builds them, and the FUSE union (fuse-overlayfs) used where the kernel has
// no aufs. Both take the layer's own diff dir as the writable branch and its
// parents' diff dirs, nearest first, as the read-only ones.
import * as path from 'node:path';

export const PAGE_SIZE = 4096;
/** moby aufsMount: room left in the page for ",dio,xino=/dev/shm/aufs.xino" and the label */
const XINO_ROOM = 54;
export const XINO = '/dev/shm/aufs.xino';

export interface AufsPlan {
  /** data of the first mount(2): `br:<rw>=rw:<ro>=ro+wh…,dio,xino=…[,dirperm1]` */
  data: string;
  /** data of each MS_REMOUNT that appends the branches the first page had no room for */
  appends: string[];
}

/**
 * moby aufsMount: branches go into one page (less the label and the xino
 * room, 9 more with dirperm1); the rest are appended by remounts of
 * `append:<dir>=ro+wh,` runs, each under the same limit.
 */
export function planAufsMount(rw: string, ro: string[], opts: { dirperm1: boolean; mountLabel?: string; pageSize?: number }): AufsPlan {
  const label = opts.mountLabel ?? '';
  const room = (opts.pageSize ?? PAGE_SIZE) - label.length - XINO_ROOM - (opts.dirperm1 ? ',dirperm1'.length : 0);
  let br = `br:${rw}=rw`.slice(0, room); // moby copies into a page-sized buffer: an overlong rw path is clipped
  let i = 0;
  for (; i < ro.length; i++) {
    const layer = `:${ro[i]}=ro+wh`;
    if (br.length + layer.length > room) break;
    br += layer;
  }
  const data = withLabel(`${br},dio,xino=${XINO}${opts.dirperm1 ? ',dirperm1' : ''}`, label);
  const appends: string[] = [];
  while (i < ro.length) {
    let run = '';
    for (; i < ro.length; i++) {
      const layer = `append:${ro[i]}=ro+wh,`;
      if (run.length + layer.length > room) break;
      run += layer;
    }
    if (run === '') throw new Error(`aufs: branch ${ro[i]} does not fit in a mount page`);
    appends.push(withLabel(run, label));
  }
  return { data, appends };
}

/** label.FormatMountLabel: `<opts>,context="<label>"` when there is a label. */
function withLabel(data: string, label: string): string {
  return label ? `${data},context="${label}"` : data;
}

/** moby useDirperm's probe mount: one branch, dirperm1. */
export function dirperm1ProbeData(base: string): string {
  return `br:${base},dirperm1,xino=${XINO}`;
}

/** moby supportsAufs: "aufs" on a line of /proc/filesystems. */
export function aufsInFilesystems(procFilesystems: string): boolean {
  return procFilesystems.split('\n').some((l) => l.includes('aufs'));
}

/**
 * The fuse-overlayfs options for the same union: the diff dir as upperdir
 * (so writes land where aufs's rw branch would have them, to be converted at
 * put), the parents as lowerdirs, nearest first, and a workdir, which must be
 * on the upper's filesystem and outside it. writeback=0: with the kernel's
 * writeback cache a file's data may reach the upper after a later setxattr,
 * and that write strips security.capability (file_remove_privs), as a naive
 * applyDiff through the union showed.
 */
export function fuseUnionOptions(rw: string, ro: string[], workdir: string): string {
  for (const p of [rw, ...ro, workdir]) {
    // fuse-overlayfs splits lowerdir at ':' and its option list at ','
    if (/[:,]/.test(p)) throw new Error(`aufs: ${p}: a branch path with ':' or ',' cannot be given to fuse-overlayfs`);
  }
  return `lowerdir=${ro.join(':')},upperdir=${rw},workdir=${workdir},writeback=0`;
}

/**
 * Where a FUSE union's workdir goes: `<home>/.strata-fuse-work/<id>`, beside
 * diff/ layers/ mnt/. Not under diff/ (it would be layer content) nor mnt/
 * (moby's init walks mnt/ and diff/ for `-removing` dirs; dockerd reads
 * neither of the others), made at mount and removed at unmount.
 */
export const FUSE_WORK_DIR = '.strata-fuse-work';
export const fuseWorkDir = (home: string, id: string): string => path.join(home, FUSE_WORK_DIR, id);
