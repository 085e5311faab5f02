// Removing a tree of any depth. fs.rmSync names every entry by its full path,
// which fails (ENAMETOOLONG) below PATH_MAX bytes of depth — and apply makes
// such trees, one component at a time, from any layer that asks. Here every
// call names one component under a directory handle
// (`/proc/<pid>/fd/<fd>/<name>`), and one handle is open at a time, climbing
// back through `..`: depth costs neither fds nor stack. Symlinks are removed,
// never followed. For trees only this process changes (a layer being applied,
// a driver's own dirs): a concurrent rename could move what `..` reaches.
import * as fs from 'node:fs';
import { O_PATH, at, openDirNoFollow, self } from './in-root.ts';

/** Remove `p` (a file, a symlink or a whole tree); missing is fine. */
export function removeTree(p: string | Buffer): void {
  const st = fs.lstatSync(p, { throwIfNoEntry: false });
  if (!st) return;
  if (!st.isDirectory()) return unlinkQuiet(p);
  let fd = openDirNoFollow(typeof p === 'string' ? Buffer.from(p) : p);
  if (fd === null) return;
  // one level per directory we are in below `p`: its name and the names still to remove beside it
  const stack: { name: string; rest: string[] }[] = [];
  let rest = names(fd);
  try {
    for (;;) {
      const name = rest.pop();
      if (name !== undefined) {
        const q = at(fd, name);
        const child = openDirNoFollow(q); // null for anything but a directory (a symlink included)
        if (child === null) {
          unlinkQuiet(q);
          continue;
        }
        fs.closeSync(fd);
        fd = child;
        stack.push({ name, rest });
        rest = names(fd);
        continue;
      }
      const done = stack.pop();
      if (done === undefined) break;
      const parent = fs.openSync(at(fd, '..'), O_PATH | fs.constants.O_DIRECTORY);
      fs.closeSync(fd);
      fd = parent;
      fs.rmdirSync(at(fd, done.name));
      rest = done.rest;
    }
  } finally {
    fs.closeSync(fd);
  }
  fs.rmdirSync(p);
}

function names(fd: number): string[] {
  return fs.readdirSync(self(fd), { encoding: 'buffer' }).map((n) => n.toString('latin1'));
}

function unlinkQuiet(p: string | Buffer): void {
  try {
    fs.unlinkSync(p);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}
