// Every snapshotter strata reads, in containerd's order of preference
// (overlayfs is its default; native runs anywhere; btrfs where the root is
// on btrfs). A new one is a file of facts here and one line below.
import type { SnapshotterFacts } from '../snapshotter.ts';
import { btrfs } from './btrfs.ts';
import { native } from './native.ts';
import { overlayfs } from './overlayfs.ts';

export const SNAPSHOTTERS: readonly SnapshotterFacts[] = [overlayfs, native, btrfs];
