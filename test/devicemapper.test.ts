// devicemapper on this host, which has no device-mapper: the options and
// units are moby's, `use` refuses with NotSupportedError (auto-selection
// skips it), and the read-only open refuses every write. The driver itself
// runs in the VM: test/conformance/devicemapper.test.ts.
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { InvalidParameterError, isDriverNotSupported } from '../drivers/driver.ts';
import { humanSize, init, parseOptions } from '../drivers/devicemapper/devicemapper.ts';
import { kernelHasDeviceMapper } from '../drivers/devicemapper/thin-pool.ts';
import { ReadOnlyOpenError } from '../drivers/read-only.ts';
import { when } from './helpers/require.ts';

test('devicemapper options: moby defaults, dm.* parsed, bad values named', (t) => {
  const d = parseOptions([]);
  t.deepEqual(d, { baseSize: 10 * 1024 ** 3, loopDataSize: 100 * 1024 ** 3, loopMetadataSize: 2 * 1024 ** 3, fs: '', blockSize: 65536, minFreeSpacePercent: 10, thinPoolDev: '' });
  const o = parseOptions(['dm.basesize=20G', 'dm.loopdatasize=1G', 'dm.loopmetadatasize=64M', 'dm.fs=ext4', 'dm.blocksize=512K', 'dm.min_free_space=5%', 'dm.thinpooldev=/dev/mapper/tp']);
  t.deepEqual(o, { baseSize: 20 * 1024 ** 3, loopDataSize: 1024 ** 3, loopMetadataSize: 64 * 1024 ** 2, fs: 'ext4', blockSize: 512 * 1024, minFreeSpacePercent: 5, thinPoolDev: 'tp' });
  t.throws(() => parseOptions(['dm.foo=1']), { instanceOf: InvalidParameterError, message: 'devmapper: Unknown option dm.foo' });
  t.throws(() => parseOptions(['dm.fs=btrfs']), { message: 'devmapper: Unsupported filesystem btrfs' });
  t.throws(() => parseOptions(['dm.blocksize=100K']), { message: /Invalid dm.blocksize 100K/ });
  t.throws(() => parseOptions(['dm.min_free_space=120%']), { message: 'devmapper: Invalid value 120% for option dm.min_free_space' });
});

test('devicemapper Status sizes: go-units HumanSize (decimal, 4 significant digits)', (t) => {
  t.is(humanSize(10 * 1024 ** 3), '10.74GB');
  t.is(humanSize(65536), '65.54kB');
  t.is(humanSize(999), '999B');
  t.is(humanSize(0), '0B');
});

const noDm = !kernelHasDeviceMapper();

when(noDm, 'a kernel without device-mapper (this checks the refusal where dm is missing)')('devicemapper in use mode without device-mapper: NotSupportedError, nothing created', async (t) => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-dm-'));
  t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const err = await t.throwsAsync(init(path.join(tmp, 'devicemapper'), []));
  t.true(isDriverNotSupported(err), String(err));
  t.false(fs.existsSync(path.join(tmp, 'devicemapper')));
});

test('devicemapper read-only open: writes refused naming the home; a missing home refused', async (t) => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-dm-'));
  t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const home = path.join(tmp, 'devicemapper');
  await t.throwsAsync(init(home, [], { mode: 'read-only' }), { message: `devicemapper: ${home}: no such driver home` });
  fs.mkdirSync(path.join(home, 'metadata'), { recursive: true });
  const d = await init(home, [], { mode: 'read-only' });
  await t.throwsAsync(d.create('a', null), { instanceOf: ReadOnlyOpenError, message: `devicemapper: ${home} is open read-only: create a refused` });
  await t.throwsAsync(d.remove('a'), { instanceOf: ReadOnlyOpenError });
  t.false(d.exists('a'));
  await t.throwsAsync(d.get('a'), { message: /layer a does not exist/ });
  await d.cleanup();
});
