// Native changes: what changed from a parent layer to its child, from
// btrfs's own comparison of the two trees instead of a walk of both.
//
// BTRFS_IOC_SEND with a parent root and NO_FILE_DATA compares the two
// subvolumes' b-trees and skips every subtree they still share, so its cost
// follows the change, not the layer. It needs read-only roots: read-only
// snapshots of both layers are taken (O(1)) in a scratch dir under the home,
// the stream is read from a FIFO while the ioctl runs on a thread of its own,
// the paths it names become hints (send-stream.ts), and changesDirsHinted
// compares the two snapshots exactly as changesDirs does, but only where the
// hints lead. The snapshots are destroyed again before returning.
//
// Chosen over TREE_SEARCH by generation (find-new): that lists new extents and
// inodes only, so deletions, renames and metadata-only changes would need
// another walk to be found.
//
// The stream names one path of a changed inode, changesDirs reports each of
// its links: the other paths of a touched inode with several links are found
// in the snapshots' trees (ioctl.ts inodePaths) and hinted too. What the
// native path cannot answer is a NativeRefusal: the caller falls back to the
// naive walk.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { changesDirsHinted, type ChangeHints } from '../../archive/changes.ts';
import type { Change } from '../../archive/types.ts';
import { displayPath, fsPath, rawPath } from '../../archive/types.ts';
import { isDirectory, listSorted, lstatQuiet } from '../../sys/read-only-files.ts';
import { S_IFIFO, mknod } from '../../sys/syscalls.ts';
import { isAlive } from '../holder.ts';
import { makeScratch } from '../scratch.ts';
import { SEND_FLAG_NO_FILE_DATA, inodePaths, isSubvolume, send, subvolDestroy, subvolInfo, subvolSnapshot } from './ioctl.ts';
import { SendStreamHints } from './send-stream.ts';

export const SEND_SCRATCH = 'strata-send';

/** The native path cannot answer this comparison; the message says why. */
export class NativeRefusal extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NativeRefusal';
  }
}

/** changesDirs(child, parent) of two subvolumes of the filesystem of `home`, through BTRFS_IOC_SEND. */
export async function sendChanges(home: string, child: string, parent: string): Promise<Change[]> {
  const scratch = makeScratch(home, SEND_SCRATCH);
  const made: string[] = [];
  try {
    for (const [name, src] of [['parent', parent], ['child', child]]) {
      subvolSnapshot(src, scratch, name, { readOnly: true });
      made.push(name);
    }
    const oldRo = path.join(scratch, 'parent');
    const newRo = path.join(scratch, 'child');
    const hints = await streamHints(newRo, subvolInfo(oldRo).id, path.join(scratch, 'stream'));
    return hintedWithLinks(newRo, oldRo, hints);
  } finally {
    for (const name of made) subvolDestroy(scratch, name);
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

/**
 * Run the send ioctl of read-only `root` against tree `parentId` into a FIFO
 * and parse what it writes. The reader drains the FIFO on the main thread
 * while the ioctl blocks on its own; if parsing fails the read end is closed,
 * so the ioctl's next write fails (EPIPE) and it returns: neither side can
 * wait for the other forever.
 */
async function streamHints(root: string, parentId: bigint, fifo: string): Promise<ChangeHints> {
  mknod(fifo, S_IFIFO | 0o600, 0);
  const rfd = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  let wfd: number;
  try {
    wfd = fs.openSync(fifo, fs.constants.O_WRONLY);
  } catch (e) {
    fs.closeSync(rfd);
    throw e;
  }
  const parser = new SendStreamHints();
  let reader: net.Socket;
  try {
    reader = new net.Socket({ fd: rfd, readable: true, writable: false });
  } catch (e) {
    fs.closeSync(rfd);
    fs.closeSync(wfd);
    throw e;
  }
  const reading = (async () => {
    try {
      for await (const chunk of reader) parser.push(chunk as Buffer);
    } finally {
      reader.destroy(); // closes rfd: a writer still busy gets EPIPE
    }
  })();
  const sending = (async () => {
    let fd = -1;
    try {
      fd = fs.openSync(root, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
      await send(fd, wfd, parentId, SEND_FLAG_NO_FILE_DATA, root);
    } finally {
      if (fd >= 0) fs.closeSync(fd);
      fs.closeSync(wfd); // the reader's EOF, also when the root could not be opened (else the reader waits forever)
    }
  })();
  const [r, s] = await Promise.allSettled([reading, sending]);
  if (r.status === 'rejected') throw r.reason;
  if (s.status === 'rejected') throw s.reason;
  return parser.end();
}

/**
 * changesDirsHinted, with every path of each touched or changed
 * non-directory of several links hinted too: the stream names one path of an
 * inode, and changesDirs reports each of them (a rewritten file is a Modify at
 * every link). A path the stream names may be an intermediate one, in neither
 * tree (under a directory it has orphaned for a while), so the links of each
 * entry the comparison reports are looked up as well, until no new path turns
 * up. Refused where the paths found are not as many as the links.
 */
function hintedWithLinks(newRoot: string, oldRoot: string, hints: ChangeHints): Change[] {
  const touched = new Set(hints.touched);
  const looked = new Set<string>();
  const addLinks = (paths: Iterable<string>) => {
    for (const p of [...paths]) {
      for (const root of [newRoot, oldRoot]) {
        const st = lstatQuiet(fsPath(rawPath(root) + p));
        if (!st || st.isDirectory() || st.nlink < 2 || looked.has(`${root}\0${st.ino}`)) continue;
        looked.add(`${root}\0${st.ino}`);
        const links = inodePaths(root, BigInt(st.ino));
        if (links.length !== st.nlink) {
          throw new NativeRefusal(`${displayPath(p)} has ${st.nlink} links, and ${links.length} paths were found for its inode`);
        }
        for (const q of links) touched.add(`/${q.toString('latin1')}`);
      }
    }
  };
  addLinks(hints.touched);
  for (;;) {
    const changes = changesDirsHinted(newRoot, oldRoot, { touched, full: hints.full });
    const size = touched.size;
    addLinks(changes.map((c) => c.path));
    if (touched.size === size) return changes;
  }
}

/** Remove the send scratch dirs (and their read-only snapshots) that killed processes left under `home`. */
export function removeStaleSendScratch(home: string): void {
  const scratchName = new RegExp(`^${SEND_SCRATCH}-(\\d+\\.\\d+)-[^-]+$`);
  for (const name of listSorted(home)) {
    const m = scratchName.exec(name);
    if (!m || isAlive(m[1])) continue;
    const dir = path.join(home, name);
    if (!isDirectory(dir)) continue; // not one we made (a symlink is never followed: it could name the layers' subvolumes)
    for (const sub of fs.readdirSync(dir)) if (isSubvolume(path.join(dir, sub))) subvolDestroy(dir, sub);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
