// Rebuild-and-mount cost of the read-only devicemapper driver, per GB of
// mapped data (host side, no device-mapper needed):
//   node --import=tsx bench/devicemapper-rebuild.ts [MiB]   (root; default 1024)
// A pool is made without the kernel: an ext4 image holding rootfs/ with MiB of
// random data is the pool's data file, one thin device maps all of it
// (thin_restore from XML), and the driver's get() rebuilds that device and
// loop-mounts it; the file's sha256 is checked through the mount.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { rebuiltFor } from '../drivers/devicemapper/read-only.ts';

const mib = Number(process.argv[2] ?? 1024);
const tmp = fs.mkdtempSync(path.join(process.env.STRATA_COST_DIR ?? os.tmpdir(), 'strata-dm-rebuild-'));
const id = 'a'.repeat(64);
const block = 64 * 1024;
try {
  const src = path.join(tmp, 'src');
  fs.mkdirSync(path.join(src, 'rootfs'), { recursive: true });
  const hash = createHash('sha256');
  const fd = fs.openSync(path.join(src, 'rootfs', 'big.bin'), 'w');
  for (let i = 0; i < mib; i++) {
    const b = randomBytes(1 << 20);
    hash.update(b);
    fs.writeSync(fd, b);
  }
  fs.closeSync(fd);
  fs.writeFileSync(path.join(src, 'id'), id);
  const home = path.join(tmp, 'root', 'devicemapper');
  fs.mkdirSync(path.join(home, 'devicemapper'), { recursive: true });
  fs.mkdirSync(path.join(home, 'metadata'));
  const data = path.join(home, 'devicemapper', 'data');
  const size = Math.ceil(((mib + 64) * (1 << 20) * 1.1) / block) * block;
  fs.closeSync(fs.openSync(data, 'w'));
  fs.truncateSync(data, size);
  execFileSync('mkfs.ext4', ['-q', '-F', '-d', src, data], { stdio: 'pipe' });
  fs.rmSync(src, { recursive: true });
  const blocks = size / block;
  const xml = path.join(tmp, 'pool.xml');
  fs.writeFileSync(xml, `<superblock uuid="" time="0" transaction="1" flags="0" version="2" data_block_size="128" nr_data_blocks="${blocks}">
  <device dev_id="1" mapped_blocks="${blocks}" transaction="0" creation_time="0" snap_time="0">
    <range_mapping origin_begin="0" data_begin="0" length="${blocks}" time="0"/>
  </device>
</superblock>
`);
  const meta = path.join(home, 'devicemapper', 'metadata');
  fs.closeSync(fs.openSync(meta, 'w'));
  fs.truncateSync(meta, 64 << 20);
  execFileSync('thin_restore', ['-i', xml, '-o', meta], { stdio: 'pipe' });
  fs.writeFileSync(path.join(home, 'metadata', id), JSON.stringify({ device_id: 1, size, transaction_id: 1, initialized: true, deleted: false }));
  execFileSync('sync');
  const d = rebuiltFor(home);
  const t0 = performance.now();
  const rootfs = await d.get(id);
  const getMs = performance.now() - t0;
  const sum = createHash('sha256').update(fs.readFileSync(path.join(rootfs, 'big.bin'))).digest('hex');
  const t1 = performance.now();
  await d.put(id);
  const putMs = performance.now() - t1;
  await d.cleanup();
  if (sum !== hash.digest('hex')) throw new Error('big.bin read through the rebuilt device differs');
  const gb = (blocks * block) / 1e9;
  console.log(JSON.stringify({ mappedGB: Math.round(gb * 1000) / 1000, getMs: Math.round(getMs), putMs: Math.round(putMs), msPerMappedGB: Math.round(getMs / gb) }));
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}
