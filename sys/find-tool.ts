// Where an external tool (getfattr, xfs_quota) is: the PATH, then the sbin
// dirs a root shell would have (a user's PATH often lacks them).
import * as fs from 'node:fs';
import * as path from 'node:path';

/** The executable `name` on the PATH or in /usr/sbin, /sbin; null when there is none. */
export function findTool(name: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin'])) {
    if (!dir) continue;
    const p = path.join(dir, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      // keep looking
    }
  }
  return null;
}
