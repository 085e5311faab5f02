// Driver selection as the daemon does it (moby v23 graphdriver.New). The
// selection rules are tested on a private registry whose init functions
// record what was tried; the real registry (drivers/all.ts) is checked by
// probeDrivers and an explicit selection of vfs.
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import '../drivers/all.ts';
import {
  MSG_NOT_SUPPORTED, NotSupportedError, errNotSupported, errPrerequisites, isDriverNotSupported,
  parseStorageOptKeyValue, ramInBytes, type Driver,
} from '../drivers/driver.ts';
import { DriverRegistry, KNOWN_DRIVERS, PRIORITY, drivers, probeDrivers, selectDriver } from '../drivers/registry.ts';

function tmpRoot(t: { teardown: (fn: () => void) => void }): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-registry-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  return root;
}

/** A registry where each name either inits (returning a real vfs driver in its home) or throws. */
async function registryWith(behaviour: Record<string, 'ok' | Error>): Promise<{ reg: DriverRegistry; tried: string[] }> {
  const reg = new DriverRegistry();
  const tried: string[] = [];
  const vfsInit = (await import('../drivers/vfs/vfs.ts')).init;
  for (const [name, b] of Object.entries(behaviour)) {
    reg.register(name, async (home, options) => {
      tried.push(name);
      if (b instanceof Error) throw b;
      const d = await vfsInit(home, options);
      return Object.create(d, { name: { value: name } }) as Driver; // a vfs answering to this name
    });
  }
  return { reg, tried };
}

function prior(root: string, name: string): void {
  fs.mkdirSync(path.join(root, name, 'some-layer'), { recursive: true });
}

test('priority list is moby v23 less fuse-overlayfs and zfs', (t) => {
  t.deepEqual([...PRIORITY], ['overlay2', 'btrfs', 'aufs', 'overlay', 'devicemapper', 'vfs']);
  t.deepEqual([...KNOWN_DRIVERS].sort(), ['aufs', 'btrfs', 'devicemapper', 'overlay', 'overlay2', 'vfs']);
});

test('explicit name is strict: its error, no fallback; unknown name is "driver not supported"', async (t) => {
  const root = tmpRoot(t);
  const { reg, tried } = await registryWith({ overlay2: errNotSupported(), vfs: 'ok' });
  await t.throwsAsync(reg.selectDriver(root, { name: 'overlay2' }), { instanceOf: NotSupportedError, message: MSG_NOT_SUPPORTED });
  t.deepEqual(tried, ['overlay2']);
  const unknown = await t.throwsAsync(reg.selectDriver(root, { name: 'zfs' }));
  t.true(isDriverNotSupported(unknown));
  t.is(unknown?.message, 'driver not supported');
  t.is((await reg.selectDriver(root, { name: 'vfs' })).home, path.join(root, 'vfs'));
});

test('no prior state: priority order, NotSupported skipped, deprecated never auto-selected', async (t) => {
  const root = tmpRoot(t);
  const { reg, tried } = await registryWith({
    vfs: 'ok', aufs: 'ok', devicemapper: 'ok', overlay2: errNotSupported(), btrfs: errPrerequisites(),
  });
  const d = await reg.selectDriver(root);
  t.is(d.name, 'vfs');
  t.deepEqual(tried, ['overlay2', 'btrfs', 'vfs']);
});

test('no prior state: any other init error aborts selection', async (t) => {
  const root = tmpRoot(t);
  const { reg, tried } = await registryWith({ overlay2: new Error('boom'), vfs: 'ok' });
  await t.throwsAsync(reg.selectDriver(root), { message: 'boom' });
  t.deepEqual(tried, ['overlay2']);
});

test('no supported driver at all', async (t) => {
  const root = tmpRoot(t);
  const { reg } = await registryWith({ overlay2: errNotSupported(), btrfs: errPrerequisites() });
  await t.throwsAsync(reg.selectDriver(root), { message: 'no supported storage driver found' });
});

test('prior state wins over priority; vfs and empty dirs are not prior state', async (t) => {
  const root = tmpRoot(t);
  const { reg, tried } = await registryWith({ overlay2: 'ok', btrfs: 'ok', vfs: 'ok' });
  prior(root, 'btrfs');
  prior(root, 'vfs');
  fs.mkdirSync(path.join(root, 'overlay2'));
  t.deepEqual(reg.scanPriorDrivers(root), ['btrfs']);
  t.is((await reg.selectDriver(root)).name, 'btrfs');
  t.deepEqual(tried, ['btrfs']);
});

test('prior driver that fails to init: its error, even NotSupported (images must not vanish)', async (t) => {
  const root = tmpRoot(t);
  const { reg, tried } = await registryWith({ overlay2: 'ok', btrfs: errPrerequisites(), vfs: 'ok' });
  prior(root, 'btrfs');
  await t.throwsAsync(reg.selectDriver(root), { message: 'prerequisites for driver not satisfied (wrong filesystem?)' });
  t.deepEqual(tried, ['btrfs']);
});

