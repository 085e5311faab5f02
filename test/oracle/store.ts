// The sample image store the dockerd oracle tests share: built by a real
// dockerd (test/oracle/dockerd.ts) so that its on-disk state is Docker's own,
// for whichever storage driver the daemon runs.
//
// What buildSampleStore(d) makes (about 10 s on overlay2):
//
//   strata-base:latest     `docker import -c 'CMD ["/bin/sh"]' - strata-base:latest`
//                          of fixtures/busybox-rootfs.ts (one layer; DiffID = sha256 of that tar)
//   strata-sample:latest   `docker build --network none` (legacy builder) of SAMPLE_DOCKERFILE:
//     also :v1 and           layer 2  ADD added.txt            a new file at /
//     strata-sample-alias:x  layer 3  ADD added-dir/ /srv/added/   a new dir tree (nested)
//                          layer 4  RUN rm /data/delme.txt   a whiteout (overlay2: char 0/0 on disk)
//                          layer 5  RUN … rm -rf /opaq && mkdir /opaq …   an opaque dir (overlay2:
//                                   trusted.overlay.opaque=y; in the layer tar .wh..wh..opq)
//                          (LABEL and CMD add no layer)
//   c1                     a stopped container of strata-sample:latest, created with
//                          `docker run --name c1 --network none strata-sample:latest sh -c CONTAINER_SCRIPT`:
//                          adds files, a dir tree and a symlink, appends to a lower file,
//                          changes a mode only, deletes a lower file and a lower dir tree.
//
// The store is built, not assumed: the caller reads ids from the return value and
// Docker's answers (docker diff, export, save) from the daemon; nothing here is a
// hard-coded expectation.
//
// Reading it back from disk (daemon stopped or running), as Docker lays it out
// under <data-root>/image/<driver>/ — test-side readers, independent of strata's
// own inspect code, so they can serve as its oracle:
//   imageLayersOnDisk(dataRoot, driver, imageId)   imagedb config → diff_ids → chain ids
//                                                  → layerdb {diff, cache-id, parent, size}
//   containerLayerOnDisk(dataRoot, driver, ctrId)  layerdb/mounts/<id>/{mount-id, init-id, parent}
//   tagsOnDisk(dataRoot, driver)                   repositories.json: "name:tag" → image id
//
// Typical use (see test/oracle/overlay2-interop.test.ts):
//   const d = await startDockerd({ driver: 'overlay2', dir });
//   try { store = await buildSampleStore(d); …capture docker's answers… } finally { await d.stop(); }
//   const layers = imageLayersOnDisk(d.dataRoot, 'overlay2', store.image.id);
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeBusyboxRootfs } from '../../fixtures/busybox-rootfs.ts';
import type { Dockerd } from './dockerd.ts';

export const BASE_REF = 'strata-base:latest';
export const SAMPLE_REF = 'strata-sample:latest';
export const SAMPLE_TAGS = [SAMPLE_REF, 'strata-sample:v1', 'strata-sample-alias:x'];
export const CONTAINER = 'c1';

export const SAMPLE_DOCKERFILE = `FROM ${BASE_REF}
ADD added.txt /added.txt
ADD added-dir/ /srv/added/
RUN rm /data/delme.txt
RUN mkdir -p /opaq/new && echo n > /opaq/new/n.txt && rm -rf /opaq && mkdir -p /opaq && echo fresh > /opaq/fresh.txt
LABEL org.strata.sample=1
CMD ["/bin/sh"]
`;

/** The build context besides the Dockerfile: relative path → content (dirs implied). */
export const SAMPLE_CONTEXT: Record<string, string> = {
  'added.txt': 'added-by-ADD\n',
  'added-dir/a.txt': 'a\n',
  'added-dir/nested/b.txt': 'b\n',
  'added-dir/nested/deeper/c.txt': 'c\n',
};

