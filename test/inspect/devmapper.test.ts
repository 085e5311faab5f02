// A Docker devicemapper store read with no device-mapper in the kernel
// (drivers/devicemapper/thin-pool.ts): the pool built by fixtures/devmapper-store.ts
// (real ext4 devices in a real thin pool, metadata made by thin_restore) is
// decoded with thin_dump, each thin device rebuilt as a sparse image and
// loop-mounted read-only; its files must match the trees the fixture wrote,
// the store must be left byte-identical and nothing may stay mounted.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { manifestDiff, treeManifest } from '../../archive/digest.ts';
import { DM_BLOCK, DM_DEVICE_SIZE, writeDevmapperStore, type DevmapperStoreInfo } from '../../fixtures/devmapper-store.ts';
import { checkThinPool, extractDevice, kernelHasDeviceMapper, readThinMetadata, ThinMetadataError, withDeviceMounted, type ThinMapping } from '../../drivers/devicemapper/thin-pool.ts';
import { init } from '../../drivers/devicemapper/devicemapper.ts';
import { runDir } from '../../drivers/devicemapper/read-only.ts';
import { DriverDirs } from '../../inspect/driver-dirs.ts';
import { LineChild } from '../helpers/line-child.ts';
import { Problems } from '../../layerstore/problems.ts';
import { isRoot, when } from '../helpers/require.ts';
import { snapshotTree } from '../helpers/store-snapshot.ts';

const hasTool = (t: string) => (process.env.PATH ?? '').split(':').some((d) => d && fs.existsSync(path.join(d, t)));
const ok = isRoot && ['thin_dump', 'thin_restore', 'thin_check', 'mkfs.ext4', 'losetup'].every(hasTool) && fs.existsSync('/dev/loop-control');
const serial = when(ok, 'root, loop devices, mkfs.ext4 and thin-provisioning-tools (thin_dump/thin_restore/thin_check)', { serial: true });

let tmp: string;
let info: DevmapperStoreInfo;
let before: Map<string, string>;
const metaFile = () => path.join(info.root, 'devicemapper/devicemapper/metadata');
const dataFile = () => path.join(info.root, 'devicemapper/devicemapper/data');

function expand(mappings: readonly ThinMapping[]): Map<number, number> {
  const m = new Map<number, number>();
  for (const x of mappings) for (let i = 0; i < x.length; i++) m.set(x.originBlock + i, x.dataBlock + i);
  return m;
}

test.before(() => {
  if (!ok) return;
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-dmtest-'));
  fs.mkdirSync(path.join(tmp, 'root'));
  fs.mkdirSync(path.join(tmp, 'work'));
  info = writeDevmapperStore(path.join(tmp, 'root'), path.join(tmp, 'work'));
  before = snapshotTree(path.join(info.root, 'devicemapper'));
});

