// containerd's content store (io.containerd.content.v1.content/blobs/<alg>/<hex>)
// and the image-spec documents in it: an image's target (an index or a
// manifest) resolved to this host's platform, its config and its layers.
// Blobs are read through the store's bounded read-only opens; a document
// that is missing, too large or not what its media type says is a problem.
import * as path from 'node:path';
import { digestHex, isDigest } from '../digests.ts';
import type { StoreFiles } from '../store-files.ts';
import { asObject, asString } from '../../sys/read-only-files.ts';
import type { CtrBlob, Descriptor } from './meta-db.ts';

export const CONTENT_DIR = 'io.containerd.content.v1.content';

const INDEX_TYPES = new Set(['application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.list.v2+json']);
const MANIFEST_TYPES = new Set(['application/vnd.oci.image.manifest.v1+json', 'application/vnd.docker.distribution.manifest.v2+json']);

/** The blob file of `digest`, or null for a digest that is not sha256 (no path is built from it). */
export function blobPath(root: string, digest: string): string | null {
  return isDigest(digest) ? path.join(root, CONTENT_DIR, 'blobs', 'sha256', digestHex(digest)) : null;
}

/** linux/<arch> of this host, as image-spec names architectures. */
export function hostPlatform(): { os: string; architecture: string } {
  const arch: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };
  return { os: 'linux', architecture: arch[process.arch] ?? process.arch };
}

export interface ResolvedImage {
  /** the platform manifest, or null when it cannot be reached */
  manifest: Descriptor | null;
  config: Descriptor | null;
  configJson: Record<string, unknown> | null;
  configPath: string;
  layers: Descriptor[];
  /** platforms an index lists ("linux/amd64") */
  platforms: string[];
  /** digests reached that are not in the content store */
  missing: string[];
  /** sum of the sizes of target, platform manifest, config and layers (containerd Image.Size) */
  contentSize: number;
}

function descriptorOf(v: unknown): Descriptor | null {
  const o = asObject(v);
  if (!o || !isDigest(o.digest)) return null;
  return { digest: o.digest as string, mediaType: asString(o.mediaType), size: typeof o.size === 'number' ? o.size : null };
}

function platformText(p: Record<string, unknown> | null): string {
  if (!p) return 'unknown';
  return `${asString(p.os)}/${asString(p.architecture)}${p.variant ? `/${asString(p.variant)}` : ''}`;
}

const CONFIG_REF = 'containerd.io/gc.ref.content.config';

/**
 * A manifest's config and layers from the GC labels containerd put on its
 * blob record (core/images ChildGCLabels: `…config`, `…l.<i>` in manifest
 * order), sizes from the blobs' records: the manifest file is not read.
 * Null when a label or a blob record is missing (then the manifest is read).
 * Media types are not known this way ('').
 */
function fromLabels(blobs: Map<string, CtrBlob>, manifest: string): { config: Descriptor; layers: Descriptor[] } | null {
  const labels = blobs.get(manifest)?.labels;
  const config = labels?.[CONFIG_REF];
  const cb = config === undefined ? undefined : blobs.get(config);
  if (!labels || !cb) return null;
  const layers: Descriptor[] = [];
  for (let i = 0; labels[`containerd.io/gc.ref.content.l.${i}`] !== undefined; i++) {
    const lb = blobs.get(labels[`containerd.io/gc.ref.content.l.${i}`]);
    if (!lb) return null;
    layers.push({ digest: lb.digest, mediaType: '', size: lb.size });
  }
  return { config: { digest: cb.digest, mediaType: '', size: cb.size }, layers };
}

/**
 * Follow `target` to the manifest for `platform` (an index: its first
 * manifest for that os/architecture that is not an attestation) and read its
 * config. Problems go to `files.problems` against the blob concerned. With
 * `blobs` (the namespace's blob records), a manifest's config and layers come
 * from its GC labels where they are complete, without reading it.
 */
export function resolveImage(root: string, name: string, target: Descriptor, files: StoreFiles, blobs?: Map<string, CtrBlob>, platform = hostPlatform()): ResolvedImage {
  const out: ResolvedImage = { manifest: null, config: null, configJson: null, configPath: '', layers: [], platforms: [], missing: [], contentSize: target.size ?? 0 };
  const read = (d: Descriptor, what: string) => {
    const p = blobPath(root, d.digest);
    if (!p) {
      files.problems.add(path.join(root, CONTENT_DIR), `image ${name}: ${what} digest ${JSON.stringify(d.digest)} is not a sha256 digest`);
      return null;
    }
    const r = files.jsonObject(p, { what: `${what} of image ${name}`, required: false });
    if (r === null && !files.problems.list.some((x) => x.path === p)) out.missing.push(d.digest);
    return r;
  };
  let manifest: Descriptor | null = target;
  if (INDEX_TYPES.has(target.mediaType)) {
    manifest = null;
    const idx = read(target, 'index');
    const list = Array.isArray(idx?.value.manifests) ? (idx!.value.manifests as unknown[]) : [];
    for (const m of list) {
      const d = descriptorOf(m);
      const o = asObject(m)!;
      const p = asObject(o?.platform);
      const attestation = asObject(o?.annotations)?.['vnd.docker.reference.type'] === 'attestation-manifest';
      if (!attestation) out.platforms.push(platformText(p));
      if (d && !manifest && !attestation && p && p.os === platform.os && p.architecture === platform.architecture) manifest = d;
    }
    if (idx && !manifest) {
      files.problems.warn(blobPath(root, target.digest)!, `image ${name}: the index has no ${platform.os}/${platform.architecture} manifest (platforms: ${out.platforms.join(', ') || 'none'})`);
    }
  } else if (!MANIFEST_TYPES.has(target.mediaType)) {
    files.problems.warn(path.join(root, CONTENT_DIR), `image ${name}: target media type ${JSON.stringify(target.mediaType)} is not an image index or manifest`);
    manifest = null;
  }
  if (!manifest) return out;
  out.manifest = manifest;
  if (manifest !== target) out.contentSize += manifest.size ?? 0;
  const labelled = blobs && fromLabels(blobs, manifest.digest);
  if (labelled) {
    out.config = labelled.config;
    out.layers = labelled.layers;
  } else {
    const m = read(manifest, 'manifest');
    if (!m) return out;
    out.config = descriptorOf(m.value.config);
    out.layers = (Array.isArray(m.value.layers) ? m.value.layers : []).map(descriptorOf).filter((d): d is Descriptor => d !== null);
  }
  out.contentSize += (out.config?.size ?? 0) + out.layers.reduce((s, l) => s + (l.size ?? 0), 0);
  if (!out.config) {
    files.problems.add(blobPath(root, manifest.digest)!, `image ${name}: manifest has no config descriptor`);
    return out;
  }
  const c = read(out.config, 'config');
  out.configPath = blobPath(root, out.config.digest) ?? '';
  out.configJson = c?.value ?? null;
  if (!out.platforms.length && out.configJson) out.platforms.push(platformText(out.configJson));
  return out;
}

/** The config's rootfs.diff_ids (sha256 digests only). */
export function diffIdsOf(config: Record<string, unknown> | null): string[] {
  const rootfs = asObject(config?.rootfs);
  return Array.isArray(rootfs?.diff_ids) ? (rootfs!.diff_ids as unknown[]).filter(isDigest) as string[] : [];
}
