// `strata verify` on a Docker ≥ 1.10 store whose driver is devicemapper, on a
// kernel without device-mapper: every layer's thin device is rebuilt from the
// pool in userspace (drivers/devicemapper/thin-pool.ts), loop-mounted read-only, and
// its tar rebuilt from tar-split and hashed against the DiffID. A byte
// flipped in the pool's data file, inside a block of a file of one layer,
// makes verify fail naming that layer and file. The store is left as it was
// and nothing stays mounted or attached.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeDevmapperModernStore, type DevmapperModernStoreInfo } from '../../fixtures/devmapper-modern-store.ts';
import { kernelHasDeviceMapper } from '../../drivers/devicemapper/thin-pool.ts';
import { runDir } from '../../drivers/devicemapper/read-only.ts';
import { openStore } from '../../layerstore/store.ts';
import { verifyStore } from '../../inspect/verify.ts';
import { isRoot, when } from '../helpers/require.ts';
import { snapshotTree } from '../helpers/store-snapshot.ts';
import { strata } from '../helpers/strata-cli.ts';

const hasTool = (t: string) => (process.env.PATH ?? '').split(':').some((d) => d && fs.existsSync(path.join(d, t)));
const ok = isRoot && ['thin_dump', 'thin_restore', 'thin_check', 'mkfs.ext4', 'losetup'].every(hasTool) && fs.existsSync('/dev/loop-control') && !kernelHasDeviceMapper();
const serial = when(ok, 'root, loop devices, mkfs.ext4, thin-provisioning-tools and a kernel without device-mapper', { serial: true });

let tmp: string;
let info: DevmapperModernStoreInfo;
let before: Map<string, string>;
/**
 * The thin reader's scratch dir (TMPDIR of this process and of the CLI it
 * runs): its images and mounts are this file's own, not those of another
 * test file running at the same time.
 */
let scratchDir: string;
const scratch = () => fs.readdirSync(scratchDir).filter((n) => n.startsWith('strata-dm-')).sort();

/** Byte offset in `file` of the first occurrence of `needle`. */
function offsetOf(file: string, needle: Buffer): number {
  const fd = fs.openSync(file, 'r');
  try {
    const chunk = 1 << 20;
    const buf = Buffer.alloc(chunk + needle.length);
    for (let pos = 0; ; pos += chunk) {
      const n = fs.readSync(fd, buf, 0, buf.length, pos);
      if (n < needle.length) return -1;
      const i = buf.subarray(0, n).indexOf(needle);
      if (i !== -1) return pos + i;
    }
  } finally {
    fs.closeSync(fd);
  }
}

const layerDir = (root: string, chainId: string) => path.join(root, 'image', 'devicemapper', 'layerdb', 'sha256', chainId.slice(7));

test.before(async () => {
  if (!ok) return;
  // not under a /strata-dm* path: devmapper.test.ts looks for those
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-verify-dm-'));
  scratchDir = path.join(tmp, 'scratch');
  fs.mkdirSync(scratchDir);
  process.env.TMPDIR = scratchDir;
  fs.mkdirSync(path.join(tmp, 'root'));
  fs.mkdirSync(path.join(tmp, 'work'));
  info = await writeDevmapperModernStore(path.join(tmp, 'root'), path.join(tmp, 'work'), { withContainer: true });
  before = snapshotTree(info.root);
});

