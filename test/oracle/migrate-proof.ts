// The proof that a migrated store is the same store, as the real daemon sees it
// (issue 12, "Proof with the real daemon"):
//
//   const before = await captureBefore(d);          // dockerd on the source driver
//   …stop d, `strata migrate --root d.dataRoot --to T`, start d2 on the same dir with --storage-driver T…
//   const diffs = await checkAfter(d2, before);     // [] when docker sees the same store
//
// captureBefore records, from the daemon only (nothing is assumed):
//   - `docker image ls -a` rows (repository, tag, id, created, size: incl. dangling and intermediate images);
//   - per image `docker image inspect` (RepoTags, Parent, Created, Size, RootFS.Layers);
//   - per top-level image (`docker image ls`, incl. untagged) `docker save`: the layer tars' sha256
//     (= the DiffIDs) and one probe file — the first regular file of its highest layer that has one —
//     with the sha256 of its bytes, for `docker run` to read back;
//   - per container its id, name, image, `docker diff` and a digest of `docker export` (every
//     entry's path, type, mode, owner, size, link target and content hash; not times).
// checkAfter asks the new daemon the same and returns one line per difference, naming the
// image or container (on another driver, inspect's byte Size only as a note: see there); also: `docker run --rm --network none IMG cat PROBE` must print bytes with the
// recorded hash, and every old container must start (`docker start -a`; its exit code is not
// compared: a container's command need not be rerunnable) with its state advancing.
// The export digest and docker diff are taken before the container starts again.
import { createHash } from 'node:crypto';
import tarStream from 'tar-stream';
import type { Dockerd } from './dockerd.ts';

export interface ImageLsRow {
  repository: string;
  tag: string;
  id: string;
  createdAt: string;
  size: string;
}

export interface ImageFacts {
  id: string;
  repoTags: string[];
  parent: string;
  created: string;
  size: number;
  layers: string[];
}

export interface SavedImage {
  id: string;
  /** sha256 of each layer.tar of `docker save`, bottom first */
  layerDigests: string[];
  /** a file the image's layers put there, and the sha256 of its bytes ('' when no layer has a regular file) */
  probe: { path: string; sha256: string };
}

export interface ContainerFacts {
  id: string;
  name: string;
  image: string;
  /** `docker diff`, sorted */
  diff: string[];
  /** sha256 over the sorted `docker export` entry lines */
  exportDigest: string;
  /** the export's entry lines (kept to name the first difference) */
  exportEntries: string[];
  startedAt: string;
}

export interface Capture {
  driver: string;
  imageLs: ImageLsRow[];
  images: ImageFacts[];
  saved: SavedImage[];
  containers: ContainerFacts[];
}

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
const lines = (s: string) => s.split('\n').filter(Boolean);
const short = (id: string) => id.replace(/^sha256:/, '').slice(0, 12);

/** The entries of a tar: name → header and body. */
async function readTar(buf: Buffer): Promise<{ header: tarStream.Header; body: Buffer }[]> {
  const ex = tarStream.extract();
  const out: { header: tarStream.Header; body: Buffer }[] = [];
  ex.on('entry', (header, stream, next) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: unknown) => chunks.push(c as Buffer));
    stream.on('end', () => {
      out.push({ header, body: Buffer.concat(chunks) });
      next();
    });
    stream.resume();
  });
  const done = new Promise<void>((resolve, reject) => {
    ex.on('finish', () => resolve());
    ex.on('error', reject);
  });
  ex.end(buf);
  await done;
  return out;
}

async function imageLs(d: Dockerd): Promise<ImageLsRow[]> {
  const rows = lines(await d.docker(['image', 'ls', '-a', '--no-trunc', '--format', '{{json .}}']))
    .map((l) => JSON.parse(l) as { Repository: string; Tag: string; ID: string; CreatedAt: string; Size: string })
    .map((r) => ({ repository: r.Repository, tag: r.Tag, id: r.ID, createdAt: r.CreatedAt, size: r.Size }));
  return rows.sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
}

async function imageFacts(d: Dockerd, ids: string[]): Promise<ImageFacts[]> {
  if (ids.length === 0) return [];
  const raw = JSON.parse(await d.docker(['image', 'inspect', ...ids])) as {
    Id: string; RepoTags: string[]; Parent: string; Created: string; Size: number; RootFS: { Layers?: string[] };
  }[];
  return raw.map((i) => ({
    id: i.Id, repoTags: [...i.RepoTags].sort(), parent: i.Parent, created: i.Created, size: i.Size, layers: i.RootFS.Layers ?? [],
  })).sort((a, b) => a.id.localeCompare(b.id));
}