test.after.always(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

serial('thin_dump of the pool: superblock and every device with the mappings the fixture laid out', async (t) => {
  const pool = await readThinMetadata(metaFile());
  t.is(pool.superblock.dataBlockSize, DM_BLOCK);
  t.is(pool.superblock.transaction, 3);
  t.deepEqual([...pool.devices.keys()].sort(), [1, 2, 3]);
  for (const d of info.devices) {
    const dev = pool.devices.get(d.devId)!;
    t.is(dev.mappedBlocks, d.map.size, `dev ${d.devId}`);
    t.deepEqual(expand(dev.mappings), d.map, `dev ${d.devId}`);
  }
  // only the devices asked for keep their mappings
  const one = await readThinMetadata(metaFile(), [2]);
  t.is(one.devices.get(1)!.mappings.length, 0);
  t.true(one.devices.get(2)!.mappings.length > 0);
});

serial('both layer devices rebuilt and mounted read-only: their rootfs matches the source trees', async (t) => {
  for (const d of info.devices) {
    await withDeviceMounted(info.root, d.id, async (mnt) => {
      t.is(fs.statSync(mnt).size >= 0, true);
      if (d.tree === null) {
        t.deepEqual(fs.readdirSync(mnt), ['lost+found'], 'the base device holds an empty file system');
        return;
      }
      t.is(fs.readFileSync(path.join(mnt, 'id'), 'utf8'), d.id);
      const got = await treeManifest(path.join(mnt, 'rootfs'), { dirMtimes: false });
      const want = await treeManifest(d.tree, { dirMtimes: false });
      t.deepEqual(got, want, manifestDiff(want, got));
      // read-only: writing fails
      t.throws(() => fs.writeFileSync(path.join(mnt, 'rootfs/new'), 'x'), { code: 'EROFS' });
    });
  }
});

serial('a block shared by layer A and its snapshot B is read from the same data block; B\'s own block is not', async (t) => {
  const pool = await readThinMetadata(metaFile(), [2, 3]);
  const a = expand(pool.devices.get(2)!.mappings);
  const b = expand(pool.devices.get(3)!.mappings);
  const { sharedBlock: s, ownBlock: o } = info;
  t.is(a.get(s.origin), s.data);
  t.is(b.get(s.origin), s.data);
  t.is(a.get(o.origin), o.dataA);
  t.is(b.get(o.origin), o.dataB);
  t.not(o.dataA, o.dataB);
  // the rebuilt images hold the data file's block at that origin
  const dataFd = fs.openSync(dataFile(), 'r');
  const blockAt = (fd: number, i: number) => {
    const buf = Buffer.alloc(DM_BLOCK);
    fs.readSync(fd, buf, 0, DM_BLOCK, i * DM_BLOCK);
    return buf;
  };
  try {
    for (const [devId, m] of [[2, pool.devices.get(2)!.mappings], [3, pool.devices.get(3)!.mappings]] as const) {
      const img = path.join(tmp, `dev${devId}.img`);
      const st = extractDevice(dataFile(), m, DM_BLOCK, img, DM_DEVICE_SIZE);
      t.is(st.imageSize, DM_DEVICE_SIZE);
      t.is(fs.statSync(img).size, DM_DEVICE_SIZE);
      t.true(fs.statSync(img).blocks * 512 < DM_DEVICE_SIZE / 4, 'the image is sparse');
      const fd = fs.openSync(img, 'r');
      try {
        t.true(blockAt(fd, s.origin).equals(blockAt(dataFd, s.data)));
        t.true(blockAt(fd, o.origin).equals(blockAt(dataFd, devId === 2 ? o.dataA : o.dataB)));
      } finally {
        fs.closeSync(fd);
        fs.rmSync(img);
      }
    }
  } finally {
    fs.closeSync(dataFd);
  }
});

serial('DriverDirs.withFilesDir reads an unmounted devicemapper layer through the thin reader', async (t) => {
  const dirs = new DriverDirs('devicemapper', info.root);
  const b = info.devices[2]!;
  t.is(dirs.filesDir(b.id).dir, null, 'not mounted: filesDir has no directory');
  if (kernelHasDeviceMapper()) {
    t.false(dirs.rebuildsFiles);
    return;
  }
  t.true(dirs.rebuildsFiles);
  const got = await dirs.withFilesDir(b.id, (dir) => treeManifest(dir, { dirMtimes: false }));
  t.deepEqual(got, await treeManifest(b.tree!, { dirMtimes: false }));
});

serial('a corrupt metadata file: thin_dump fails and the problem names the file', async (t) => {
  const root2 = path.join(tmp, 'corrupt');
  fs.mkdirSync(root2);
  execFileSync('cp', ['-a', '--sparse=always', path.join(info.root, 'devicemapper'), root2]);
  const meta2 = path.join(root2, 'devicemapper/devicemapper/metadata');
  const fd = fs.openSync(meta2, 'r+');
  fs.writeSync(fd, Buffer.alloc(4096, 0xa5), 0, 4096, 0); // the superblock
  fs.closeSync(fd);
  const err = await t.throwsAsync(readThinMetadata(meta2), { instanceOf: ThinMetadataError });
  t.is(err!.file, meta2);
  t.regex(err!.message, /thin_dump failed/);
  t.true(err!.message.startsWith(meta2));
  const problems = new Problems();
  t.is(await checkThinPool(root2, problems), null);
  t.is(problems.errors.length, 1);
  t.is(problems.errors[0]!.path, meta2);
  await t.throwsAsync(withDeviceMounted(root2, info.devices[1]!.id, () => t.fail('must not be called')), { instanceOf: ThinMetadataError });
  const ok2 = new Problems();
  t.not(await checkThinPool(info.root, ok2), null);
  t.is(ok2.size, 0);
});

/** A copy of the fixture's store under tmp/<name> (sparse), for one damage. */
function storeCopy(name: string): string {
  const root = path.join(tmp, name);
  fs.mkdirSync(root);
  execFileSync('cp', ['-a', '--sparse=always', path.join(info.root, 'devicemapper'), root]);
  return root;
}

/** Nothing of `root`'s read-only driver left: no image, mount point or loop device under its run dir. */
function nothingLeft(t: import('ava').ExecutionContext, root: string): void {
  const run = runDir(path.join(root, 'devicemapper'));
  t.false(fs.existsSync(run), `${run} is left`);
  const loops = execFileSync('losetup', ['-a'], { encoding: 'utf8' });
  t.false(loops.includes(run), loops);
  t.false(fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(run));
}

serial('hostile device records and a truncated data file: one line naming the file, and no image left behind', async (t) => {
  const root = storeCopy('hostile');
  const a = info.devices[1]!.id;
  const rec = path.join(root, 'devicemapper/metadata', a);
  const d = await init(path.join(root, 'devicemapper'), [], { mode: 'read-only' });
  t.teardown(() => d.cleanup());
  const cases: [string, RegExp][] = [
    ['{"device_id":1.5,"size":67108864}', /device_id 1.5 is not a thin device id/],
    ['{"device_id":16777216,"size":67108864}', /device_id 16777216 is not a thin device id/],
    ['{"device_id":2,"size":-1}', /size is "-1", a negative size/],
    ['{"device_id":2,"size":1e300}', /size is "1e\+300", beyond any real size/],
    ['{"device_id":2,"size":"big"}', /size is "big", not a number/],
    ['{"device_id":2,"size":4096}', /maps blocks up to byte \d+, beyond its size 4096/],
  ];
  for (const [json, want] of cases) {
    fs.writeFileSync(rec, json);
    const err = await t.throwsAsync(d.get(a));
    t.regex(err!.message, want, json);
    t.true(err!.message.includes(a), `names metadata/${a}: ${err!.message}`);
    t.false(err!.message.includes('\n'));
    nothingLeft(t, root);
  }
  fs.writeFileSync(rec, JSON.stringify({ device_id: 2, size: DM_DEVICE_SIZE }));
  const data = path.join(root, 'devicemapper/devicemapper/data');
  fs.truncateSync(data, 1 << 20); // a copy cut short: its blocks must not read as zeros
  const err = await t.throwsAsync(d.get(a));
  t.regex(err!.message, /data: is 1048576 bytes, but the pool maps data blocks \d+\.\.\d+ \(65536-byte blocks\) beyond its end/);
  nothingLeft(t, root);
});

/** CRC-32C as the kernel's dm_bm_checksum takes it (seed ~0, no final inversion), for re-sealing an edited btree node. */
function dmChecksum(data: Buffer, xor: number): number {
  let crc = 0xffffffff;
  for (const b of data) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return (crc ^ xor) >>> 0;
}

serial('a mapping tree with a loop (a child pointing back at its node): thin_dump skips it and exits 0; the reader refuses the pool naming the file', async (t) => {
  const dir = path.join(tmp, 'btree-loop');
  fs.mkdirSync(dir);
  // one device with enough mappings for its tree to have an internal root
  const xml = [
    '<superblock uuid="" time="1" transaction="1" flags="0" version="2" data_block_size="128" nr_data_blocks="100000">',
    '<device dev_id="1" mapped_blocks="2000" transaction="0" creation_time="0" snap_time="0">',
    ...Array.from({ length: 2000 }, (_, i) => `<single_mapping origin_block="${i * 2}" data_block="${i * 3}" time="0"/>`),
    '</device>', '</superblock>',
  ].join('\n');
  fs.writeFileSync(path.join(dir, 'm.xml'), xml + '\n');
  const meta = path.join(dir, 'metadata');
  fs.writeFileSync(meta, '');
  fs.truncateSync(meta, 16 << 20);
  execFileSync('thin_restore', ['-i', path.join(dir, 'm.xml'), '-o', meta], { stdio: 'ignore' });
  const fd = fs.openSync(meta, 'r+');
  try {
    const block = (n: number) => {
      const b = Buffer.alloc(4096);
      fs.readSync(fd, b, 0, 4096, n * 4096);
      return b;
    };
    const top = block(Number(block(0).readBigUInt64LE(320))); // the superblock's data_mapping_root: dev id -> device tree
    const devRoot = Number(top.readBigUInt64LE(32 + top.readUInt32LE(20) * 8));
    const node = block(devRoot);
    t.is(node.readUInt32LE(4) & 1, 1, 'the device tree\'s root is an internal node');
    node.writeBigUInt64LE(BigInt(devRoot), 32 + node.readUInt32LE(20) * 8 + 8); // child 1 -> the root itself
    node.writeUInt32LE(dmChecksum(node.subarray(4), 121107), 0); // BTREE_CSUM_XOR
    fs.writeSync(fd, node, 0, 4096, devRoot * 4096);
  } finally {
    fs.closeSync(fd);
  }
  t.is(execFileSync('thin_dump', [meta]).toString().split('single_mapping').length - 1 < 2000, true, 'thin_dump drops the looped subtree without an error');
  const err = await t.throwsAsync(readThinMetadata(meta), { instanceOf: ThinMetadataError });
  t.is(err!.message, `${meta}: thin device 1: its mapping tree holds 1874 blocks, its details say 2000 (damaged metadata: thin_check tells more)`);
});

serial('a reader SIGKILLed with a device mounted: the next read-only reader of the store unmounts it, detaches its loop device and removes its image', async (t) => {
  const root = storeCopy('killed');
  const [a, b] = [info.devices[1]!.id, info.devices[2]!.id];
  const home = path.join(root, 'devicemapper');
  const child = new LineChild(
    `import { init } from './drivers/devicemapper/devicemapper.ts';
     const d = await init(${JSON.stringify(home)}, [], { mode: 'read-only' });
     console.log('ok ' + await d.get(${JSON.stringify(a)}));
     process.stdin.resume();`, {});
  t.teardown(() => child.close());
  const dir = (await child.line()).slice(3);
  t.true(fs.existsSync(path.join(dir, 'etc')), dir);
  await child.kill9();
  t.true(fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(runDir(home)), 'the killed reader left its mount');
  // another reader, of another layer and without cleanup() (as inspect reads one)
  await new DriverDirs('devicemapper', root).withFilesDir(b, async (d) => t.true(fs.existsSync(path.join(d, 'opt'))));
  nothingLeft(t, root);
});

serial('afterwards: the store is byte-identical and nothing stays mounted or attached', (t) => {
  const after = snapshotTree(path.join(info.root, 'devicemapper'));
  t.deepEqual([...after.entries()], [...before.entries()]);
  // under this file's temp dir only: other files (devmapper-verify, the devicemapper VM tests) mount
  // and attach below their own meanwhile
  const mine = tmp + '/';
  const loops = execFileSync('losetup', ['-a'], { encoding: 'utf8' });
  t.false(loops.includes(mine), loops);
  const mi = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  t.false(mi.includes(mine), mi.split('\n').filter((l) => l.includes(mine)).join('\n'));
  nothingLeft(t, info.root); // the rebuilt images and their mounts live in read-only.ts's runDir, not in the temp dir
});
