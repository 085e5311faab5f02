// A Docker data root written by strata's aufs driver through the store
// writer (layerstore/writer.ts) — two image layers, a container whose RW
// layer is written through the FUSE union and put back in aufs form — read
// by the offline commands `strata images`, `diff`, `df` and `verify`.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import '../drivers/all.ts';
import { getDriver } from '../drivers/registry.ts';
import { StoreWriter } from '../layerstore/writer.ts';
import { mountsUnder } from '../sys/mountinfo.ts';
import * as sys from '../sys/syscalls.ts';
import { repo } from './helpers/line-child.ts';
import { hasTool, isRoot, when } from './helpers/require.ts';
import { packTar, tempDir } from './helpers/tar.ts';

const fuseMissing = !isRoot ? 'root' : !fs.existsSync('/dev/fuse') || !hasTool('fuse-overlayfs') || !hasTool('fusermount3')
  ? '/dev/fuse, fuse-overlayfs and fusermount3 (the FUSE union of aufs layers)' : null;
const hex = (s: string) => createHash('sha256').update(s).digest('hex');

function strata(args: string[]): { code: number; out: string; err: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(repo, 'cli/main.ts'), ...args], { encoding: 'utf8' });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

when(fuseMissing === null, fuseMissing ?? '', { serial: true })('a store written by the aufs driver is read by strata images, diff, df and verify', async (t) => {
  const tmp = tempDir('strata-aufs-store-');
  const root = path.join(tmp.dir, 'root');
  const driver = await getDriver('aufs', root);
  t.teardown(async () => {
    await driver.cleanup();
    for (const m of mountsUnder(tmp.dir).reverse()) sys.umount2(m.mountPoint, sys.MNT_DETACH);
    tmp.cleanup();
  });
  const w = StoreWriter.open(root, 'aufs');
  const l1 = await w.applyLayer(driver, await packTar([
    { name: 'etc/', type: 'directory' }, { name: 'etc/motd', content: 'hello\n' }, { name: 'etc/gone', content: 'x' },
    { name: 'bin/', type: 'directory' }, { name: 'bin/sh', content: 'sh' },
  ]), null, hex('l1'));
  const l2 = await w.applyLayer(driver, await packTar([
    { name: 'etc/', type: 'directory' }, { name: 'etc/.wh.gone', content: '' }, { name: 'etc/motd', content: 'changed\n' },
  ]), { chainId: l1.chainId, cacheId: l1.cacheId }, hex('l2'));
  t.true(fs.lstatSync(path.join(root, 'aufs/diff', hex('l2'), 'etc/.wh.gone')).isFile(), 'applyDiff keeps the aufs form');
  const created = '2024-05-01T00:00:00Z';
  const config = Buffer.from(JSON.stringify({
    architecture: 'amd64', os: 'linux', created, config: { Cmd: ['/bin/sh'] },
    rootfs: { type: 'layers', diff_ids: [l1.diffId, l2.diffId] }, history: [{ created, created_by: 'ADD a' }, { created, created_by: 'ADD b' }],
  }));
  const image = w.writeImage(config, { layers: [l1.chainId, l2.chainId] });
  w.writeTags(new Map([['aufs/sample:1', image]]));
  const container = hex('container');
  const mountId = hex('mount');
  await w.createRWLayer(driver, container, mountId, { chainId: l2.chainId, cacheId: l2.cacheId }, (rootfs) => {
    fs.writeFileSync(path.join(rootfs, 'etc/hostname'), 'box\n');
  });
  const rootfs = await driver.get(mountId);
  fs.rmSync(path.join(rootfs, 'bin/sh'));
  fs.writeFileSync(path.join(rootfs, 'new'), 'new file\n');
  await driver.put(mountId);
  t.deepEqual(fs.readdirSync(path.join(root, 'aufs/diff', mountId, 'bin')), ['.wh.sh'], 'the RW layer is in aufs form');
  w.writeContainer(container, {
    State: { Running: false, ExitCode: 0, StartedAt: created, FinishedAt: created }, ID: container, Created: created,
    Path: '/bin/sh', Args: [], Config: { Image: 'aufs/sample:1' }, Image: image, Name: '/box', Driver: 'aufs',
  }, { NetworkMode: 'none' });
  await driver.cleanup();

  const images = strata(['images', '--root', root, '--json']);
  t.is(images.code, 0, images.err);
  const rows = JSON.parse(images.out) as { Repository?: string; repository?: string; Tag?: string; tag?: string }[];
  t.is(rows.length, 1);
  t.regex(JSON.stringify(rows[0]), /aufs\/sample/);
  const diff = strata(['diff', container, '--root', root]);
  t.is(diff.code, 0, diff.err);
  t.deepEqual(diff.out.trim().split('\n'), ['C /bin', 'D /bin/sh', 'A /new']);
  const df = strata(['df', '-v', '--root', root]);
  t.is(df.code, 0, df.err);
  t.regex(df.out, /aufs\/sample/);
  const verify = strata(['verify', '--root', root]);
  t.is(verify.code, 0, verify.out + verify.err);
});
