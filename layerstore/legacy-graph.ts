// Docker ≤ 1.9 "graph" store (graphdrivers.md §4.1), back to Docker 0.x:
//
//   graph/<id>/json               v1 image JSON (id, parent | parent_id, created, container_config, Size…)
//   graph/<id>/layersize          decimal bytes
//   graph/<id>/layer/             docker ≤ 0.6: the layer itself (an aufs branch)
//   graph/<id>/tar-data.json.gz   tar-split (1.8+)
//   graph/<id>/checksum, v1Compatibility, parent (compatibility parent id)
//   graph/<id>/.migration-diffid, .migration-size   written by the 1.10 migration
//   repositories-<driver>         {"Repositories":{"<repo>":{"<tag>":"<id>"}}}   (0.7+)
//   repositories                  the same, docker ≤ 0.6
//   <driver>/…                    layer data, driver id = image id
//   containers/<id>/config.json   (containers/<id>/rw/ in docker ≤ 0.6)
import * as path from 'node:path';
import { GRAPH_LAYOUT } from '../drivers/docker-0.6-graph/layout.ts';
import { homesIn } from '../drivers/all.ts';
import { isDigest } from './digests.ts';
import { LEGACY_CONTAINER_FIELDS, V1_IMAGE_FIELDS, fieldTypeProblems } from './field-types.ts';
import {
  addTag, assembleImageChains, commandOf, containerStateOf, parseCreated, sortImageRefs, type ContainerRecord, type Era, type HistoryRecord, type LayerRecord, type StoreModel,
} from './model.ts';
import { Problems } from './problems.ts';
import { StoreFiles } from './store-files.ts';
import { readTagFile } from './tag-store.ts';
import { asString as str, asObject as obj, isDirectory, lstatQuiet } from '../sys/read-only-files.ts';

export interface LegacyOptions {
  /** the storage driver when the store does not say (several repositories-<driver> files or driver homes) */
  driver?: string;
}

/** v1 image ids: 64 hex (docker ≥ 0.5) or the 16-hex ids of the earliest images. */
export function isV1Id(s: string): boolean {
  return /^[0-9a-f]{64}$/.test(s) || /^[0-9a-f]{16}$/.test(s);
}

class LegacyLayer implements LayerRecord {
  constructor(
    readonly key: string,
    readonly dir: string,
    readonly parent: string | null,
    readonly size: number | null,
    readonly diffId: string | null,
    readonly tarSplit: string | null,
  ) {}
  get chainId(): null {
    return null;
  }
  get cacheId(): string {
    return this.key;
  }
  get blob(): null {
    return null;
  }
}


/** `container_config.Cmd` joined, as docker ≤ 1.9 history's CREATED BY. */
/**
 * `<dir>/json` of v1 image `id` (a graph/ or registry images/ entry), with
 * its field types and its id checked against the directory; null when it
 * cannot be read (the problem is recorded).
 */
export function readV1ImageJson(files: StoreFiles, dir: string, id: string): Record<string, unknown> | null {
  const jsonPath = path.join(dir, 'json');
  const json = files.jsonObject(jsonPath, { what: 'image JSON' })?.value ?? null;
  if (json) for (const m of fieldTypeProblems(json, V1_IMAGE_FIELDS)) files.problems.add(jsonPath, `image JSON: ${m}`);
  if (json && str(json.id) !== id) files.problems.add(jsonPath, `image JSON says id ${JSON.stringify(json.id)}, its directory is ${id}`);
  return json;
}

export function createdByOf(json: Record<string, unknown> | null): string {
  const cc = obj(json?.container_config);
  const cmd = cc?.Cmd;
  return Array.isArray(cmd) ? cmd.map(str).join(' ') : '';
}

/** The repositories files of a legacy root: `repositories-<driver>` (0.7+) and the pre-0.7 `repositories`. */
function repositoryFiles(files: StoreFiles, root: string): { file: string; driver: string | null }[] {
  return (files.dir(root, { required: false, mayBeLink: true }) ?? [])
    .filter((n) => n === 'repositories' || n.startsWith('repositories-'))
    .filter((n) => !lstatQuiet(path.join(root, n))?.isDirectory())
    .map((n) => ({ file: path.join(root, n), driver: n === 'repositories' ? null : n.slice('repositories-'.length) }));
}

