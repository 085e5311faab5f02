// `strata verify` on a containerd store: every blob against its digest and
// recorded size; every image's content present for this platform, its
// manifest's layers as many as the config's diff_ids, and the layers' blobs
// uncompressed to those diff_ids; every snapshot chain of every snapshotter
// (meta.db key → the snapshotter's record → its tree, parents matching on
// both sides, no loops) and the chain ids of the config's diff_ids unpacked
// as committed snapshots of the images' snapshotter; containers' images present.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import type { Problem } from '../layerstore/problems.ts';
import { backendOf, type ContainerdModel } from '../layerstore/containerd/store.ts';
import { blobPath, diffIdsOf, resolveImage } from '../layerstore/containerd/content.ts';
import { StoreFiles } from '../layerstore/store-files.ts';
import { describeFsError, isDirectory, openRegular } from '../sys/read-only-files.ts';
import { parentLoops, type VerifyOptions, type VerifyReport } from './verify.ts';

/** sha256 of a file's bytes, or of its gunzip'd bytes; the bytes hashed. */
async function hashBlob(file: string, gunzip: boolean): Promise<{ digest: string; bytes: number }> {
  const { fd } = openRegular(file);
  const h = createHash('sha256');
  let bytes = 0;
  const sink = async (src: AsyncIterable<Buffer>) => {
    for await (const c of src) {
      h.update(c);
      bytes += c.length;
    }
  };
  const input = fs.createReadStream('', { fd });
  if (gunzip) await pipeline(input, zlib.createGunzip(), sink);
  else await pipeline(input, sink);
  return { digest: `sha256:${h.digest('hex')}`, bytes };
}

const GZIP_TYPES = /(\.tar\.gzip|tar\+gzip|\.tar\.gz)$|rootfs\.diff\.tar\.gzip$/;
const PLAIN_TYPES = /(image\.layer\.v1\.tar|rootfs\.diff\.tar)$/;

