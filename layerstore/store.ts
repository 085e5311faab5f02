// Open whatever store is under a root: detect its layout (modern
// content-addressable, legacy graph, registry v1 tree, containerd root) and
// its driver, and read it into the one model (model.ts). Read-only, always.
// Detection looks only at a layout's marks; the reader of the layout found is
// loaded then (openStore is async for that): a containerd root does not load
// the legacy and registry v1 readers and the drivers' layouts, nor a Docker
// root the bbolt reader. (The modern reader is the common case, and the
// containerd reader shares its history code.)
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { StoreKind, StoreModel } from './model.ts';
import { modernDrivers, readModernStore } from './modern-store.ts';
import { InspectError, Problems } from './problems.ts';
import { isDirectory } from '../sys/read-only-files.ts';
import type { ContainerdOptions } from './containerd/store.ts';
import { isContainerdRoot, META_DB } from './containerd/root.ts';

export interface OpenOptions extends ContainerdOptions {
  /** the storage driver whose metadata to read when the store holds several */
  driver?: string;
}

export interface Detected {
  kind: StoreKind;
  /** why this layout was chosen, for messages */
  evidence: string;
}

/** Which layout is under `root`, or null when none is recognised. */
export function detectLayout(root: string): Detected | null {
  const modern = modernDrivers(root);
  if (modern.length) return { kind: 'modern', evidence: `image/${modern.join(', image/')}` };
  if (isDirectory(path.join(root, 'graph'))) return { kind: 'legacy', evidence: 'graph/' };
  if (isDirectory(path.join(root, 'images')) && isDirectory(path.join(root, 'repositories'))) return { kind: 'registry-v1', evidence: 'images/ and repositories/' };
  if (isContainerdRoot(root)) return { kind: 'containerd', evidence: META_DB };
  return null;
}

/**
 * Read the store under `root`. Rejects with InspectError only when there is
 * no store at all; everything else wrong is in the model's problems.
 */
export async function openStore(root: string, opts: OpenOptions = {}): Promise<StoreModel> {
  const abs = path.resolve(root);
  let st: fs.Stats;
  try {
    st = fs.statSync(abs);
  } catch (e) {
    throw new InspectError(`${abs}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such directory' : (e as Error).message}`, abs);
  }
  if (!st.isDirectory()) throw new InspectError(`${abs} is not a directory`, abs);
  const d = detectLayout(abs);
  if (!d) {
    throw new InspectError(`${abs} holds no Docker image store (expected image/<driver>/ (Docker ≥ 1.10), graph/ (≤ 1.9), images/ + repositories/ (registry v1) or ${META_DB} (containerd))`, abs);
  }
  const problems = new Problems();
  switch (d.kind) {
    case 'modern': {
      const model = readModernStore(abs, opts, problems);
      if (isDirectory(path.join(abs, 'graph'))) problems.warn(path.join(abs, 'graph'), 'pre-1.10 graph/ is still here (read it with a copy of the root without image/)');
      return model;
    }
    case 'legacy':
      return (await import('./legacy-graph.ts')).readLegacyStore(abs, opts, problems);
    case 'registry-v1':
      return (await import('./registry-v1.ts')).readRegistryV1(abs, problems);
    case 'containerd':
      return (await import('./containerd/store.ts')).readContainerdStore(abs, opts, problems);
  }
}

/**
 * Find an image by full id, "sha256:" id, unique id prefix (≥ 1 char, as
 * docker), or "repo:tag" / "repo" (= repo:latest) / "repo@digest".
 */
export function findImage(model: StoreModel, ref: string): string {
  const images = model.images;
  if (images.has(ref)) return ref;
  if (images.has(`sha256:${ref}`)) return `sha256:${ref}`;
  const wanted = ref.includes('@') || /:[^/]+$/.test(ref) ? ref : `${ref}:latest`;
  for (const img of images.values()) {
    if (img.tags.includes(wanted) || img.digests.includes(ref)) return img.id;
    // docker.io/library/x and library/x name x
    const short = wanted.replace(/^docker\.io\//, '').replace(/^library\//, '');
    if (img.tags.includes(short)) return img.id;
  }
  const hex = ref.replace(/^sha256:/, '');
  if (/^[0-9a-f]+$/.test(hex)) {
    const hits = [...images.keys()].filter((id) => id.replace(/^sha256:/, '').startsWith(hex));
    if (hits.length === 1) return hits[0];
    if (hits.length > 1) throw new InspectError(`${ref}: ambiguous image id prefix (${hits.length} images)`);
  }
  throw new InspectError(`no such image: ${ref}`);
}

/** Find a container by id, unique id prefix or name. */
export function findContainer(model: StoreModel, ref: string): string {
  const byName = model.containers.find((c) => c.name === ref.replace(/^\//, ''));
  if (byName) return byName.id;
  const hits = model.containers.filter((c) => c.id.startsWith(ref));
  if (hits.length === 1) return hits[0].id;
  if (hits.length > 1) throw new InspectError(`${ref}: ambiguous container id prefix (${hits.length} containers)`);
  throw new InspectError(`no such container: ${ref}`);
}

/** Find a layer by key, chain id, diff id, cache id or unique prefix of those. */
export function findLayer(model: StoreModel, ref: string): string {
  if (model.layers.has(ref)) return ref;
  if (model.layers.has(`sha256:${ref}`)) return `sha256:${ref}`;
  const hex = ref.replace(/^sha256:/, '');
  const hits = new Set<string>();
  for (const l of model.layers.values()) {
    if (l.key.replace(/^sha256:/, '').startsWith(hex)) hits.add(l.key);
  }
  if (hits.size === 0) {
    for (const l of model.layers.values()) {
      if ((l.diffId && l.diffId.replace(/^sha256:/, '').startsWith(hex)) || (l.cacheId && l.cacheId.startsWith(ref))) hits.add(l.key);
    }
  }
  if (hits.size === 1) return [...hits][0];
  if (hits.size > 1) throw new InspectError(`${ref}: ambiguous layer reference (${hits.size} layers)`);
  throw new InspectError(`no such layer: ${ref}`);
}