test('several prior drivers: moby\'s error naming them', async (t) => {
  const root = tmpRoot(t);
  const { reg } = await registryWith({ overlay2: 'ok', btrfs: 'ok', vfs: 'ok' });
  prior(root, 'overlay2');
  prior(root, 'btrfs');
  await t.throwsAsync(reg.selectDriver(root), {
    message: `${root} contains several valid graphdrivers: btrfs, overlay2; cleanup or explicitly choose storage driver (-s <DRIVER>)`,
  });
  t.is((await reg.selectDriver(root, { name: 'overlay2' })).name, 'overlay2', 'an explicit name still works');
});

test('a deprecated prior driver stops selection (v23)', async (t) => {
  const root = tmpRoot(t);
  const { reg } = await registryWith({ aufs: 'ok', overlay2: 'ok' });
  prior(root, 'aufs');
  await t.throwsAsync(reg.selectDriver(root), { message: /^prior storage driver aufs is deprecated/ });
});

test('register twice is refused', async (t) => {
  const { reg } = await registryWith({ vfs: 'ok' });
  t.throws(() => reg.register('vfs', async () => { throw new Error('x'); }), { message: 'graphdriver vfs is already registered' });
});

test('the real registry: probeDrivers reports all six, honestly, and leaves nothing behind', async (t) => {
  const root = tmpRoot(t);
  const probes = await probeDrivers(path.join(root, 'not-yet', 'docker'));
  t.deepEqual(probes.map((p) => p.name), [...KNOWN_DRIVERS]);
  for (const p of probes) {
    if (!drivers.has(p.name)) t.deepEqual(p, { name: p.name, usable: false, reason: 'not implemented in this strata version' });
    else t.is(p.usable, p.reason === '', `${p.name}: usable iff no reason (${p.reason})`);
  }
  t.true(probes.find((p) => p.name === 'vfs')!.usable);
  t.deepEqual(fs.readdirSync(root), [], 'probe scratch removed');
});

test('probeDrivers removes the scratch root a killed `strata drivers` left (holder dead), not a live one\'s', async (t) => {
  const root = tmpRoot(t);
  const start = Number(fs.readFileSync('/proc/self/stat', 'latin1').split(') ')[1].split(' ')[19]);
  const dead = path.join(root, `.strata-probe-${process.pid}.${start + 1}-AbCdEf`); // our pid, another start: not us
  const live = path.join(root, `.strata-probe-${process.pid}.${start}-GhIjKl`);
  fs.mkdirSync(path.join(dead, 'overlay2'), { recursive: true });
  fs.mkdirSync(live);
  await probeDrivers(root);
  t.deepEqual(fs.readdirSync(root), [path.basename(live)]);
});

test('the real registry: explicit vfs', async (t) => {
  const root = tmpRoot(t);
  const d = await selectDriver(root, { name: 'vfs' });
  t.is(d.name, 'vfs');
  t.is(d.home, path.join(root, 'vfs'));
  t.true(fs.statSync(d.home).isDirectory());
});

test('storage options: key=value parsing and go-units RAMInBytes', (t) => {
  t.deepEqual(parseStorageOptKeyValue(' Size = 10G '), ['size', '10G']);
  t.deepEqual(parseStorageOptKeyValue('a=b=c'), ['a', 'b=c']);
  t.throws(() => parseStorageOptKeyValue('nokey'), { message: 'unable to parse storage-opt: nokey' });
  const cases: [string, number][] = [
    ['32', 32], ['32b', 32], ['32B', 32], ['32k', 32 * 1024], ['32K', 32 * 1024], ['32kb', 32 * 1024],
    ['32Kib', 32 * 1024], ['32Mb', 32 * 1024 ** 2], ['32Gb', 32 * 1024 ** 3], ['32Tb', 32 * 1024 ** 4],
    ['32Pb', 32 * 1024 ** 5], ['50M', 50 * 1024 ** 2], ['0.3MB', Math.trunc(0.3 * 1024 ** 2)], ['32.3 MiB', Math.trunc(32.3 * 1024 ** 2)],
    ['3 k', 3 * 1024],
  ];
  for (const [s, n] of cases) t.is(ramInBytes(s), n, s);
  for (const [s, msg] of [
    ['', "invalid size: ''"], ['hello', "invalid size: 'hello'"], ['-32', "invalid size: '-32'"],
    ['32mbi', "invalid suffix: 'mbi'"], ['32bb', "invalid suffix: 'bb'"], ['32x', "invalid suffix: 'x'"],
    ['32.3.4k', 'strconv.ParseFloat: parsing "32.3.4": invalid syntax'],
  ] as const) t.throws(() => ramInBytes(s), { message: msg }, s);
});
