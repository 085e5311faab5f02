// Image archives for `ctr images import`, written with tar-stream from the
// busybox rootfs fixture: a docker-archive (`docker save` layout: manifest.json,
// <config>.json, <layer>/layer.tar) and an OCI layout holding a two-platform
// index (linux/amd64 + linux/arm64, gzip'd layers), so containerd stores docker
// and OCI media types, an index and a platform it does not unpack.
import * as fs from 'node:fs';
import { gzipSync } from 'node:zlib';
import { pack } from 'tar-stream';
import { busyboxRootfsTar } from '../../fixtures/busybox-rootfs.ts';
import { packLayer } from '../../fixtures/layer-tar.ts';
import { sha256Digest, digestHex } from '../../layerstore/digests.ts';

async function bytesOf(s: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c);
  return Buffer.concat(parts);
}

/** The layers the archives use: the busybox rootfs, an edit on it (a file added, one deleted by whiteout), an arm64-only layer. */
export async function archiveLayers(): Promise<{ base: Buffer; edit: Buffer; arm: Buffer }> {
  const mtime = new Date(1_700_000_000_000);
  return {
    base: await bytesOf(busyboxRootfsTar()),
    edit: await bytesOf(packLayer([
      { name: 'data/', type: 'directory', mtime },
      { name: 'data/.wh.delme.txt', content: '', mtime },
      { name: 'etc/', type: 'directory', mtime },
      { name: 'etc/edited.txt', content: 'added by the second layer\n', mtime },
    ])),
    arm: await bytesOf(packLayer([{ name: 'arm64.txt', content: 'only on arm64\n', mtime }])),
  };
}

function config(arch: string, diffIds: string[], created: string): Buffer {
  return Buffer.from(JSON.stringify({
    architecture: arch, os: 'linux', created,
    config: { Cmd: ['/bin/sh'], Env: ['PATH=/bin'], Labels: { 'org.strata.test': arch } },
    rootfs: { type: 'layers', diff_ids: diffIds },
    history: diffIds.map((_, i) => ({ created, created_by: `/bin/sh -c #(nop) layer ${i}` })).concat([{ created, created_by: '/bin/sh -c #(nop) CMD ["/bin/sh"]', empty_layer: true } as never]),
  }));
}

async function writeTar(file: string, entries: [string, Buffer][]): Promise<void> {
  const p = pack();
  const out = fs.createWriteStream(file);
  const done = new Promise<void>((resolve, reject) => { out.on('finish', resolve); out.on('error', reject); });
  (p as unknown as NodeJS.ReadableStream).pipe(out);
  for (const [name, body] of entries) {
    await new Promise<void>((resolve, reject) => p.entry({ name, mtime: new Date(0), mode: 0o644 }, body, (e) => (e ? reject(e) : resolve())));
  }
  p.finalize();
  await done;
}

export interface Archives {
  /** `docker save` layout: strata/busybox:1 with the base and edit layers */
  docker: string;
  /** OCI layout: strata/multi:1, an index over amd64 (base + edit) and arm64 (arm) */
  oci: string;
  dockerConfig: string;
  index: string;
  amd64Manifest: string;
  arm64Manifest: string;
}

export async function writeArchives(dir: string): Promise<Archives> {
  const { base, edit, arm } = await archiveLayers();
  const diff = [sha256Digest(base), sha256Digest(edit)];
  // docker-archive: uncompressed layers, as `docker save` wrote them
  const dcfg = config('amd64', diff, '2024-01-02T03:04:05.123456789Z');
  const dcfgName = `${digestHex(sha256Digest(dcfg))}.json`;
  const docker = `${dir}/docker-archive.tar`;
  await writeTar(docker, [
    [dcfgName, dcfg],
    [`${digestHex(diff[0])}/layer.tar`, base],
    [`${digestHex(diff[1])}/layer.tar`, edit],
    ['manifest.json', Buffer.from(JSON.stringify([{ Config: dcfgName, RepoTags: ['strata/busybox:1'], Layers: diff.map((d) => `${digestHex(d)}/layer.tar`) }]))],
  ]);

  // OCI layout: gzip'd layers, an index naming two platforms
  const blobs = new Map<string, Buffer>();
  const put = (mediaType: string, b: Buffer, extra: Record<string, unknown> = {}) => {
    const digest = sha256Digest(b);
    blobs.set(digest, b);
    return { mediaType, digest, size: b.length, ...extra };
  };
  const layer = (b: Buffer) => put('application/vnd.oci.image.layer.v1.tar+gzip', gzipSync(b));
  const manifest = (arch: string, layers: Buffer[]) => {
    const cfg = put('application/vnd.oci.image.config.v1+json', config(arch, layers.map((l) => sha256Digest(l)), '2024-02-03T04:05:06Z'));
    return put('application/vnd.oci.image.manifest.v1+json', Buffer.from(JSON.stringify({
      schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: cfg, layers: layers.map(layer),
    })), { platform: { architecture: arch, os: 'linux' } });
  };
  const amd = manifest('amd64', [base, edit]);
  const armM = manifest('arm64', [arm]);
  const index = put('application/vnd.oci.image.index.v1+json', Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [amd, armM],
  })));
  const oci = `${dir}/oci-layout.tar`;
  await writeTar(oci, [
    ['oci-layout', Buffer.from('{"imageLayoutVersion":"1.0.0"}')],
    ['index.json', Buffer.from(JSON.stringify({
      schemaVersion: 2,
      manifests: [{ ...index, annotations: { 'io.containerd.image.name': 'docker.io/strata/multi:1', 'org.opencontainers.image.ref.name': '1' } }],
    }))],
    ...[...blobs].map(([d, b]): [string, Buffer] => [`blobs/sha256/${digestHex(d)}`, b]),
  ]);
  return { docker, oci, dockerConfig: sha256Digest(dcfg), index: index.digest, amd64Manifest: amd.digest, arm64Manifest: armM.digest };
}
