// Which process holds something (a mount reference, a probe scratch dir), in a
// form that survives the holder: its pid plus its start time (field 22 of
// /proc/<pid>/stat, clock ticks since boot). A pid alone is not enough: after
// the holder dies the kernel may give its pid to an unrelated process, which
// would then look like the holder forever. Pid and start time together name
// one process for the life of the machine (or of its pid namespace: holders
// are only compared within the /proc this process sees).
import * as fs from 'node:fs';

/** A process, as written into records and scratch-dir names: `<pid>.<starttime>`. */
export type HolderTag = string;

/** Start time and state of `pid` from /proc/<pid>/stat, or null when there is no such process. */
function procStat(pid: number | 'self'): { start: string; state: string } | null {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ESRCH') return null;
    throw e;
  }
  // field 2 (comm) is in parentheses and may itself hold spaces and ')': fields 3… follow the last ')'
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: rest[0], start: rest[22 - 3] };
}

let self: HolderTag | undefined;

/** This process's tag (read once: neither the pid nor the start time changes). */
export function selfTag(): HolderTag {
  if (self === undefined) self = `${process.pid}.${procStat('self')!.start}`;
  return self;
}

/** The tag of running process `pid`, or null when there is none. */
export function tagOf(pid: number): HolderTag | null {
  const st = procStat(pid);
  return st ? `${pid}.${st.start}` : null;
}

/** Is the process named by `tag` still running? A zombie (or a malformed tag) counts as gone. */
export function isAlive(tag: HolderTag): boolean {
  const m = /^(\d+)\.(\d+)$/.exec(tag);
  if (!m) return false;
  if (tag === selfTag()) return true;
  const st = procStat(Number(m[1]));
  return st !== null && st.start === m[2] && st.state !== 'Z' && st.state !== 'X';
}

/**
 * An untagged leftover (named before holders were recorded, or in moby's
 * naming) that is older than this was left by a process that is gone: no
 * probe, record write or scratch use takes anywhere near a minute.
 */
const UNTAGGED_MAX_AGE_MS = 60_000;

/** Is `p` (an untagged scratch dir or temp file) old enough to be a dead process's leftover? */
export function untaggedIsStale(p: string): boolean {
  const st = fs.lstatSync(p, { throwIfNoEntry: false });
  return st !== undefined && Date.now() - st.mtimeMs > UNTAGGED_MAX_AGE_MS;
}