export async function verifyContainerdStore(model: ContainerdModel, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const content = opts.content ?? true;
  const d = model.containerd;
  const problems = model.problems;
  const notChecked: Problem[] = [];
  const metaDb = path.join(model.metaDir, 'meta.db');
  let hashed = 0;
  let bytesHashed = 0;

  for (const b of d.ns.blobs.values()) {
    const file = blobPath(d.root, b.digest);
    if (!file) {
      problems.add(metaDb, `content ${JSON.stringify(b.digest)} is not a sha256 digest`);
      continue;
    }
    let st: fs.Stats;
    try {
      st = fs.lstatSync(file);
    } catch (e) {
      problems.add(file, `blob ${describeFsError(e)}`);
      continue;
    }
    if (b.size !== null && st.size !== b.size) problems.add(file, `blob is ${st.size} bytes, meta.db records ${b.size}`);
    if (!content) continue;
    try {
      const { digest } = await hashBlob(file, false);
      if (digest !== b.digest) problems.add(file, `blob content digests to ${digest}`);
    } catch (e) {
      problems.add(file, `blob ${describeFsError(e)}`);
    }
  }

  const checkedLayers = new Set<string>();
  for (const img of d.ns.images) {
    // read again, manifests included: the listing took config and layers from GC labels, without media types
    const r = resolveImage(d.root, img.name, img.target, new StoreFiles(problems));
    for (const m of r.missing) problems.add(blobPath(d.root, m) ?? metaDb, `image ${img.name}: content is missing`);
    if (!r.configJson) continue;
    const diffIds = diffIdsOf(r.configJson);
    const rec = model.images.get(img.target.digest);
    if (r.layers.length !== diffIds.length) problems.add(r.configPath, `image ${img.name}: ${diffIds.length} diff_ids, but its manifest lists ${r.layers.length} layers`);
    const top = rec?.layers[rec.layers.length - 1];
    const label = d.ns.blobs.get(r.config!.digest)?.labels[`containerd.io/gc.ref.snapshot.${d.snapshotter}`];
    if (label !== undefined && label !== top) problems.add(r.configPath, `image ${img.name}: config names snapshot ${label}, its diff_ids chain to ${top}`);
    for (const [i, chain] of (rec?.layers ?? []).entries()) {
      const b = backendOf(d, chain);
      if (!b) problems.add(metaDb, `image ${img.name}: layer ${i} (chain ${chain}) is not unpacked as a ${d.snapshotter} snapshot`);
      else if (b.kind !== 'Committed') problems.add(metaDb, `image ${img.name}: snapshot ${chain} is ${b.kind}, not Committed`);
      const desc = r.layers[i];
      if (!content || !desc || checkedLayers.has(desc.digest) || !d.ns.blobs.has(desc.digest)) continue;
      checkedLayers.add(desc.digest);
      const file = blobPath(d.root, desc.digest)!;
      const gz = GZIP_TYPES.test(desc.mediaType);
      if (!gz && !PLAIN_TYPES.test(desc.mediaType)) {
        notChecked.push({ path: file, message: `layer media type ${desc.mediaType}: diff_id not recomputed`, severity: 'warning' });
        continue;
      }
      try {
        const { digest, bytes } = await hashBlob(file, gz);
        hashed++;
        bytesHashed += bytes;
        if (digest !== diffIds[i]) problems.add(file, `image ${img.name}: layer ${i} uncompresses to ${digest}, its config's diff_id is ${diffIds[i]}`);
      } catch (e) {
        problems.add(file, `image ${img.name}: layer ${i} ${e instanceof Error && 'code' in e && String((e as NodeJS.ErrnoException).code).startsWith('Z_') ? `is not valid gzip (${e.message})` : describeFsError(e)}`);
      }
    }
  }

  for (const [sn, snaps] of d.ns.snapshots) {
    const store = d.snapshotters.get(sn);
    if (!store) continue; // warned about when the store was read
    for (const s of snaps.values()) {
      const b = backendOf(d, s.key, sn);
      if (!b) {
        problems.add(metaDb, `snapshot ${s.key}: the ${sn} snapshotter has no record ${s.name ?? '(no name)'}`);
        continue;
      }
      if (s.parent !== null && !snaps.has(s.parent)) problems.add(metaDb, `snapshot ${s.key}: parent ${s.parent} is not in the namespace`);
      const parentName = s.parent !== null ? snaps.get(s.parent)?.name ?? null : null;
      if (b.parent !== parentName) problems.add(metaDb, `snapshot ${s.key}: the ${sn} snapshotter's parent is ${b.parent ?? 'none'}, meta.db's is ${parentName ?? 'none'}`);
      const tree = store.tree(b);
      if (tree === null) problems.add(store.home, `snapshot ${s.key} (${sn}): no tree (no id, or a parent without one)`);
      else if (!isDirectory(tree)) problems.add(tree, `snapshot ${s.key} (${sn}): its tree directory is missing`);
      else {
        const wrong = store.facts.checkTree?.(tree);
        if (wrong) problems.warn(tree, `snapshot ${s.key} (${sn}): its tree ${wrong}`);
      }
    }
    for (const loop of parentLoops(snaps.keys(), (k) => snaps.get(k)?.parent ?? null)) problems.add(metaDb, `${sn} snapshot parent chain loops: ${loop.join(' → ')} → ${loop[0]}`);
  }
  for (const c of d.ns.containers) {
    if (c.image && !d.ns.images.some((i) => i.name === c.image)) problems.warn(metaDb, `container ${c.id}: image ${c.image} is not in the namespace`);
  }
  return {
    root: d.root, kind: `containerd (namespace ${d.namespace})`, driver: d.snapshotter,
    checked: { images: model.images.size, layers: model.layers.size, layersReassembled: hashed, bytesReassembled: bytesHashed, containers: d.ns.containers.length, tags: model.tags.length },
    notChecked, problems: problems.list, ok: problems.errors.length === 0,
  };
}

/** The report as text: counts, then the verdict (problems go to stderr, as for every store). */
export function renderContainerdVerify(r: VerifyReport): string {
  const c = r.checked;
  let s = `${r.root}: ${r.kind} (${r.driver}): ${c.images} images, ${c.layers} layers (${c.layersReassembled} layer blobs uncompressed and hashed, ${c.bytesReassembled} bytes), ${c.containers} containers, ${c.tags} references\n`;
  for (const p of r.notChecked) s += `not checked: ${p.path}: ${p.message}\n`;
  const errors = r.problems.filter((p) => p.severity === 'error').length;
  s += r.ok ? `ok${r.problems.length ? ` (${r.problems.length} warnings)` : ''}\n` : `${errors} problem${errors === 1 ? '' : 's'}\n`;
  return s;
}