/** What c1 runs: one change of each kind `docker diff` reports. */
export const CONTAINER_SCRIPT = [
  'echo run-added > /run-added.txt',             // A /run-added.txt (docker diff lists no C / for it)
  'mkdir -p /newdir/sub',                        // A /newdir, /newdir/sub
  'echo x > /newdir/sub/f.txt',                  // A /newdir/sub/f.txt
  'echo u > /newdir/ünï.txt',                    // A a UTF-8 name
  'ln -s /added.txt /link-to-added',             // A a symlink
  'echo appended >> /etc/base.txt',              // C /etc/base.txt (copy-up), C /etc
  'chmod 600 /etc/group',                        // C /etc/group (metadata only)
  'rm /data/keep/k.txt',                         // D /data/keep/k.txt, C /data/keep, C /data
  'rm -rf /srv/added/nested',                    // D /srv/added/nested (a lower dir tree: one entry)
  'echo more > /opaq/fresh.txt',                 // C /opaq/fresh.txt (a file of an opaque dir), C /opaq
].join(' && ');

export interface SampleStore {
  base: { ref: string; id: string; tarSha256: string; tarBytes: number };
  image: { ref: string; id: string; tags: string[] };
  /** c1: stopped, exited 0 */
  container: { name: string; id: string };
  /** the build context directory (under d.dir) */
  contextDir: string;
  /** wall time of the whole build, ms */
  ms: number;
}

/** Build the sample store in a running oracle daemon (see the header for what it contains). */
export async function buildSampleStore(d: Dockerd): Promise<SampleStore> {
  const t0 = Date.now();
  const work = path.join(d.dir, 'sample');
  const contextDir = path.join(work, 'context');
  fs.mkdirSync(contextDir, { recursive: true });

  const rootfs = await writeBusyboxRootfs(path.join(work, 'busybox-rootfs.tar'));
  const baseId = (await d.docker(['import', '-c', 'CMD ["/bin/sh"]', '-', BASE_REF], { input: fs.readFileSync(rootfs.path) })).trim();

  fs.writeFileSync(path.join(contextDir, 'Dockerfile'), SAMPLE_DOCKERFILE);
  for (const [rel, content] of Object.entries(SAMPLE_CONTEXT)) {
    fs.mkdirSync(path.join(contextDir, path.dirname(rel)), { recursive: true });
    fs.writeFileSync(path.join(contextDir, rel), content);
  }
  await d.docker(['build', '--network', 'none', '-q', ...SAMPLE_TAGS.flatMap((t) => ['-t', t]), contextDir], {
    env: { DOCKER_BUILDKIT: '0' },
  });
  const imageId = (await d.docker(['image', 'inspect', '--format', '{{.Id}}', SAMPLE_REF])).trim();

  await d.docker(['run', '--name', CONTAINER, '--network', 'none', SAMPLE_REF, 'sh', '-c', CONTAINER_SCRIPT]);
  const [ctrId, exitCode, running] = (await d.docker(['container', 'inspect', '--format', '{{.Id}} {{.State.ExitCode}} {{.State.Running}}', CONTAINER]))
    .trim().split(' ');
  if (exitCode !== '0' || running !== 'false') throw new Error(`sample container ${CONTAINER}: exit ${exitCode}, running ${running}`);

  return {
    base: { ref: BASE_REF, id: baseId, tarSha256: rootfs.sha256, tarBytes: rootfs.bytes },
    image: { ref: SAMPLE_REF, id: imageId, tags: [...SAMPLE_TAGS] },
    container: { name: CONTAINER, id: ctrId },
    contextDir,
    ms: Date.now() - t0,
  };
}

// ---- reading Docker's image store from disk (daemon stopped or not) ----------------

/** moby layer.CreateChainID: chain(0) = diff(0); chain(n) = sha256(chain(n-1) + " " + diff(n)). */
export function chainIds(diffIds: string[]): string[] {
  const out: string[] = [];
  for (const [i, diff] of diffIds.entries()) {
    out.push(i === 0 ? diff : `sha256:${createHash('sha256').update(`${out[i - 1]} ${diff}`).digest('hex')}`);
  }
  return out;
}

export interface DiskLayer {
  diffId: string;
  chainId: string;
  /** the graphdriver id of the layer (overlay2: the dir name under <data-root>/overlay2) */
  cacheId: string;
  /** the parent's chain id, as the layerdb records it ('' for the base layer) */
  parent: string;
  /** layerdb `size` */
  size: number;
}

