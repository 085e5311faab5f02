// Bytes a layer directory holds: the plan's copy estimate.
import { directorySize } from '../archive/tree-size.ts';

/** directory.Size of `dir` (each hardlinked inode once); 0 when unreadable. */
export function treeBytes(dir: string): number {
  try {
    return directorySize(dir);
  } catch {
    return 0;
  }
}