test.after.always(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

serial('the fixture: B\'s tar holds only B\'s own changes (a whiteout for the removed file), A\'s its whole tree', (t) => {
  const [a, b] = info.layers as [DevmapperModernStoreInfo['layers'][0], DevmapperModernStoreInfo['layers'][0]];
  t.true(a.names.includes('usr/bin/tool'));
  t.true(a.names.includes('etc/remove-me'));
  t.deepEqual([...b.names].sort(), ['etc', 'etc/.wh.remove-me', 'etc/hostname', 'opt', 'opt/b', 'opt/b/new.bin']);
});

serial('verify on a devicemapper store: every DiffID rebuilt from tar-split and the thin devices (CLI exit 0)', async (t) => {
  const r = await verifyStore(await openStore(info.root));
  t.deepEqual(r.problems, []);
  t.true(r.ok);
  t.is(r.driver, 'devicemapper');
  t.is(r.checked.images, 1);
  t.is(r.checked.layers, 2);
  t.is(r.checked.layersReassembled, 2);
  t.is(r.checked.containers, 1, 'its RW and init devices count as present (their device records are there)');
  t.is(r.checked.bytesReassembled, info.layers.reduce((s, l) => s + l.tarBytes, 0));
  const cli = strata(['verify', '--root', info.root]);
  t.is(cli.code, 0, cli.stderr);
  t.regex(cli.stdout, /2 layers \(2 rebuilt from tar-split/);
});

serial('a byte flipped in the data file inside a block of B\'s file: verify exits 1 naming layer B and the file, A stays good', (t) => {
  const copy = path.join(tmp, 'flipped');
  fs.mkdirSync(copy);
  execFileSync('cp', ['-a', '--sparse=always', path.join(info.root, 'devicemapper'), path.join(info.root, 'image'), copy]);
  // opt/b/new.bin is only in layer B (its thin device's own blocks)
  const data = path.join(copy, 'devicemapper/devicemapper/data');
  const needle = Buffer.from(crypto.createHash('sha256').update('b').digest().toString('hex'));
  const at = offsetOf(data, needle);
  t.true(at >= 0, 'new.bin\'s content is in the data file');
  const fd = fs.openSync(data, 'r+');
  const one = Buffer.alloc(1);
  fs.readSync(fd, one, 0, 1, at + 7);
  one[0]! ^= 0x40;
  fs.writeSync(fd, one, 0, 1, at + 7);
  fs.closeSync(fd);
  const flipped = snapshotTree(copy);
  const [a, b] = info.layers as [DevmapperModernStoreInfo['layers'][0], DevmapperModernStoreInfo['layers'][0]];
  t.is(os.tmpdir(), scratchDir);
  const r = strata(['verify', '--root', copy]);
  t.is(r.code, 1, r.stdout + r.stderr);
  t.regex(r.stderr, /error: \S+\/rootfs\/opt\/b\/new\.bin: content differs from the layer \(CRC-64/);
  const diffB = path.join(layerDir(copy, b.chainId), 'diff');
  t.true(r.stderr.includes(`error: ${diffB}: says ${b.diffId}, but the tar rebuilt from tar-split and thin device ${b.cacheId}`), r.stderr);
  t.false(r.stderr.includes(layerDir(copy, a.chainId)), 'layer A still verifies');
  t.false(r.stderr.includes('    at '));
  t.deepEqual([...snapshotTree(copy).entries()], [...flipped.entries()], 'verify changed nothing in the copy');
});

serial('diff of the container: its RW thin device against its init device, both rebuilt from the pool', async (t) => {
  const r = strata(['diff', '--root', info.root, 'dm-box']);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, ['A /data', 'A /data/hello.txt', 'C /etc', 'C /etc/hostname', 'C /opt', 'C /opt/b', 'D /opt/b/new.bin', ''].join('\n'));
});

serial('df: the container\'s SIZE is its RW device\'s DiffSize against the init device (Σ added and changed files)', async (t) => {
  const r = strata(['df', '--root', info.root, '--json']);
  t.is(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout) as { containers: { id: string; sizeRw: number | null }[] };
  t.is(report.containers.length, 1);
  t.is(report.containers[0]!.id, info.containerId!);
  t.is(report.containers[0]!.sizeRw, 'hello\n'.length + 'container\n'.length);
});

serial('afterwards: the store is unchanged and nothing stays mounted or attached', (t) => {
  t.deepEqual([...snapshotTree(info.root).entries()], [...before.entries()]);
  const loops = execFileSync('losetup', ['-a'], { encoding: 'utf8' });
  t.false(loops.includes(scratchDir), loops);
  const mi = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  t.false(mi.includes(scratchDir), mi.split('\n').filter((l) => l.includes(scratchDir)).join('\n'));
  t.deepEqual(scratch(), [], 'the temporary images are removed'); // (the CLI's tsx keeps its cache there too)
  // the rebuilt images and their mounts live in the read-only driver's run dir, per home
  for (const root of [info.root, path.join(tmp, 'flipped')]) {
    const run = runDir(path.join(root, 'devicemapper'));
    t.false(fs.existsSync(run), `${run} is left`);
    t.false(loops.includes(run), loops);
    t.false(mi.includes(run));
  }
});
