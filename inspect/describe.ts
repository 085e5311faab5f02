// `strata inspect IMAGE|LAYER|CONTAINER`: everything the store records about
// one object, with the files and driver directories behind it — config, chain
// ids, diff ids, cache ids, driver dirs, sizes. Shaped like `docker inspect`
// where docker has the field (Id, RepoTags, RootFS, GraphDriver…).
import * as path from 'node:path';
import type { LayerRecord, StoreModel } from '../layerstore/model.ts';
import { InspectError } from '../layerstore/problems.ts';
import { findContainer, findImage, findLayer } from '../layerstore/store.ts';
import { driverDirsOf } from './driver-dirs.ts';
import { isContainerdModel, snapshotDirs } from '../layerstore/containerd/store.ts';

export interface LayerDescription {
  Key: string;
  ChainID: string | null;
  DiffID: string | null;
  Parent: string | null;
  Size: number | null;
  CacheID: string | null;
  MetadataDir: string;
  TarSplit: string | null;
  Blob: string | null;
  GraphDriver: { Name: string | null; Data: Record<string, string> } | null;
}

function driverData(model: StoreModel, id: string | null): { Name: string | null; Data: Record<string, string> } | null {
  if (isContainerdModel(model)) return id ? { Name: model.containerd.snapshotter, Data: snapshotDirs(model.containerd, id) } : null;
  const dirs = driverDirsOf(model);
  if (!dirs || !id) return null;
  try {
    return { Name: dirs.name, Data: dirs.metadata(id) };
  } catch (e) {
    return { Name: dirs.name, Data: { Error: (e as Error).message } };
  }
}

export function describeLayer(model: StoreModel, l: LayerRecord): LayerDescription {
  return {
    Key: l.key, ChainID: l.chainId, DiffID: l.diffId, Parent: l.parent, Size: l.size, CacheID: l.cacheId,
    MetadataDir: l.dir, TarSplit: l.tarSplit, Blob: l.blob, GraphDriver: driverData(model, l.cacheId),
  };
}

/** The object `ref` names: a container, then an image, then a layer (`docker inspect` tries containers before images). */
export function describe(model: StoreModel, ref: string): Record<string, unknown> {
  const tries: (() => Record<string, unknown>)[] = [
    () => describeContainer(model, findContainer(model, ref)),
    () => describeImage(model, findImage(model, ref)),
    () => ({ Type: 'layer', ...describeLayer(model, model.layers.get(findLayer(model, ref))!), Images: imagesWithLayer(model, findLayer(model, ref)) }),
  ];
  for (const t of tries) {
    try {
      return t();
    } catch (e) {
      if (!(e instanceof InspectError)) throw e;
      if (/ambiguous/.test(e.message)) throw e;
    }
  }
  throw new InspectError(`no such image, container or layer: ${ref}`);
}

function imagesWithLayer(model: StoreModel, key: string): string[] {
  return [...model.images.values()].filter((i) => i.layers.includes(key)).map((i) => i.id).sort();
}

export function describeImage(model: StoreModel, id: string): Record<string, unknown> {
  const img = model.images.get(id)!;
  const layers = img.layers.map((k) => model.layers.get(k)).filter((l): l is LayerRecord => l !== undefined).map((l) => describeLayer(model, l));
  const top = layers[layers.length - 1];
  return {
    Type: 'image',
    Id: img.id,
    RepoTags: img.tags,
    RepoDigests: img.digests,
    Parent: img.parent ?? '',
    Created: img.created?.toISOString() ?? null,
    Size: img.size,
    VirtualSize: img.virtualSize,
    ConfigFile: img.configPath,
    Config: img.config,
    RootFS: { Type: 'layers', Layers: layers.map((l) => l.DiffID) },
    Layers: layers,
    GraphDriver: top?.GraphDriver ?? null,
    Containers: model.containers.filter((c) => c.imageId === img.id).map((c) => c.id),
    History: img.history.map((h) => ({ Created: h.created?.toISOString() ?? null, CreatedBy: h.createdBy, Comment: h.comment, EmptyLayer: h.emptyLayer })),
  };
}

export function describeContainer(model: StoreModel, id: string): Record<string, unknown> {
  const c = model.containers.find((x) => x.id === id)!;
  const dirs = driverDirsOf(model);
  const initDir = c.initId && dirs ? dirs.filesDir(c.initId) : null;
  return {
    Type: 'container',
    Id: c.id,
    Name: `/${c.name}`,
    Image: c.imageId,
    Driver: c.driver,
    Created: c.created?.toISOString() ?? null,
    Running: c.running,
    Command: c.command,
    ConfigFile: c.configPath,
    MountID: c.mountId,
    InitID: c.initId,
    InitDir: initDir?.dir ?? null,
    ParentLayer: c.parentLayer,
    LayerRecord: model.kind === 'modern' ? path.join(model.metaDir, 'layerdb', 'mounts', c.id) : null,
    GraphDriver: driverData(model, c.mountId),
  };
}
