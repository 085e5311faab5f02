// Seeded random renames for layer-stack tests, the moves random-layer-ops.ts
// does not make: an entry moved across levels, renamed over an existing one,
// two names swapped, a directory moved away and a new one made in its place,
// a hard link added anywhere, user xattrs, a truncate back to the same size
// with the mtime restored. Names include a newline and a non-UTF-8 byte.
import fs from 'node:fs';
import { fsPath } from '../../archive/types.ts';
import { escapeRaw } from '../../archive/digest.ts';
import { lsetxattr, lutimensNs } from '../../sys/syscalls.ts';
import type { Rng } from './random-layer-ops.ts';

const NAMES = ['a', 'b', 'mv', 'nl\nx', 'bad\xfe'];

function entries(root: string): { dirs: string[]; all: string[] } {
  const dirs = [''];
  const all: string[] = [];
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(fsPath(root + rel || '/'), { encoding: 'buffer', withFileTypes: true })) {
      const p = `${rel}/${e.name.toString('latin1')}`;
      all.push(p);
      if (e.isDirectory()) {
        dirs.push(p);
        walk(p);
      }
    }
  };
  walk('');
  return { dirs, all };
}

const within = (p: string, dir: string) => p === dir || p.startsWith(`${dir}/`);
const lst = (root: string, p: string) => fs.lstatSync(fsPath(root + p), { bigint: true });

/** Apply `count` random renames (and links, xattrs, same-size truncates) to the tree at raw path `root`; a log line each. */
export function applyRandomRenames(rng: Rng, root: string, count: number): string[] {
  const log: string[] = [];
  const mv = (a: string, b: string) => fs.renameSync(fsPath(root + a), fsPath(root + b));
  for (let i = 0; i < count; i++) {
    const { dirs, all } = entries(root);
    if (!all.length) break;
    const src = rng.pick(all);
    const other = rng.pick(all);
    const fresh = `${rng.pick(dirs.filter((d) => !within(d, src)))}/${rng.pick(NAMES)}`;
    const free = !all.includes(fresh);
    const st = lst(root, src);
    const unrelated = !within(other, src) && !within(src, other);
    switch (rng.int(7)) {
      case 0:
        if (!free) continue;
        mv(src, fresh);
        log.push(`mv ${escapeRaw(src)} ${escapeRaw(fresh)}`);
        break;
      case 1: // over an existing entry of the same kind (a directory only over an empty one)
        if (!unrelated || st.isDirectory() !== lst(root, other).isDirectory()) continue;
        if (st.isDirectory()) {
          fs.rmSync(fsPath(root + other), { recursive: true });
          fs.mkdirSync(fsPath(root + other));
        }
        mv(src, other);
        log.push(`mv over ${escapeRaw(src)} ${escapeRaw(other)}`);
        break;
      case 2:
        if (!unrelated) continue;
        mv(src, '/.swap');
        mv(other, src);
        mv('/.swap', other);
        log.push(`swap ${escapeRaw(src)} ${escapeRaw(other)}`);
        break;
      case 3:
        if (!st.isDirectory() || !free) continue;
        mv(src, fresh);
        fs.mkdirSync(fsPath(root + src));
        if (rng.chance(0.5)) fs.writeFileSync(fsPath(`${root}${src}/${rng.pick(NAMES)}`), 'new');
        log.push(`mv and mkdir ${escapeRaw(src)} ${escapeRaw(fresh)}`);
        break;
      case 4:
        if (!st.isFile() || !free) continue;
        fs.linkSync(fsPath(root + src), fsPath(root + fresh));
        log.push(`ln ${escapeRaw(src)} ${escapeRaw(fresh)}`);
        break;
      case 5:
        if (!st.isFile()) continue; // user.* is refused on symlinks, devices and sticky directories
        lsetxattr(fsPath(root + src), 'user.strata', Buffer.from(String(rng.int(9))));
        log.push(`xattr ${escapeRaw(src)}`);
        break;
      default:
        if (!st.isFile()) continue;
        fs.truncateSync(fsPath(root + src), 0);
        fs.truncateSync(fsPath(root + src), Number(st.size));
        lutimensNs(fsPath(root + src), st.mtimeNs);
        log.push(`truncate to the same size ${escapeRaw(src)}`);
    }
  }
  return log;
}
