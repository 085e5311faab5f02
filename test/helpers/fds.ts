// The fds of this process that point under a directory: what an apply or an
// export must not leave behind (a worker thread's own fds point elsewhere).
import * as fs from 'node:fs';

export function fdsUnder(dir: string): string[] {
  return fs.readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${fd}`).startsWith(dir + '/');
    } catch {
      return false;
    }
  });
}
