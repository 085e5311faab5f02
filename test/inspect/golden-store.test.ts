// The golden stores: a vfs and an overlay2 data root that a real dockerd 20.10 built
// (fixtures/golden/capture.ts: four images, one with two tags, an intermediate one, a
// whiteout, an opaque dir, a stopped container c1 with A/C/D changes), packed with what
// docker printed about them. Read back here offline, with no daemon and without root,
// so that a change in strata's output (or in its reading of Docker's formats) fails a
// plain `npm test`: every table must be docker's text, byte for byte, rendered at the
// instants docker printed it (each call's recorded clock readings; capture.ts took them
// where every relative time reads the same throughout the call).
//
// Unpacking: GNU tar, as whoever runs the test. A user gets the files, dirs, links, modes
// and ns mtimes, and overlay2's whiteouts (char 0/0: Linux ≥ 5.8 lets anyone mknod a
// whiteout); owners and the trusted.overlay.opaque xattrs only as root. What is compared
// needs neither: c1 changes no owner (vfs's tree comparison sees both sides owned alike),
// sizes are byte counts, and opacity decides nothing here: c1's own layer has no opaque
// dir and its only entry under layer 2's opaque /opaq is fresh.txt, which layer 2 holds,
// so the union lookup ends there either way. (Had c1 made /opaq/old.txt again — a name
// of the base layer that /opaq hides — docker says A; strata agrees as root, but as a
// user, without the xattr, it sees through /opaq and says C: checked with a probe capture.)
// Root restores both, and the same answers must come out.
//
// Orders: docker's `image ls`, `history` and `system df -v` orders are deterministic for
// this store (creation seconds distinct, two tags in one repository) and compared as
// printed; `docker diff` walks Go maps, so its lines are compared as a set.
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { opaqueByXattr } from '../../archive/diff-format.ts';
import { archiveOf, captureOf, GOLDEN_DRIVERS, REFS, type Captured, type GoldenCapture, type GoldenDriver } from '../../fixtures/golden/golden.ts';
import { describeContainer, describeImage } from '../../inspect/describe.ts';
import { diskUsage, renderDf } from '../../inspect/df.ts';
import { containerChanges, renderChanges } from '../../inspect/diff.ts';
import { imageHistory, renderHistory } from '../../inspect/history.ts';
import { imageRows, renderImages } from '../../inspect/images.ts';
import type { StoreModel } from '../../layerstore/model.ts';
import { findImage, openStore } from '../../layerstore/store.ts';
import { verifyStore } from '../../inspect/verify.ts';
import { hasTool, isRoot, when } from '../helpers/require.ts';
import { snapshotDiff, snapshotTree } from '../helpers/store-snapshot.ts';
import { strata } from '../helpers/strata-cli.ts';
import { listTar, tempDir } from '../helpers/tar.ts';

