// A devicemapper store (on a kernel without device-mapper: its thin devices
// rebuilt from the pool in userspace and loop-mounted read-only) migrated to
// overlay2: the same checks as test/migrate.test.ts, and the pool untouched.
// Trees are compared with whole-second mtimes: the fixture's devices hold a
// symlink mtime in ns that its layer tar (ustar, no PAX) does not carry.
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeDevmapperModernStore } from '../fixtures/devmapper-modern-store.ts';
import { kernelHasDeviceMapper } from '../drivers/devicemapper/thin-pool.ts';
import { hasTool, isRoot, when } from './helpers/require.ts';
import { strata } from './helpers/strata-cli.ts';
import { sourceSnapshot, storeFacts, verifyProblems } from './helpers/migrate-store.ts';

const ok = isRoot && ['thin_dump', 'thin_restore', 'thin_check', 'mkfs.ext4', 'losetup'].every(hasTool) && fs.existsSync('/dev/loop-control') && !kernelHasDeviceMapper();

when(ok, 'root, loop devices, mkfs.ext4, thin-provisioning-tools and a kernel without device-mapper')('devicemapper → overlay2: images, layers and the container kept, the pool untouched', async (t) => {
  // not under a /strata-dm* path: devmapper.test.ts looks for those
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-migrate-dm-'));
  t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const root = path.join(tmp, 'root');
  fs.mkdirSync(root);
  fs.mkdirSync(path.join(tmp, 'work'));
  await writeDevmapperModernStore(root, path.join(tmp, 'work'), { withContainer: true });
  const before = await storeFacts(root, 'devicemapper', { wholeSeconds: true });
  const source = sourceSnapshot(root, 'devicemapper');
  const r = strata(['migrate', '--root', root, '--to', 'overlay2']);
  t.is(r.code, 0, r.stderr);
  t.deepEqual(sourceSnapshot(root, 'devicemapper'), source);
  t.deepEqual(await verifyProblems(root, 'overlay2'), []);
  const after = await storeFacts(root, 'overlay2', { wholeSeconds: true });
  t.deepEqual(after.diffIds, before.diffIds);
  t.deepEqual(after.trees, before.trees);
  t.deepEqual(after.changes, before.changes);
  t.true(before.changes.size === 1);
});
