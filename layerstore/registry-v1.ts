// A docker-registry v1 storage tree (docker-registry 0.x "local" storage):
//
//   images/<id>/json            the v1 image JSON (as pushed: id, parent, created, Size…)
//   images/<id>/ancestry        JSON array of ids, the image first, its base last
//   images/<id>/layer           the layer tar, gzip'd
//   images/<id>/_checksum       the checksum the client sent ("tarsum+sha256:…" or "sha256:…")
//   repositories/<ns>/<name>/_index_images   JSON [{"id": …}] every image the repository holds
//   repositories/<ns>/<name>/json            repository metadata
//   repositories/<ns>/<name>/tag_<tag>       the image id of a tag
//   repositories/<ns>/<name>/tag<tag>_json   metadata of the push that set it
//
// Read into the same model as a docker store: an image per images/<id>, its
// own layer as a layer, tags from the tag files ("library" is the namespace of
// official images and is dropped from names, as docker did).
import * as path from 'node:path';
import { createdByOf, isV1Id, readV1ImageJson } from './legacy-graph.ts';
import { assembleImageChains, parseCreated, type LayerRecord, type StoreModel } from './model.ts';
import { Problems } from './problems.ts';
import { StoreFiles } from './store-files.ts';
import { asString as str, lstatQuiet, sizeProblem } from '../sys/read-only-files.ts';

class RegistryLayer implements LayerRecord {
  constructor(readonly key: string, readonly dir: string, readonly parent: string | null, readonly size: number | null, readonly blob: string | null) {}
  get diffId(): null {
    return null;
  }
  get chainId(): null {
    return null;
  }
  get cacheId(): null {
    return null;
  }
  get tarSplit(): null {
    return null;
  }
}

/** Read a registry v1 tree. Problems go to `problems`; nothing is written. */
export function readRegistryV1(root: string, problems = new Problems()): StoreModel {
  const files = new StoreFiles(problems);
  const imagesDir = path.join(root, 'images');
  const model: StoreModel = {
    kind: 'registry-v1', era: 'docker-0.7-1.9', root, driver: null, metaDir: imagesDir,
    images: new Map(), layers: new Map(), containers: [], tags: [], problems,
  };
  const ancestries = new Map<string, string[]>();
  for (const id of files.dir(imagesDir, { mayBeLink: true }) ?? []) {
    const dir = path.join(imagesDir, id);
    if (!files.realDir(dir, 'image directory')) continue;
    if (!isV1Id(id)) problems.warn(dir, 'directory name is not an image id');
    const jsonPath = path.join(dir, 'json');
    const json = readV1ImageJson(files, dir, id);
    const parent = str(json?.parent) || null;
    let size = typeof json?.Size === 'number' ? json.Size : null;
    if (size !== null && sizeProblem(size)) {
      problems.add(jsonPath, `image JSON: Size ${sizeProblem(size)}`);
      size = null;
    }
    if (json && json.Size === undefined) problems.warn(jsonPath, 'image JSON has no Size');
    const ancPath = path.join(dir, 'ancestry');
    const anc = files.json(ancPath, { what: 'ancestry' })?.value;
    if (anc !== undefined) {
      if (!Array.isArray(anc) || !anc.every((a) => typeof a === 'string')) problems.add(ancPath, 'ancestry is not a JSON array of image ids');
      else ancestries.set(id, anc as string[]);
    }
    const blob = path.join(dir, 'layer');
    const hasBlob = lstatQuiet(blob) !== undefined;
    if (!hasBlob) problems.add(blob, 'layer blob is missing');
    model.layers.set(id, new RegistryLayer(id, dir, parent, size, hasBlob ? blob : null));
    model.images.set(id, {
      id, parent, created: parseCreated(json?.created), size, virtualSize: null, layers: [], config: json, configPath: jsonPath,
      history: [{ created: parseCreated(json?.created), createdBy: createdByOf(json), comment: str(json?.comment), emptyLayer: false, author: str(json?.author) }],
      tags: [], digests: [],
    });
  }
  assembleImageChains(model, (id) => model.images.get(id)?.parent ?? null, (img, at, why) => {
    if (why === 'loop') problems.add(path.join(imagesDir, img.id, 'json'), `parent chain loops at ${at}`);
    else problems.add(path.join(imagesDir, at), `parent image ${at} is missing`);
  });
  for (const img of model.images.values()) {
    const expected = img.layers.slice().reverse();
    const anc = ancestries.get(img.id);
    if (anc && anc.join(' ') !== expected.join(' ')) {
      problems.add(path.join(imagesDir, img.id, 'ancestry'), `ancestry [${anc.map((a) => a.slice(0, 12)).join(', ')}] differs from the parent chain [${expected.map((a) => a.slice(0, 12)).join(', ')}]`);
    }
  }

  const reposDir = path.join(root, 'repositories');
  for (const ns of files.dir(reposDir, { mayBeLink: true }) ?? []) {
    const nsDir = path.join(reposDir, ns);
    if (!files.realDir(nsDir, 'namespace directory')) continue;
    for (const name of files.dir(nsDir) ?? []) {
      const repoDir = path.join(nsDir, name);
      if (!files.realDir(repoDir, 'repository directory')) continue;
      const repo = ns === 'library' ? name : `${ns}/${name}`;
      const entries = files.dir(repoDir) ?? [];
      const index = files.json(path.join(repoDir, '_index_images'), { what: 'image index' })?.value;
      const indexed = new Set<string>();
      if (index !== undefined) {
        if (!Array.isArray(index)) problems.add(path.join(repoDir, '_index_images'), 'image index is not a JSON array');
        else for (const e of index) if (e && typeof e === 'object' && typeof (e as { id?: unknown }).id === 'string') indexed.add((e as { id: string }).id);
      }
      for (const f of entries) {
        if (!f.startsWith('tag_')) continue;
        const tag = f.slice(4);
        const tp = path.join(repoDir, f);
        const id = files.text(tp, { what: 'tag' });
        if (id === null) continue;
        model.tags.push({ repository: repo, tag, digest: null, imageId: id, source: tp });
        const img = model.images.get(id);
        if (!img) {
          problems.add(tp, `${repo}:${tag} points at image ${id}, which is not in images/`);
          continue;
        }
        img.tags.push(`${repo}:${tag}`);
        for (const a of img.layers) {
          if (index !== undefined && !indexed.has(a)) problems.add(path.join(repoDir, '_index_images'), `image ${a} (in ${repo}:${tag}) is not listed`);
        }
        if (!entries.includes(`tag${tag}_json`)) problems.warn(path.join(repoDir, `tag${tag}_json`), 'tag metadata is missing');
      }
    }
  }
  for (const img of model.images.values()) img.tags.sort();
  return model;
}