/** Can this user create a whiteout (char 0/0) — root, or anyone on Linux ≥ 5.8? */
function canMknodWhiteout(): boolean {
  const t = tempDir('strata-golden-wh-');
  try {
    execFileSync('mknod', [path.join(t.dir, 'wh'), 'c', '0', '0'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  } finally {
    t.cleanup();
  }
}

const tools = hasTool('tar') && hasTool('gzip');
const whiteouts = tools && hasTool('mknod') && canMknodWhiteout();

function prerequisite(driver: GoldenDriver): { ok: boolean; why: string } {
  if (!tools) return { ok: false, why: 'GNU tar and gzip (apt-get install tar gzip)' };
  if (driver === 'overlay2' && !whiteouts) return { ok: false, why: "creating overlay2's char 0/0 whiteouts (root, or Linux ≥ 5.8)" };
  return { ok: true, why: '' };
}

interface Golden {
  capture: GoldenCapture;
  root: string;
  model: StoreModel;
  /** fingerprint of the unpacked root before strata read it */
  before: Map<string, string>;
  /** directories a user's copy had to open (u+rx) for their owner */
  opened: string[];
}

/**
 * A user's copy: give the owner the r-x on directories that root reads without it
 * (overlay2's work/work, mode 000, empty: the kernel's scratch dir). Returns what was opened.
 */
function openForOwner(root: string): string[] {
  if (isRoot) return [];
  const opened: string[] = [];
  const walk = (p: string) => {
    const st = fs.lstatSync(p);
    if ((st.mode & 0o500) !== 0o500) {
      fs.chmodSync(p, (st.mode & 0o7777) | 0o500);
      opened.push(path.relative(root, p));
    }
    for (const e of fs.readdirSync(p, { withFileTypes: true })) if (e.isDirectory()) walk(path.join(p, e.name));
  };
  walk(root);
  return opened;
}

/** Make every directory under `dir` the owner's to empty (a user unpacks overlay2's mode-000 work dirs). */
function removeTree(dir: string): void {
  const open = (p: string) => {
    fs.chmodSync(p, 0o700);
    for (const e of fs.readdirSync(p, { withFileTypes: true })) if (e.isDirectory()) open(path.join(p, e.name));
  };
  if (!isRoot && fs.existsSync(dir)) open(dir);
  fs.rmSync(dir, { recursive: true, force: true });
}

const scratch: string[] = [];
test.after.always(() => {
  for (const d of scratch) removeTree(d);
});

const loaded = new Map<GoldenDriver, Promise<Golden>>();
function golden(driver: GoldenDriver): Promise<Golden> {
  let p = loaded.get(driver);
  if (!p) {
    p = (async () => {
      const capture = JSON.parse(fs.readFileSync(captureOf(driver), 'utf8')) as GoldenCapture;
      const t = tempDir(`strata-golden-${driver}-`);
      scratch.push(t.dir);
      const root = path.join(t.dir, 'root');
      fs.mkdirSync(root);
      // as root, the owners and trusted.* xattrs come back too; a user gets what a user can make
      const xattrs = isRoot ? ['--xattrs', '--xattrs-include=trusted.*'] : [];
      execFileSync('tar', ['-C', root, '-xzpf', archiveOf(driver), ...xattrs], { stdio: ['ignore', 'ignore', 'pipe'] });
      const opened = openForOwner(root);
      const before = snapshotTree(root);
      return { capture, root, model: await openStore(root), before, opened };
    })();
    loaded.set(driver, p);
  }
  return p;
}

/** The docker call with exactly these arguments. */
function call(g: Golden, ...args: string[]): Captured {
  const c = g.capture.calls.find((x) => x.args.join(' ') === args.join(' '));
  if (!c) throw new Error(`${g.capture.driver}.json has no \`docker ${args.join(' ')}\``);
  return c;
}

/** Both ends of the call's clock window. */
const instants = (c: Captured) => [new Date(c.before), new Date(c.after)];
const iso = (ms: number) => new Date(ms).toISOString();

function cli(t: ExecutionContext, args: string[]): string {
  const r = strata(args);
  t.is(r.code, 0, `strata ${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
  t.is(r.stderr, '', `strata ${args.join(' ')} printed problems`);
  return r.stdout;
}

/** docker system df -v, from "Images space usage:" to "Build cache usage: …" (what follows is docker's build cache, strata's own accounting). */
function upToBuildCache(text: string): string {
  const lines = text.split('\n');
  const end = lines.findIndex((l) => l.startsWith('Build cache usage:'));
  if (end < 0) throw new Error(`no "Build cache usage:" line in:\n${text}`);
  return lines.slice(0, end + 1).join('\n') + '\n';
}

const diffSet = (text: string) => text.split('\n').filter(Boolean).sort();

interface DockerImage {
  Id: string; RepoTags: string[]; Parent: string; Comment: string; Created: string; Size: number; VirtualSize: number;
  RootFS: unknown; GraphDriver: { Name: string; Data: Record<string, string> | null };
}

interface SystemDf {
  LayersSize: number;
  Images: { Id: string; Size: number; SharedSize: number; Containers: number }[];
  Containers: { Id: string; SizeRw: number; SizeRootFs: number }[];
}

for (const driver of GOLDEN_DRIVERS) {
  const need = prerequisite(driver);
  const it = when(need.ok, need.why);

  it(`${driver}: the golden store unpacks and strata reads it without a problem`, async (t) => {
    const g = await golden(driver);
    t.log(`docker ${g.capture.dockerVersion} on ${g.capture.kernel}; read as ${isRoot ? 'root (owners, trusted.* xattrs restored)' : `uid ${process.getuid?.()} (no owners, no trusted.* xattrs)`}`);
    t.deepEqual(g.model.problems.list, []);
    if (g.opened.length) t.log(`opened (u+rx) for the owner: ${g.opened.join(' ')}`);
    t.true(g.opened.every((p) => /^overlay2\/[0-9a-f]{64}(-init)?\/work\/work$/.test(p)), `opened for the owner: ${g.opened.join(' ')}`);
    t.is(g.model.driver, driver);
    t.deepEqual([...g.model.images.keys()].sort(), Object.entries(g.capture.ids).filter(([k]) => k !== 'container').map(([, v]) => v).sort());
  });

  it(`${driver}: the capture is in its "About a minute ago" window: every relative time docker printed reads the same over each call`, async (t) => {
    const { capture } = await golden(driver);
    for (const c of capture.calls) {
      t.true(c.before - capture.events.latest >= 60_000 && c.after - capture.events.earliest < 120_000, `docker ${c.args.join(' ')}`);
    }
  });

  it(`${driver}: strata images [-a] [--no-trunc] print what docker image ls printed`, async (t) => {
    const g = await golden(driver);
    for (const flags of [[], ['-a'], ['--no-trunc'], ['-a', '--no-trunc']]) {
      const c = call(g, 'image', 'ls', ...flags);
      const opts = { all: flags.includes('-a'), noTrunc: flags.includes('--no-trunc') };
      const rows = imageRows(g.model, { all: opts.all });
      for (const now of instants(c)) t.is(renderImages(g.model, rows, { ...opts, now }), c.stdout, `docker image ls ${flags.join(' ')} at ${now.toISOString()}`);
    }
    const c = call(g, 'image', 'ls', '-a', '--no-trunc');
    t.is(cli(t, ['images', '-a', '--no-trunc', '--root', g.root, '--now', iso(c.before)]), c.stdout, 'strata images -a --no-trunc --now');
  });

  it(`${driver}: strata history [--no-trunc] prints what docker history printed, for every image`, async (t) => {
    const g = await golden(driver);
    const refs = [REFS.base, REFS.top, g.capture.ids.intermediate, REFS.built];
    for (const ref of refs) {
      for (const noTrunc of [false, true]) {
        const c = call(g, 'history', ...(noTrunc ? ['--no-trunc'] : []), ref);
        const rows = imageHistory(g.model, findImage(g.model, ref));
        for (const now of instants(c)) t.is(renderHistory(g.model, rows, { noTrunc, now }), c.stdout, `docker history ${noTrunc ? '--no-trunc ' : ''}${ref} at ${now.toISOString()}`);
      }
    }
    const c = call(g, 'history', REFS.built);
    t.is(cli(t, ['history', REFS.built, '--root', g.root, '--now', iso(c.before)]), c.stdout, `strata history ${REFS.built} --now`);
  });

  it(`${driver}: strata diff c1 prints the lines docker diff c1 printed (A, C and D)`, async (t) => {
    const g = await golden(driver);
    const docker = diffSet(call(g, 'diff', REFS.container).stdout);
    t.true(['A', 'C', 'D'].every((k) => docker.some((l) => l.startsWith(`${k} `))), 'the capture has every kind');
    t.deepEqual(diffSet(renderChanges(await containerChanges(g.model, REFS.container))), docker, 'library');
    t.deepEqual(diffSet(cli(t, ['diff', REFS.container, '--root', g.root])), docker, 'strata diff c1');
  });

  it(`${driver}: strata df -v prints docker system df -v's tables and sizes (images, shared/unique, containers' SizeRw and SizeRootFs)`, async (t) => {
    const g = await golden(driver);
    const c = call(g, 'system', 'df', '-v');
    for (const now of instants(c)) {
      const report = await diskUsage(g.model, { now });
      t.is(upToBuildCache(renderDf(report, true, now)), upToBuildCache(c.stdout), `docker system df -v at ${now.toISOString()}`);
    }
    t.is(upToBuildCache(cli(t, ['df', '-v', '--root', g.root, '--now', iso(c.before)])), upToBuildCache(c.stdout), 'strata df -v --now');
    // the same in bytes, as GET /system/df answered
    const api = g.capture.systemDf as SystemDf;
    const report = await diskUsage(g.model);
    t.is(report.layersSize, api.LayersSize, 'LayersSize');
    const byId = (id: string) => report.images.find((i) => i.id === id);
    t.deepEqual(api.Images.map((i) => ({ id: i.Id, size: byId(i.Id)?.size, shared: byId(i.Id)?.sharedSize, containers: byId(i.Id)?.containers })),
      api.Images.map((i) => ({ id: i.Id, size: i.Size, shared: i.SharedSize, containers: i.Containers })), 'images in bytes');
    t.deepEqual(report.containers.map((x) => ({ id: x.id, sizeRw: x.sizeRw, sizeRootFs: x.sizeRootFs })),
      api.Containers.map((x) => ({ id: x.Id, sizeRw: x.SizeRw, sizeRootFs: x.SizeRootFs })), 'containers in bytes');
  });

  it(`${driver}: strata inspect agrees with docker image inspect and docker container inspect`, async (t) => {
    const g = await golden(driver);
    const images = JSON.parse(call(g, 'image', 'inspect', ...Object.values(g.capture.ids).slice(0, 4)).stdout) as DockerImage[];
    // strata's inspect is its own shape: compared where it carries docker's fields (times: to the ms)
    const ms = (s: unknown) => (typeof s === 'string' ? Date.parse(s) : null);
    const pick = (x: Record<string, unknown>) => ({
      Id: x.Id, RepoTags: x.RepoTags, Parent: x.Parent, Created: ms(x.Created), Size: x.Size, VirtualSize: x.VirtualSize,
      RootFS: x.RootFS, GraphDriverName: (x.GraphDriver as DockerImage['GraphDriver']).Name,
    });
    // docker names the layer directories (overlay2) under the root it ran on; vfs: docker names none
    const here = (data: Record<string, string>) => Object.fromEntries(Object.entries(data).map(([k, v]) => [k, v.split(g.capture.dataRoot).join(g.root)]));
    t.is(images.length, 4);
    for (const di of images) {
      const ours = describeImage(g.model, di.Id);
      t.deepEqual(pick(ours), pick(di as unknown as Record<string, unknown>), `image ${di.Id}`);
      if (di.GraphDriver.Data) t.deepEqual((ours.GraphDriver as DockerImage['GraphDriver']).Data, here(di.GraphDriver.Data), `image ${di.Id}: GraphDriver.Data`);
    }
    const [dc] = JSON.parse(call(g, 'container', 'inspect', REFS.container).stdout) as Record<string, unknown>[];
    const ours = describeContainer(g.model, g.capture.ids.container);
    const pickC = (x: Record<string, unknown>) => ({ Id: x.Id, Name: x.Name, Image: x.Image, Driver: x.Driver, Created: ms(x.Created) });
    t.deepEqual(pickC(ours), pickC(dc), 'container c1');
  });

  it(`${driver}: strata verify finds the store sound (library and CLI)`, async (t) => {
    const g = await golden(driver);
    const r = await verifyStore(g.model);
    t.deepEqual(r.problems, []);
    t.true(r.ok);
    t.like(r.checked, { images: 4, containers: 1, tags: 4 });
    t.is(r.checked.layers, r.checked.layersReassembled, 'every layer tar rebuilt from tar-split and hashed');
    cli(t, ['verify', '--root', g.root]);
  });

  it(`${driver}: strata wrote nothing to the store`, async (t) => {
    const g = await golden(driver);
    await Promise.all([diskUsage(g.model), verifyStore(g.model), containerChanges(g.model, REFS.container)]);
    t.deepEqual(snapshotDiff(g.before, snapshotTree(g.root)), []);
  });

  if (driver === 'overlay2') {
    it('overlay2: the packed root keeps the whiteouts (char 0/0) and the opaque dir (trusted.overlay.opaque=y); the unpacked one has the whiteouts, and the xattr as root', async (t) => {
      const g = await golden(driver);
      const headers = await listTar(zlib.gunzipSync(fs.readFileSync(archiveOf(driver))));
      const whiteouts = headers.filter((h) => h.type === 'character-device' && h.devmajor === 0 && h.devminor === 0).map((h) => h.name).sort();
      const c1 = g.model.containers.find((c) => c.name === REFS.container)!;
      // docker load applied layer 2's .wh.delme.txt entry as a device, not as a file
      t.deepEqual(headers.filter((h) => h.name.endsWith('/.wh.delme.txt')).map((h) => h.name), []);
      // c1's D lines (docker diff) are whiteouts in its diff dir; layer 2's .wh.delme.txt became one too
      const deleted = diffSet(call(g, 'diff', REFS.container).stdout).filter((l) => l.startsWith('D ')).map((l) => `overlay2/${c1.mountId}/diff${l.slice(2)}`);
      t.true(deleted.length >= 2);
      for (const d of deleted) t.true(whiteouts.includes(d), `${d} is a whiteout in the archive`);
      t.true(whiteouts.some((w) => w.endsWith('/diff/data/delme.txt')), 'layer 2 whiteout of /data/delme.txt');
      const opaque = headers.filter((h) => (h as { pax?: Record<string, string> }).pax?.['SCHILY.xattr.trusted.overlay.opaque'] === 'y').map((h) => h.name);
      t.is(opaque.length, 1, `opaque dirs: ${opaque.join(' ')}`);
      t.regex(opaque[0], /^overlay2\/[0-9a-f]{64}\/diff\/opaq\/?$/);
      for (const w of whiteouts) {
        const st = fs.lstatSync(path.join(g.root, w));
        t.true(st.isCharacterDevice() && st.rdev === 0, `${w} unpacked as a whiteout`);
      }
      t.is(opaqueByXattr(path.join(g.root, opaque[0]), 'overlay'), isRoot, isRoot ? 'root restores trusted.overlay.opaque' : 'a user cannot set trusted.* (not needed for what is compared)');
    });
  }
}
