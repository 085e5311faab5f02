// Whether this process runs in a user namespace other than the initial one.
//
// Same test as moby/containerd's userns.RunningInUserNS: the initial namespace's
// uid_map is the identity over the whole range ("0 0 4294967295"); anything else
// means a user namespace, where trusted.* xattrs and device nodes are out of
// reach and overlayfs wants `userxattr`.
import * as fs from 'node:fs';

let cached: boolean | undefined;

export function runningInUserNS(): boolean {
  if (cached === undefined) {
    let map = '';
    try {
      map = fs.readFileSync('/proc/self/uid_map', 'utf8');
    } catch {
      return (cached = false); // no /proc: assume the host, as moby does
    }
    const lines = map.trim().split('\n');
    const f = lines[0]?.trim().split(/\s+/) ?? [];
    cached = !(lines.length === 1 && f[0] === '0' && f[1] === '0' && f[2] === '4294967295');
  }
  return cached;
}