/** `docker save ID`: its layer digests (manifest order) and a probe file. */
async function saveImage(d: Dockerd, id: string): Promise<SavedImage> {
  const entries = await readTar(await d.dockerBytes(['save', id]));
  const byName = new Map(entries.map((e) => [e.header.name, e]));
  const manifest = JSON.parse(byName.get('manifest.json')!.body.toString('utf8')) as { Layers: string[] }[];
  const layerTars = manifest[0].Layers.map((l) => {
    const e = byName.get(l);
    if (!e) throw new Error(`docker save ${id}: manifest names ${l}, which the archive lacks`);
    return e.body;
  });
  const layerEntries = await Promise.all(layerTars.map(readTar));
  let probe = { path: '', sha256: '' };
  for (const es of [...layerEntries].reverse()) {
    const f = es.find((e) => e.header.type === 'file' && !e.header.name.split('/').pop()!.startsWith('.wh.'));
    if (f) {
      probe = { path: '/' + f.header.name.replace(/^\.?\//, ''), sha256: sha256(f.body) };
      break;
    }
  }
  return { id, layerDigests: layerTars.map((b) => `sha256:${sha256(b)}`), probe };
}

/** One line per `docker export` entry: what the container's file system holds, not when. */
async function exportLines(d: Dockerd, id: string): Promise<string[]> {
  const entries = await readTar(await d.dockerBytes(['export', id]));
  return entries.map(({ header: h, body }) =>
    [h.name, h.type, (h.mode ?? 0).toString(8), `${h.uid}:${h.gid}`, h.size, h.linkname ?? '', h.type === 'file' ? sha256(body) : ''].join(' '))
    .sort();
}

async function containerFacts(d: Dockerd): Promise<ContainerFacts[]> {
  const ids = lines(await d.docker(['container', 'ls', '-aq', '--no-trunc']));
  const out: ContainerFacts[] = [];
  for (const id of ids) {
    const [c] = JSON.parse(await d.docker(['container', 'inspect', id])) as { Id: string; Name: string; Image: string; State: { StartedAt: string } }[];
    const exportEntries = await exportLines(d, id);
    out.push({
      id: c.Id, name: c.Name, image: c.Image, diff: lines(await d.docker(['diff', id])).sort(),
      exportDigest: sha256(exportEntries.join('\n')), exportEntries, startedAt: c.State.StartedAt,
    });
  }
  return out.sort((a, b) => a.id.localeCompare(b.id));
}

/** The ids `docker image ls` shows (top-level images, tagged or dangling). */
async function topImageIds(d: Dockerd): Promise<string[]> {
  return [...new Set(lines(await d.docker(['image', 'ls', '-q', '--no-trunc'])))].sort();
}

/** What the daemon `d` says about its store (see the header). */
export async function captureBefore(d: Dockerd): Promise<Capture> {
  const all = [...new Set(lines(await d.docker(['image', 'ls', '-aq', '--no-trunc'])))];
  const saved: SavedImage[] = [];
  for (const id of await topImageIds(d)) saved.push(await saveImage(d, id));
  return { driver: d.driver, imageLs: await imageLs(d), images: await imageFacts(d, all), saved, containers: await containerFacts(d) };
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** The fields of two records that differ, as `field before → after`. */
function fieldChanges<T extends object>(before: T, after: T): string {
  return (Object.keys(before) as (keyof T)[]).filter((k) => !same(before[k], after[k]))
    .map((k) => `${String(k)} ${JSON.stringify(before[k])} → ${JSON.stringify(after[k])}`).join(', ');
}

/** The first line where two sorted lists differ, for a message. */
function firstDifference(a: string[], b: string[]): string {
  const onlyA = a.filter((x) => !b.includes(x));
  const onlyB = b.filter((x) => !a.includes(x));
  return `before only: ${JSON.stringify(onlyA.slice(0, 5))}; after only: ${JSON.stringify(onlyB.slice(0, 5))}`;
}

/**
 * Ask daemon `d` (on the migrated root) everything `before` recorded; return one line per
 * difference (empty: docker sees the same store). Runs every top-level image and starts every old
 * container, so it changes the containers' state: call it once per capture. What differs only
 * the way a driver switch makes dockerd itself differ (an image's byte Size) goes to `notes`.
 */
export async function checkAfter(d: Dockerd, before: Capture, notes: string[] = []): Promise<string[]> {
  const diffs: string[] = [];
  const ls = await imageLs(d);
  const key = (r: ImageLsRow) => `${r.repository}:${r.tag}@${r.id}`;
  for (const r of before.imageLs) {
    const a = ls.find((x) => key(x) === key(r));
    if (!a) diffs.push(`image ls: row ${key(r)} (image ${short(r.id)}) is gone`);
    else if (!same(a, r)) diffs.push(`image ls: row ${key(r)} (image ${short(r.id)}) changed: ${fieldChanges(r, a)}`);
  }
  for (const r of ls) if (!before.imageLs.some((x) => key(x) === key(r))) diffs.push(`image ls: new row ${key(r)} (image ${short(r.id)})`);

  const all = [...new Set(lines(await d.docker(['image', 'ls', '-aq', '--no-trunc'])))];
  const facts = await imageFacts(d, all);
  for (const b of before.images) {
    const a = facts.find((f) => f.id === b.id);
    if (!a) diffs.push(`image ${short(b.id)}: docker image inspect no longer knows it`);
    else if (!same(a, b)) {
      // Size is Σ of the layers' layerdb `size`, which each driver's ApplyDiff computes its own way:
      // dockerd 20.10 itself records 1982481 bytes for the busybox import on vfs and 1982649 on
      // overlay2 and btrfs. Across drivers it is noted, not compared (image ls' Size column is).
      const driverSized = before.driver !== d.driver && same({ ...a, size: 0 }, { ...b, size: 0 });
      (driverSized ? notes : diffs).push(`image ${short(b.id)}: docker image inspect differs: ${fieldChanges(b, a)}`);
    }
  }

  const top = await topImageIds(d);
  for (const b of before.saved) {
    if (!top.includes(b.id)) {
      diffs.push(`image ${short(b.id)}: not listed by docker image ls, cannot save or run it`);
      continue;
    }
    const a = await saveImage(d, b.id).catch((e: Error) => e);
    if (a instanceof Error) diffs.push(`image ${short(b.id)}: docker save failed: ${a.message}`);
    else if (!same(a.layerDigests, b.layerDigests)) diffs.push(`image ${short(b.id)}: docker save layer digests ${JSON.stringify(a.layerDigests)} ≠ before ${JSON.stringify(b.layerDigests)}`);
    if (b.probe.path === '') continue;
    const out = await d.dockerBytes(['run', '--rm', '--network', 'none', b.id, 'cat', b.probe.path]).catch((e: Error) => e);
    if (out instanceof Error) diffs.push(`image ${short(b.id)}: docker run failed: ${out.message}`);
    else if (sha256(out) !== b.probe.sha256) diffs.push(`image ${short(b.id)}: docker run cat ${b.probe.path} printed bytes hashing to ${sha256(out)}, the saved layer holds ${b.probe.sha256}`);
  }

  const ctrs = await containerFacts(d);
  for (const b of before.containers) {
    const a = ctrs.find((c) => c.id === b.id);
    if (!a) {
      diffs.push(`container ${b.name} (${short(b.id)}): gone`);
      continue;
    }
    if (a.name !== b.name || a.image !== b.image) diffs.push(`container ${b.name}: name/image ${a.name} ${a.image} ≠ before ${b.name} ${b.image}`);
    if (!same(a.diff, b.diff)) diffs.push(`container ${b.name}: docker diff differs: ${firstDifference(b.diff, a.diff)}`);
    if (a.exportDigest !== b.exportDigest) diffs.push(`container ${b.name}: docker export differs: ${firstDifference(b.exportEntries, a.exportEntries)}`);
    // the exit code is the command's business; that it ran on this root is what counts
    const run = await d.docker(['start', '-a', b.id]).then(() => null, (e: Error) => e);
    const st = JSON.parse(await d.docker(['container', 'inspect', '--format', '{{json .State}}', b.id])) as { StartedAt: string; Error: string };
    if (st.Error !== '' || !(Date.parse(st.StartedAt) > Date.parse(b.startedAt))) {
      diffs.push(`container ${b.name}: did not start (state error "${st.Error}", started ${st.StartedAt}${run ? `; ${run.message}` : ''})`);
    }
  }
  for (const a of ctrs) if (!before.containers.some((b) => b.id === a.id)) diffs.push(`container ${a.name} (${short(a.id)}): new`);
  return diffs;
}
