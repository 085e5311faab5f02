// overlay2's own links, read without following any (fuse-overlayfs has the same layout):
//
//   <home>/l/<LINKID>  -> ../<id>/diff        the only symlinks of the layout
//   <home>/<id>/link   LINKID
//   <home>/<id>/lower  l/<LINKID>:l/<LINKID>…  every ancestor, nearest first
//
// A link is parsed, never resolved: its target must be exactly ../<id>/diff
// with <id> one directory of the home whose diff/ is a real directory, so a
// lower that climbs out of the home (l/../../../etc, an absolute path), an
// l/ link to elsewhere, a dangling or looping link is a problem here and is
// never followed by a reader (the overlay2 layout, layout.ts, and the
// driver's read-only open read lowers through here).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isLayerName } from '../layout.ts';
import { TEXT_CAP, describeFsError, listSorted, lstatQuiet, readFileReadOnly } from '../../sys/read-only-files.ts';

/** `<home>/l/`: the directory of layer links */
export const LINK_DIR = 'l';

export interface LayoutProblem {
  path: string;
  message: string;
}


/** Where `<home>/l/<name>` points: the layer id, or why it cannot be used. */
export function overlay2LinkTarget(home: string, name: string): { id: string } | { problem: string } {
  if (!isLayerName(name)) return { problem: `${JSON.stringify(name)} is not a link name` };
  const p = path.join(home, LINK_DIR, name);
  const st = lstatQuiet(p);
  if (!st) return { problem: `${p} is missing` };
  if (!st.isSymbolicLink()) return { problem: `${p} is not a symlink` };
  let target: string;
  try {
    target = fs.readlinkSync(p);
  } catch (e) {
    return { problem: `${p} ${describeFsError(e)}` };
  }
  const m = /^\.\.\/([^/]+)\/diff$/.exec(target);
  if (!m || !isLayerName(m[1]!)) return { problem: `${p} points at ${JSON.stringify(target)}, not ../<id>/diff inside the driver home` };
  const diff = path.join(home, m[1]!, 'diff');
  const dst = lstatQuiet(diff);
  if (!dst) return { problem: `${p} is dangling: ${diff} is missing` };
  if (!dst.isDirectory()) return { problem: `${p} points at ${diff}, which is ${dst.isSymbolicLink() ? 'a symlink (a link loop or an escape)' : 'not a directory'}` };
  if (lstatQuiet(path.join(home, m[1]!))?.isDirectory() !== true) return { problem: `${p} points through ${path.join(home, m[1]!)}, which is not a directory` };
  return { id: m[1]! };
}

/**
 * The layer ids of `<home>/<id>/lower`, nearest first ([] when there is no
 * lower file: a base layer), every entry checked as overlay2LinkTarget does.
 * Throws an Error naming the lower file and the first bad entry.
 */
export function overlay2Lowers(home: string, id: string): string[] {
  const file = path.join(home, id, 'lower');
  if (!lstatQuiet(file)) return [];
  let text: string;
  try {
    text = readFileReadOnly(file, TEXT_CAP).toString('utf8').trim();
  } catch (e) {
    throw new Error(`${file}: ${describeFsError(e)}`);
  }
  if (text === '') return [];
  return text.split(':').map((entry) => {
    const prefix = `${LINK_DIR}/`;
    if (!entry.startsWith(prefix)) throw new Error(`${file}: names ${JSON.stringify(entry)}, not an ${prefix}<LINKID> link`);
    const t = overlay2LinkTarget(home, entry.slice(prefix.length));
    if ('problem' in t) throw new Error(`${file}: names ${entry}: ${t.problem}`);
    return t.id;
  });
}

/**
 * What is wrong with the links of an overlay2 home: every l/ entry that is
 * not a link to ../<id>/diff of a layer there (dangling, looping, escaping,
 * not a symlink), every layer's `lower` with an entry that is not such a link,
 * every `link` file whose l/ link does not point back at its layer.
 */
export function overlay2LayoutProblems(home: string): LayoutProblem[] {
  const out: LayoutProblem[] = [];
  const lDir = path.join(home, LINK_DIR);
  const lst = lstatQuiet(lDir);
  if (lst && !lst.isDirectory()) out.push({ path: lDir, message: `is ${lst.isSymbolicLink() ? 'a symlink' : 'not a directory'}, expected the directory of layer links` });
  const links = lst?.isDirectory() ? listSorted(lDir) : [];
  for (const name of links) {
    const t = overlay2LinkTarget(home, name);
    if ('problem' in t) out.push({ path: path.join(lDir, name), message: `layer link ${t.problem.replace(`${path.join(lDir, name)} `, '')}` });
  }
  for (const id of listSorted(home)) {
    if (id === LINK_DIR || id.startsWith('.')) continue;
    const dir = path.join(home, id);
    if (!lstatQuiet(dir)?.isDirectory()) continue;
    try {
      overlay2Lowers(home, id);
    } catch (e) {
      out.push({ path: path.join(dir, 'lower'), message: (e as Error).message.replace(`${path.join(dir, 'lower')}: `, '') });
    }
    const linkFile = path.join(dir, 'link');
    if (!lstatQuiet(linkFile)) continue;
    let name: string;
    try {
      name = readFileReadOnly(linkFile, TEXT_CAP).toString('utf8').trim();
    } catch (e) {
      out.push({ path: linkFile, message: describeFsError(e) });
      continue;
    }
    const t = overlay2LinkTarget(home, name);
    if ('problem' in t) out.push({ path: linkFile, message: `names link ${JSON.stringify(name)}: ${t.problem}` });
    else if (t.id !== id) out.push({ path: linkFile, message: `names link ${name}, which points at layer ${t.id}, not ${id}` });
  }
  return out;
}
