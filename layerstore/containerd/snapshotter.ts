// What strata knows of one containerd snapshotter, and one snapshotter's
// store under a containerd root read through it. A snapshotter is a folder
// of facts (snapshotters/<name>.ts): where a snapshot's tree lives for its
// kind, whether that tree is the whole file system or only the snapshot's
// own changes over its parents' trees (an overlay upper dir), and how
// `ctr snapshots usage` measures an active one. Everything generic — the
// metadata.db records, parents, usage of committed snapshots, changes —
// lives here, once; snapshotters/all.ts lists the folders.
import * as path from 'node:path';
import type { Change } from '../../archive/types.ts';
import { changesDirs, changesFromDiffDir } from '../../archive/changes.ts';
import type { Problems } from '../problems.ts';
import { readMetaStore, type BackendSnapshot } from './snapshotters/meta-store.ts';
import type { Usage } from './snapshotters/usage.ts';

export type { BackendSnapshot, SnapshotKind } from './snapshotters/meta-store.ts';
export { treeUsage, diffUsage, type Usage } from './snapshotters/usage.ts';

export interface SnapshotterFacts {
  /** containerd's plugin id (io.containerd.snapshotter.v1.<name>) and the name meta.db files snapshots under */
  name: string;
  /**
   * 'upper': a tree holds only the snapshot's changes, whiteouts in overlay
   * form, over its parents' trees; 'full': a tree is the whole file system
   * (a copy or a btrfs snapshot of the parent's), diffed naively.
   */
  trees: 'upper' | 'full';
  /** the directories under the home that hold one entry per snapshot id */
  idDirs: string[];
  /** the entry (relative to the home) snapshot `s` owns on disk; null when it owns none (a native view shares its parent's) */
  ownDir(s: BackendSnapshot): string | null;
  /** the snapshot's tree relative to the home; `parentTree` (asked only where needed: a native view reads its parent's) gives the parent's */
  tree(s: BackendSnapshot, parentTree: () => string | null): string | null;
  /** `ctr snapshots usage` of an active snapshot (trees absolute); committed ones carry theirs from the commit */
  activeUsage(tree: string, parentTree: string | null): Usage;
  /** what else a present tree must be, for verify: null when it is, else what is wrong (btrfs: a subvolume) */
  checkTree?(tree: string): string | null;
  /** what `inspect` shows as GraphDriver.Data beside Dir (absolute paths) */
  extraDirs?(home: string, s: BackendSnapshot): Record<string, string>;
}

/** The snapshotter's directory under a containerd root. */
export function snapshotterHome(root: string, name: string): string {
  return path.join(root, `io.containerd.snapshotter.v1.${name}`);
}

/** One snapshotter's store under a containerd root: its facts, its home, its records by its own key. */
export class SnapshotterStore {
  readonly home: string;
  private byIdCache: Map<string, BackendSnapshot> | null = null;

  constructor(readonly facts: SnapshotterFacts, root: string, readonly records: Map<string, BackendSnapshot>) {
    this.home = snapshotterHome(root, facts.name);
  }

  /** Its metadata.db read; null when the root has none for it (the snapshotter never stored anything). */
  static read(facts: SnapshotterFacts, root: string, problems: Problems): SnapshotterStore | null {
    const records = readMetaStore(snapshotterHome(root, facts.name), problems);
    return records && new SnapshotterStore(facts, root, records);
  }

  get name(): string {
    return this.facts.name;
  }

  byId(id: string): BackendSnapshot | null {
    this.byIdCache ??= new Map([...this.records.values()].filter((s) => s.id).map((s) => [s.id!, s]));
    return this.byIdCache.get(id) ?? null;
  }

  parentOf(s: BackendSnapshot): BackendSnapshot | null {
    return s.parent === null ? null : this.records.get(s.parent) ?? null;
  }

  /** The absolute tree of `s` (null when it has none, or its parent is missing where it needs one). */
  tree(s: BackendSnapshot, seen = new Set<string>()): string | null {
    if (seen.has(s.name)) return null;
    seen.add(s.name);
    const rel = this.facts.tree(s, () => {
      const p = this.parentOf(s);
      return p ? this.treeRel(p, seen) : null;
    });
    return rel === null ? null : path.join(this.home, rel);
  }

  private treeRel(s: BackendSnapshot, seen: Set<string>): string | null {
    const t = this.tree(s, seen);
    return t === null ? null : path.relative(this.home, t);
  }

  /** The absolute per-id entry `s` owns, or null. */
  ownDir(s: BackendSnapshot): string | null {
    const rel = this.facts.ownDir(s);
    return rel === null ? null : path.join(this.home, rel);
  }

  /** `ctr snapshots usage`: committed (and view) snapshots as recorded, an active one measured as its snapshotter does. */
  usage(s: BackendSnapshot): Usage {
    if (s.kind !== 'Active') return { size: s.size ?? 0, inodes: s.inodes ?? 0 };
    const tree = this.tree(s);
    if (tree === null) throw new Error(`snapshot ${s.name} (${this.name}) has no tree`);
    const p = this.parentOf(s);
    return this.facts.activeUsage(tree, p ? this.tree(p) : null);
  }

  /**
   * The parents of `s`, nearest first; throws naming the snapshot when a
   * parent is missing or the chain loops.
   */
  parents(s: BackendSnapshot): BackendSnapshot[] {
    const out: BackendSnapshot[] = [];
    const seen = new Set([s.name]);
    for (let p = s.parent; p !== null; ) {
      const b = this.records.get(p);
      if (!b || seen.has(p)) throw new Error(`snapshot ${s.name}: parent ${p} ${b ? 'loops' : 'is missing'}`);
      seen.add(p);
      out.push(b);
      p = b.parent;
    }
    return out;
  }

  /** What `s` changes over its parent, as `docker diff` lists it (moby's ChangesDirs), sorted by path. */
  changes(s: BackendSnapshot): Change[] {
    const tree = this.tree(s);
    if (tree === null) throw new Error(`snapshot ${s.name} has no tree`);
    const parents = this.parents(s);
    const trees = parents.map((p) => {
      const t = this.tree(p);
      if (t === null) throw new Error(`snapshot ${s.name}: parent ${p.name} has no tree`);
      return t;
    });
    if (this.facts.trees === 'upper') return changesFromDiffDir(tree, trees, 'overlay');
    return changesDirs(tree, trees[0] ?? null);
  }

  /** GraphDriver.Data of `s`. */
  dirs(s: BackendSnapshot): Record<string, string> {
    const out: Record<string, string> = {};
    const tree = this.tree(s);
    if (tree !== null) out.Dir = tree;
    out.SnapshotKey = s.name;
    out.Kind = s.kind;
    return { ...out, ...this.facts.extraDirs?.(this.home, s) };
  }
}
