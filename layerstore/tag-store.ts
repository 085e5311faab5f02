// The tag store: {"Repositories":{"<repo>":{"<key>":"<target>"}}}, read from
// image/<driver>/repositories.json (Docker ≥ 1.10: keys are familiar
// references "repo:tag" / "repo@sha256:…", targets image ids) and from the
// legacy repositories-<driver> / repositories (keys are tags or digests,
// targets v1 ids), and written the way moby's reference store saves it.
import { goJson } from './go-json.ts';
import type { StoreFiles } from './store-files.ts';
import { TAG_STORE_CAP, asObject as obj } from '../sys/read-only-files.ts';

/** One key of one repository, as the file holds it. */
export interface TagEntry {
  repository: string;
  key: string;
  target: unknown;
}

/**
 * The entries of a tag store file, in file order, or null when it cannot be
 * read (a problem is recorded; a missing file only when `required`). A file
 * without a "Repositories" object is a problem and has no entries.
 */
export function readTagFile(files: StoreFiles, file: string, required: boolean): TagEntry[] | null {
  const parsed = files.jsonObject(file, { required, what: 'tag store', cap: TAG_STORE_CAP });
  if (parsed === null) return null;
  const repos = obj(parsed.value.Repositories);
  if (!repos) {
    files.problems.add(file, 'has no "Repositories" object');
    return [];
  }
  const out: TagEntry[] = [];
  for (const [repository, keys] of Object.entries(repos)) {
    for (const [key, target] of Object.entries(obj(keys) ?? {})) out.push({ repository, key, target });
  }
  return out;
}

/** Split a familiar reference ("ubuntu:18.04", "busybox@sha256:…", "localhost:5000/x:1") into tag or digest. */
export function splitReference(ref: string): { name: string; tag: string | null; digest: string | null } {
  const at = ref.indexOf('@');
  if (at >= 0) return { name: ref.slice(0, at), tag: null, digest: ref.slice(at + 1) };
  const colon = ref.lastIndexOf(':');
  if (colon > ref.lastIndexOf('/')) return { name: ref.slice(0, colon), tag: ref.slice(colon + 1), digest: null };
  return { name: ref, tag: null, digest: null };
}

/** repositories.json as moby's reference store writes it for `refs` (reference → image id): Go's json.Marshal, keys sorted. */
export function tagStoreBytes(refs: ReadonlyMap<string, string>): Buffer {
  const repos: Record<string, Record<string, string>> = {};
  for (const ref of [...refs.keys()].sort()) {
    const { name, tag, digest } = splitReference(ref);
    if (tag === null && digest === null) throw new Error(`tag store: ${JSON.stringify(ref)} has neither a tag nor a digest`);
    (repos[name] ??= {})[ref] = refs.get(ref)!;
  }
  const sorted = Object.fromEntries(Object.keys(repos).sort().map((k) => [k, repos[k]]));
  return goJson({ Repositories: sorted });
}