/** Read a legacy store under `root`. Problems go to `problems`; nothing is written. */
export function readLegacyStore(root: string, opts: LegacyOptions = {}, problems = new Problems()): StoreModel {
  const files = new StoreFiles(problems);
  const graphDir = path.join(root, 'graph');
  const ids = (files.dir(graphDir, { mayBeLink: true }) ?? []).filter((n) => n !== '_tmp');
  const repoFiles = repositoryFiles(files, root);
  const homes = homesIn(root);
  const hasLayerDirs = ids.some((id) => isDirectory(path.join(graphDir, id, 'layer')));

  // which driver's data and tags: explicit, then the repositories-<driver> file, then the only driver home
  let driver = opts.driver ?? null;
  if (driver === null) {
    const named = repoFiles.map((r) => r.driver).filter((d): d is string => d !== null);
    if (named.length === 1) driver = named[0];
    else if (named.length > 1) {
      driver = named.find((d) => homes.includes(d)) ?? named[0];
      problems.warn(root, `tag files for several drivers (${named.map((d) => `repositories-${d}`).join(', ')}); reading ${driver} (choose with --driver)`);
    } else if (homes.length === 1) driver = homes[0];
    else if (hasLayerDirs) driver = GRAPH_LAYOUT;
    else if (homes.length > 1) {
      driver = homes[0];
      problems.warn(root, `data for several drivers (${homes.join(', ')}); reading ${driver} (choose with --driver)`);
    }
  }
  const era: Era = driver === GRAPH_LAYOUT || (driver === null && hasLayerDirs) ? 'docker-0.6' : 'docker-0.7-1.9';
  const model: StoreModel = {
    kind: 'legacy', era, root, driver: driver ?? GRAPH_LAYOUT, metaDir: graphDir,
    images: new Map(), layers: new Map(), containers: [], tags: [], problems,
  };

  const parents = new Map<string, string | null>();
  for (const id of ids) {
    const dir = path.join(graphDir, id);
    const st = lstatQuiet(dir);
    if (st?.isSymbolicLink()) {
      problems.add(dir, 'image directory is a symlink (not followed: the store format has none here)');
      continue;
    }
    if (!st?.isDirectory()) {
      problems.warn(dir, 'not an image directory');
      continue;
    }
    if (!isV1Id(id)) problems.warn(dir, 'directory name is not an image id');
    const jsonPath = path.join(dir, 'json');
    const json = readV1ImageJson(files, dir, id);
    // moby migrate/v1 getParent: parent, else 1.9's parent_id digest, overridden by the parent file
    let parent = str(json?.parent) || null;
    const parentId = str(json?.parent_id);
    if (!parent && parentId && isDigest(parentId)) parent = parentId.slice(7);
    const compat = files.text(path.join(dir, 'parent'), { required: false, what: 'compatibility parent' });
    if (compat) parent = compat;
    parents.set(id, parent);
    const size = files.integer(path.join(dir, 'layersize'), { what: 'layer size (layersize)' });
    const migDiff = files.text(path.join(dir, '.migration-diffid'), { required: false });
    const tarData = path.join(dir, 'tar-data.json.gz');
    model.layers.set(id, new LegacyLayer(id, dir, parent, size, migDiff && isDigest(migDiff) ? migDiff : null, lstatQuiet(tarData) ? tarData : null));
    const history: HistoryRecord = {
      created: parseCreated(json?.created), createdBy: createdByOf(json), comment: str(json?.comment), emptyLayer: false,
      author: str(json?.author),
    };
    model.images.set(id, {
      id, parent, created: parseCreated(json?.created), size, virtualSize: null, layers: [],
      config: json, configPath: jsonPath, history: [history], tags: [], digests: [],
    });
  }

  // layer chains, virtual sizes (Σ own sizes down the parent chain), history down the chain
  assembleImageChains(model, (id) => parents.get(id) ?? null, (img, at, why, child) => {
    if (why === 'loop') problems.add(path.join(graphDir, img.id, 'json'), `parent chain loops at ${at}`);
    else problems.add(path.join(graphDir, at), `parent image ${at} (of ${child}) is missing`);
  });

  // tags
  const tagFile = repoFiles.find((r) => r.driver === driver) ?? repoFiles.find((r) => r.driver === null) ?? null;
  if (tagFile) {
    for (const { repository: repo, key: tag, target } of readTagFile(files, tagFile.file, true) ?? []) {
      const id = str(target);
      const digest = isDigest(tag) ? tag : null;
      if (!addTag(model, { repository: repo, tag: digest ? null : tag, digest, imageId: id, source: tagFile.file })) {
        problems.add(tagFile.file, `${repo}:${tag} points at image ${id || JSON.stringify(target)}, which is not in graph/`);
      }
    }
    sortImageRefs(model);
  }

  readLegacyContainers(model, files);
  return model;
}

function readLegacyContainers(model: StoreModel, files: StoreFiles): void {
  const ctrDir = path.join(model.root, 'containers');
  for (const id of files.dir(ctrDir, { required: false, mayBeLink: true }) ?? []) {
    const dir = path.join(ctrDir, id);
    if (!files.realDir(dir, 'container directory')) continue;
    const v2 = path.join(dir, 'config.v2.json');
    const v1 = path.join(dir, 'config.json');
    const configPath = lstatQuiet(v1) ? v1 : v2;
    const cfg = files.jsonObject(configPath, { what: 'container config' })?.value ?? null;
    if (cfg) for (const m of fieldTypeProblems(cfg, LEGACY_CONTAINER_FIELDS)) model.problems.add(configPath, `container config: ${m}`);
    const image = str(cfg?.Image) || null;
    const driver = str(cfg?.Driver) || (isDirectory(path.join(dir, 'rw')) ? GRAPH_LAYOUT : null);
    const st = containerStateOf(cfg?.State);
    const rec: ContainerRecord = {
      id, name: str(cfg?.Name).replace(/^\//, ''), imageId: image, driver,
      created: parseCreated(cfg?.Created), running: st.running, state: st, command: commandOf(cfg?.Path, cfg?.Args),
      imageName: str(obj(cfg?.Config)?.Image) || null,
      // ≤ 1.9: the container's driver ids are its id and (0.7+) <id>-init
      mountId: id, initId: driver === GRAPH_LAYOUT ? null : `${id}-init`, parentLayer: image, configPath,
    };
    if (image && !model.images.has(image)) model.problems.add(configPath, `container image ${image} is not in graph/`);
    model.containers.push(rec);
  }
}
