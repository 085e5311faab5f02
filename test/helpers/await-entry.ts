// Wait for an entry to appear in a directory, without a sleep or a poll: an
// inotify watch on that one directory, then a look at what is already there
// (the entry may have come before the watch). Non-recursive on purpose: Node's
// recursive watcher on Linux walks the tree itself and throws, uncaught, when a
// subdirectory vanishes under it (a driver's probe dir, say).
import { readdirSync, watch } from 'node:fs';

/** Resolves with the name of the first entry of `dir` matching `re`. */
export function awaitEntry(dir: string, re: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    const w = watch(dir);
    const done = (name: string) => { w.close(); resolve(name); };
    w.on('error', (e) => { w.close(); reject(e); });
    w.on('change', (_e, name) => { if (name && re.test(String(name))) done(String(name)); });
    const there = readdirSync(dir).find((n) => re.test(n));
    if (there) done(there);
  });
}