const hex = (id: string) => id.replace(/^sha256:/, '');

/**
 * An image's layers, bottom first, as Docker's layer store records them under
 * <data-root>/image/<driver>/: the config in imagedb/content/sha256/<id> (whose
 * sha256 must be the id), its rootfs.diff_ids, the chain ids, and per chain id
 * layerdb/sha256/<chain>/{diff,cache-id,parent,size}. Throws if any of that is
 * inconsistent (diff file ≠ diff id, parent ≠ previous chain id).
 */
export function imageLayersOnDisk(dataRoot: string, driver: string, imageId: string): DiskLayer[] {
  const base = path.join(dataRoot, 'image', driver);
  const config = fs.readFileSync(path.join(base, 'imagedb/content/sha256', hex(imageId)));
  const digest = `sha256:${createHash('sha256').update(config).digest('hex')}`;
  if (digest !== imageId) throw new Error(`imagedb: content of ${imageId} hashes to ${digest}`);
  const diffIds = (JSON.parse(config.toString('utf8')) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids;
  const chains = chainIds(diffIds);
  return diffIds.map((diffId, i) => {
    const dir = path.join(base, 'layerdb/sha256', hex(chains[i]));
    const read = (f: string) => fs.readFileSync(path.join(dir, f), 'utf8').trim();
    const parent = fs.existsSync(path.join(dir, 'parent')) ? read('parent') : '';
    if (read('diff') !== diffId) throw new Error(`layerdb ${chains[i]}: diff ${read('diff')} ≠ ${diffId}`);
    if (parent !== (i === 0 ? '' : chains[i - 1])) throw new Error(`layerdb ${chains[i]}: parent ${parent} ≠ ${chains[i - 1]}`);
    return { diffId, chainId: chains[i], cacheId: read('cache-id'), parent, size: Number(read('size')) };
  });
}

export interface DiskContainerLayer {
  /** the graphdriver id of the container's read-write layer */
  mountId: string;
  /** the init layer's id (`<mount-id>-init`) */
  initId: string;
  /** chain id of the image's top layer */
  parent: string;
}

/** A container's layers: <data-root>/image/<driver>/layerdb/mounts/<container-id>/{mount-id,init-id,parent}. */
export function containerLayerOnDisk(dataRoot: string, driver: string, containerId: string): DiskContainerLayer {
  const dir = path.join(dataRoot, 'image', driver, 'layerdb/mounts', containerId);
  const read = (f: string) => fs.readFileSync(path.join(dir, f), 'utf8').trim();
  return { mountId: read('mount-id'), initId: read('init-id'), parent: read('parent') };
}

/** repositories.json: every tag ("name:tag") → image id. */
export function tagsOnDisk(dataRoot: string, driver: string): Record<string, string> {
  const repos = JSON.parse(fs.readFileSync(path.join(dataRoot, 'image', driver, 'repositories.json'), 'utf8')) as {
    Repositories: Record<string, Record<string, string>>;
  };
  return Object.assign({}, ...Object.values(repos.Repositories)) as Record<string, string>;
}

/** The build context of the untagged image: one file of its own layer. */
export const UNTAGGED_CONTEXT = { Dockerfile: `FROM ${BASE_REF}\nADD untagged.txt /untagged.txt\n`, 'untagged.txt': 'built without a tag\n' };

/**
 * Add an untagged (dangling, `<none>:<none>`) image to a store buildSampleStore made:
 * `docker build` without -t of UNTAGGED_CONTEXT (one ADD layer on strata-base). Returns its id.
 */
export async function addUntaggedImage(d: Dockerd): Promise<string> {
  const dir = path.join(d.dir, 'sample', 'untagged');
  fs.mkdirSync(dir, { recursive: true });
  for (const [name, content] of Object.entries(UNTAGGED_CONTEXT)) fs.writeFileSync(path.join(dir, name), content);
  const out = await d.docker(['build', '--network', 'none', '-q', dir], { env: { DOCKER_BUILDKIT: '0' } });
  const id = out.trim().split('\n').pop()!;
  if (!/^sha256:[0-9a-f]{64}$/.test(id)) throw new Error(`untagged build printed ${out.trim()}`);
  return id;
}
