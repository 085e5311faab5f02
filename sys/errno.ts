// errno numbers to their names (EPERM, ENOENT, …), from Node's own table: no FFI needed.
import { constants as osConstants } from 'node:os';

const errnoNames = new Map<number, string>();
for (const [name, num] of Object.entries(osConstants.errno)) if (!errnoNames.has(num)) errnoNames.set(num, name);

/** The name of errno `errno`, or `E<n>` for one Node does not know. */
export function errnoName(errno: number): string {
  return errnoNames.get(errno) ?? `E${errno}`;
}
