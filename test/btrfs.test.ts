// The btrfs driver's own cases, on a loop-mounted btrfs made and removed here:
// the prerequisites refusal, nested subvolumes on remove (moby
// TestBtrfsSubvolDelete), qgroup limits (EDQUOT, btrfs.min_space), status, the
// read-only open, and the native changes: equal to the naive walk (changes,
// diff tar bytes, diffSize) on seeded random layer stacks, falling back where
// it cannot answer and saying so.
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { changesDirs } from '../archive/changes.ts';
import { fsPath as fsPathOf, rawPath } from '../archive/types.ts';
import { MSG_PREREQUISITES, NotSupportedError, type Driver } from '../drivers/driver.ts';
import { init } from '../drivers/btrfs/btrfs.ts';
import { childSubvolumes, isSubvolume, subvolCreate, subvolDestroy, subvolInfo, subvolSnapshot } from '../drivers/btrfs/ioctl.ts';
import { selfTag } from '../drivers/holder.ts';
import { SendStreamError, SendStreamHints } from '../drivers/btrfs/send-stream.ts';
import { Rng, applyRandomOps } from './helpers/random-layer-ops.ts';
import { applyRandomRenames } from './helpers/random-renames.ts';
import { when } from './helpers/require.ts';
import { mountsUnder } from '../sys/mountinfo.ts';
import { loopBtrfs, loopBtrfsMissing, type TinyFs } from './helpers/tiny-fs.ts';

const missing = loopBtrfsMissing();
const onBtrfs = when(missing === null, `a loop-mounted btrfs: ${missing}`);
const filesystems: TinyFs[] = [];
test.after.always('unmount the loop btrfs filesystems', () => {
  for (const f of filesystems.splice(0)) f.cleanup();
});

/** A driver on a fresh btrfs of its own (quota state differs between cases), cleaned up with the test. */
async function driverOnBtrfs(t: { teardown: (fn: () => unknown) => void }, options: string[] = [], under = 'root'): Promise<{ d: Driver; home: string; fsDir: string }> {
  const f = loopBtrfs(512);
  filesystems.push(f);
  const home = path.join(f.dir, under, 'btrfs');
  const d = await init(home, options);
  t.teardown(() => d.cleanup());
  return { d, home, fsDir: f.dir };
}

/** A native driver on a fresh btrfs and a naive one on the same home, both cleaned up with the test. */
async function nativeAndNaive(t: { teardown: (fn: () => unknown) => void }, under?: string): Promise<{ d: Driver; naive: Driver; home: string }> {
  const { d, home } = await driverOnBtrfs(t, [], under);
  const naive = await init(home, ['btrfs.native_changes=false']);
  t.teardown(() => naive.cleanup());
  return { d, naive, home };
}

const status = (d: Driver) => Object.fromEntries(d.status());

async function drain(r: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

test('btrfs: a home not on btrfs is refused with ErrPrerequisites (auto-selection skips it)', async (t) => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-btrfs-'));
  t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));
  t.not(fs.statfsSync(tmp).type, 0x9123683e, 'the temp dir itself is not on btrfs');
  const err = await t.throwsAsync(init(path.join(tmp, 'btrfs'), []));
  t.true(err instanceof NotSupportedError, String(err));
  t.is(err?.message, MSG_PREREQUISITES);
  t.false(fs.existsSync(path.join(tmp, 'btrfs')), 'nothing made');
});

test('btrfs: send stream parser refuses what is not a whole v1 stream', (t) => {
  const p = new SendStreamHints();
  t.throws(() => p.push(Buffer.from('not-a-stream\0\x01\0\0\0', 'latin1')), { instanceOf: SendStreamError, message: /no btrfs-stream magic/ });
  const header = Buffer.concat([Buffer.from('btrfs-stream\0', 'latin1'), Buffer.from([1, 0, 0, 0])]);
  // UNLINK with PATH "a/b", then END
  const tlv = Buffer.concat([Buffer.from([15, 0, 3, 0]), Buffer.from('a/b')]);
  const cmd = (n: number, body: Buffer) => {
    const h = Buffer.alloc(10);
    h.writeUInt32LE(body.length, 0);
    h.writeUInt16LE(n, 4);
    return Buffer.concat([h, body]);
  };
  const whole = Buffer.concat([header, cmd(11, tlv), cmd(21, Buffer.alloc(0))]);
  const ok = new SendStreamHints();
  for (let i = 0; i < whole.length; i += 3) ok.push(whole.subarray(i, i + 3)); // any chunking
  t.deepEqual([...ok.end().touched], ['/a/b']);
  const cut = new SendStreamHints();
  cut.push(whole.subarray(0, whole.length - 12));
  t.throws(() => cut.end(), { instanceOf: SendStreamError, message: /ends inside a command/ });
  const noEnd = new SendStreamHints();
  noEnd.push(Buffer.concat([header, cmd(11, tlv)]));
  t.throws(() => noEnd.end(), { message: /without an END command/ });
  t.throws(() => new SendStreamHints().push(Buffer.concat([header, cmd(99, Buffer.alloc(0))])), { message: /unknown command 99 at byte 17/ });
});

onBtrfs('btrfs: layout, status, bind mount of the home, remove destroys nested subvolumes first (moby TestBtrfsSubvolDelete)', async (t) => {
  const { d, home } = await driverOnBtrfs(t);
  t.true(fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${home} `), 'the home is bind-mounted onto itself');
  const s = status(d);
  t.is(s['Native Changes'], 'true (BTRFS_IOC_SEND against the direct parent)');
  t.is(s.Quotas, 'false');
  t.regex(s['Library Version'], /^kernel /);
  await d.create('base', null);
  const dir = await d.get('base');
  t.is(dir, path.join(home, 'subvolumes', 'base'));
  t.true(isSubvolume(dir));
  subvolCreate(dir, 'subvoltest1');
  fs.mkdirSync(path.join(dir, 'deep', 'er'), { recursive: true });
  subvolCreate(path.join(dir, 'deep', 'er'), 'subvoltest2');
  subvolCreate(path.join(dir, 'subvoltest1'), 'nested');
  t.deepEqual(childSubvolumes(dir).sort(), ['deep/er/subvoltest2', 'subvoltest1']);
  t.deepEqual(childSubvolumes(path.join(dir, 'subvoltest1')), ['nested']);
  await d.put('base');
  await d.remove('base');
  t.false(fs.existsSync(dir));
  t.false(d.exists('base'));
  await d.remove('base'); // unknown ids are no error
  t.deepEqual(d.layers?.(), []);
});

onBtrfs('btrfs: size on a read-write layer is a qgroup limit: writing past it fails with EDQUOT; btrfs.min_space and size refusals', async (t) => {
  const { d, home } = await driverOnBtrfs(t, ['btrfs.min_space=10M']);
  t.is(status(d).Quotas, 'true', 'btrfs.min_space enables qgroups at init, as moby');
  await d.create('base', null);
  await t.throwsAsync(d.create('ro', 'base', { storageOpt: { size: '20M' } }), { message: '--storage-opt size is only supported for ReadWrite Layers' });
  await t.throwsAsync(d.createReadWrite('small', 'base', { storageOpt: { size: '5M' } }), { message: 'btrfs: storage size cannot be less than 10.49MB' });
  await t.throwsAsync(d.createReadWrite('zero', 'base', { storageOpt: { size: '0' } }), { message: 'btrfs: invalid storage size: 0B' });
  await t.throwsAsync(d.createReadWrite('odd', 'base', { storageOpt: { foo: '1' } }), { message: 'unknown option foo' });
  t.deepEqual(d.layers?.().map((l) => l.id), ['base'], 'refused layers are not left behind');
  await d.createReadWrite('rw', 'base', { storageOpt: { size: '20M' } });
  t.is(fs.readFileSync(path.join(home, 'quotas', 'rw'), 'utf8'), String(20 * 2 ** 20));
  const root = await d.get('rw');
  const fd = fs.openSync(path.join(root, 'big'), 'w');
  let code: string | undefined;
  try {
    const mib = Buffer.alloc(1 << 20, 0x5a);
    for (let i = 0; i < 40 && code === undefined; i++) {
      try {
        fs.writeSync(fd, mib);
        fs.fsyncSync(fd);
      } catch (e) {
        const err = e as NodeJS.ErrnoException;
        code = err.errno === -os.constants.errno.EDQUOT ? 'EDQUOT' : err.code;
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  t.is(code, 'EDQUOT', 'a write past 20M fails with EDQUOT');
  t.true(fs.statSync(path.join(root, 'big')).size <= 20 * 2 ** 20);
  await d.put('rw');
  await d.remove('rw');
  t.false(fs.existsSync(path.join(home, 'quotas', 'rw')));
  t.false(d.exists('rw'));
});

onBtrfs('btrfs: init removes the send scratch dirs (and their read-only snapshots) of dead processes, not of live ones', async (t) => {
  const { d, home } = await driverOnBtrfs(t);
  await d.create('a', null);
  const dead = path.join(home, 'strata-send-999999999.1-abcdef');
  const live = path.join(home, `strata-send-${selfTag()}-ghijkl`);
  for (const dir of [dead, live]) {
    fs.mkdirSync(dir);
    subvolSnapshot(await d.get('a'), dir, 'parent', { readOnly: true });
    t.true(subvolInfo(path.join(dir, 'parent')).readOnly);
  }
  const again = await init(home, [], { mode: 'manage' });
  t.teardown(() => again.cleanup());
  t.false(fs.existsSync(dead), 'a dead holder\'s scratch dir and its read-only snapshot are gone');
  t.true(isSubvolume(path.join(live, 'parent')), 'a live holder\'s is kept');
  subvolDestroy(live, 'parent');
  fs.rmdirSync(live);
});

onBtrfs('btrfs: read-only open reads layers and writes nothing', async (t) => {
  const { d, home } = await driverOnBtrfs(t);
  await d.create('a', null);
  fs.writeFileSync(path.join(await d.get('a'), 'f'), 'x');
  await d.create('b', 'a');
  // this home's mounts only: other tests mount and unmount their own meanwhile
  const mountsAtHome = () => mountsUnder(home).map((m) => `${m.id} ${m.mountPoint}`);
  const mounts = mountsAtHome();
  const ro = await init(home, [], { mode: 'read-only' });
  t.deepEqual(await ro.changes('b', 'a'), [], 'the naive walk (no read-only snapshots made)');
  t.deepEqual(mountsAtHome(), mounts, 'nothing mounted (no bind mount of the home)');
  t.deepEqual(fs.readdirSync(home), ['subvolumes'], 'no scratch dir');
  t.is(fs.readFileSync(path.join(await ro.get('a'), 'f'), 'utf8'), 'x');
  await t.throwsAsync(ro.create('b', 'a'), { message: /is open read-only: create b refused/ });
  t.deepEqual((await ro.changes('a', null)).map((c) => c.path), ['/f']);
});

/** changes, diff and diffSize of `id` against `parent` from the native driver equal the naive driver's. */
async function sameAsNaive(t: { deepEqual: (a: unknown, b: unknown, m?: string) => void; is: (a: unknown, b: unknown, m?: string) => void }, d: Driver, naive: Driver, id: string, parent: string, what: string): Promise<void> {
  const expected = changesDirs(await naive.get(id), await naive.get(parent));
  t.deepEqual(await d.changes(id, parent), expected, `${what}: changes`);
  t.deepEqual(await naive.changes(id, parent), expected, `${what}: the naive driver's changes`);
  t.is(await d.diffSize(id, parent), await naive.diffSize(id, parent), `${what}: diffSize`);
  t.deepEqual(await drain(d.diff(id, parent)), await drain(naive.diff(id, parent)), `${what}: diff tar bytes`);
}

const SEEDS = [1, 2, 3, 4, 5, 6, 7, 8];

onBtrfs(`btrfs: native changes equal the naive walk on seeded random stacks (seeds ${SEEDS.join(', ')}), hardlinked changes included, with no fallback`, async (t) => {
  const { d, naive } = await nativeAndNaive(t);
  let compared = 0;
  let linked = 0;
  for (const seed of SEEDS) {
    const rng = new Rng(seed);
    let parent: string | null = null;
    const layers = 3 + rng.int(2);
    for (let k = 0; k < layers; k++) {
      const id = `s${seed}-${k}`;
      await d.create(id, parent);
      const ops = applyRandomOps(rng, rawPath(await d.get(id)), k === 0 ? 30 : 5 + rng.int(26));
      if (parent !== null) {
        await sameAsNaive(t, d, naive, id, parent, `seed ${seed} layer ${k} (${ops.length} ops)`);
        compared++;
        if (ops.some((o) => o.startsWith('hardlink'))) linked++;
      }
      parent = id;
    }
  }
  t.false('Native Changes (last fallback)' in status(d), status(d)['Native Changes (last fallback)']);
  t.log(`${compared} comparisons, all native; ${linked} with hardlink ops`);
  t.true(linked > 0, 'the stacks exercise hardlinks');
});

onBtrfs('btrfs: native changes fall back, with the reason in status(), for a grandparent and for nested subvolumes', async (t) => {
  const { d, naive, home } = await nativeAndNaive(t);
  await d.create('a', null);
  const a = await d.get('a');
  fs.mkdirSync(path.join(a, 'etc'));
  fs.writeFileSync(path.join(a, 'etc', 'hosts'), 'one');
  await d.create('b', 'a');
  fs.writeFileSync(path.join(await d.get('b'), 'etc', 'hosts'), 'two!');
  await d.create('c', 'b');
  fs.rmSync(path.join(await d.get('c'), 'etc', 'hosts'));
  await sameAsNaive(t, d, naive, 'c', 'b', 'direct parent');
  t.false('Native Changes (last fallback)' in status(d), 'no fallback against the direct parent');
  await sameAsNaive(t, d, naive, 'c', 'a', 'grandparent');
  t.is(status(d)['Native Changes (last fallback)'], 'c against a: a is not the direct parent of c (not the subvolume it is a snapshot of)');
  subvolCreate(await d.get('c'), 'inner');
  await sameAsNaive(t, d, naive, 'c', 'b', 'nested subvolume');
  t.is(status(d)['Native Changes (last fallback)'], 'c against b: c holds nested subvolumes (inner), which a snapshot leaves out');
  t.deepEqual(fs.readdirSync(home).sort(), ['subvolumes'], 'no send scratch dir left in the home');
});

onBtrfs('btrfs: native changes find every link of a changed inode whose stream path is an orphan name (a swap of two directories)', async (t) => {
  const { d, naive } = await nativeAndNaive(t);
  await d.create('p', null);
  const p = await d.get('p');
  // inode order a < f < b < c: send handles f while b, its first link's dir, still has an orphan name
  fs.mkdirSync(path.join(p, 'a'));
  fs.writeFileSync(path.join(p, 'f'), 'x');
  fs.mkdirSync(path.join(p, 'b'));
  fs.renameSync(path.join(p, 'f'), path.join(p, 'b', 'f'));
  fs.mkdirSync(path.join(p, 'c'));
  fs.linkSync(path.join(p, 'b', 'f'), path.join(p, 'c', 'g'));
  await d.create('c', 'p');
  const c = await d.get('c');
  fs.renameSync(path.join(c, 'a'), path.join(c, 'tmp'));
  fs.renameSync(path.join(c, 'b'), path.join(c, 'a'));
  fs.renameSync(path.join(c, 'tmp'), path.join(c, 'b'));
  fs.chmodSync(path.join(c, 'a', 'f'), 0o600);
  await sameAsNaive(t, d, naive, 'c', 'p', 'swapped dirs, chmod of a linked file');
  t.true((await d.changes('c', 'p')).some((ch) => ch.path === '/c/g'), 'the other link is a Modify');
  t.false('Native Changes (last fallback)' in status(d), status(d)['Native Changes (last fallback)']);
});

onBtrfs('btrfs: native changes find every link of a changed inode in a home whose path is not ASCII', async (t) => {
  const { d, naive } = await nativeAndNaive(t, 'hôme');
  await d.create('p', null);
  const p = await d.get('p');
  fs.mkdirSync(path.join(p, 'd'));
  fs.mkdirSync(path.join(p, 'e'));
  fs.writeFileSync(path.join(p, 'd', 'f'), 'x');
  fs.linkSync(path.join(p, 'd', 'f'), path.join(p, 'e', 'g'));
  await d.create('c', 'p');
  fs.chmodSync(path.join(await d.get('c'), 'd', 'f'), 0o600);
  await sameAsNaive(t, d, naive, 'c', 'p', 'chmod of a linked file');
  t.deepEqual((await d.changes('c', 'p')).map((ch) => ch.path), ['/d', '/d/f', '/e', '/e/g']);
  t.false('Native Changes (last fallback)' in status(d), status(d)['Native Changes (last fallback)']);
});

onBtrfs('btrfs: remove of a symlink or a plain directory where a subvolume should be: the entry goes, what a symlink names is left alone', async (t) => {
  const { d, home } = await driverOnBtrfs(t);
  await d.create('a', null);
  const a = await d.get('a');
  subvolCreate(a, 'inner');
  const subvolumes = path.join(home, 'subvolumes');
  fs.symlinkSync(a, path.join(subvolumes, 'link'));
  await d.remove('link');
  t.false(fs.existsSync(path.join(subvolumes, 'link')), 'the symlink is removed');
  t.true(isSubvolume(path.join(a, 'inner')), 'the nested subvolume of the layer it names is not destroyed');
  const plain = path.join(subvolumes, 'plain');
  fs.mkdirSync(path.join(plain, 'd'), { recursive: true });
  fs.writeFileSync(path.join(plain, 'd', 'f'), 'x');
  subvolCreate(plain, 'nested');
  fs.writeFileSync(path.join(plain, 'nested', 'g'), 'y');
  t.true(d.exists('plain'));
  await d.remove('plain');
  t.false(fs.existsSync(plain), 'a plain directory (and a subvolume in it) is removed');
  t.deepEqual(d.layers?.().map((l) => l.id), ['a']);
  t.true(isSubvolume(path.join(a, 'inner')));
});

onBtrfs('btrfs: a quotas file that is not a decimal size is ignored by get, as moby (strconv.ParseUint)', async (t) => {
  const { d, home } = await driverOnBtrfs(t);
  await d.create('a', null);
  fs.mkdirSync(path.join(home, 'quotas'));
  for (const garbage of ['1e3', '0x1000', '4096\n', ' 4096', '-1', 'garbage', '']) {
    fs.writeFileSync(path.join(home, 'quotas', 'a'), garbage);
    const root = await d.get('a');
    t.is(status(d).Quotas, 'false', `${JSON.stringify(garbage)}: no qgroup limit set (qgroups stay off)`);
    fs.writeFileSync(path.join(root, 'f'), Buffer.alloc(1 << 20));
    fs.rmSync(path.join(root, 'f'));
  }
});

const RENAME_SEEDS = Array.from({ length: 8 }, (_, i) => 101 + i);

onBtrfs(`btrfs: native changes equal the naive walk on seeded random stacks with renames, swaps, links and a wide, deep base (seeds ${RENAME_SEEDS[0]}-${RENAME_SEEDS.at(-1)})`, async (t) => {
  const { d, naive } = await nativeAndNaive(t);
  let compared = 0;
  for (const seed of RENAME_SEEDS) {
    const rng = new Rng(seed);
    let parent: string | null = null;
    for (let k = 0; k < 4; k++) {
      const id = `r${seed}-${k}`;
      await d.create(id, parent);
      const root = rawPath(await d.get(id));
      if (k === 0) {
        // a base of several b-tree leaves (send skips the shared ones) and a deep chain
        for (let i = 0; i < 120; i++) {
          fs.mkdirSync(fsPathOf(`${root}/w${i % 6}/v${i % 5}`), { recursive: true });
          fs.writeFileSync(fsPathOf(`${root}/w${i % 6}/v${i % 5}/f${i}`), String(i));
        }
        fs.mkdirSync(fsPathOf(`${root}${'/deep'.repeat(40)}`), { recursive: true });
      }
      const log: string[] = [];
      for (let r = 0; r < 3; r++) {
        log.push(...applyRandomOps(rng, root, k === 0 ? 10 : 3));
        log.push(...applyRandomRenames(rng, root, k === 0 ? 2 : 4));
      }
      if (parent !== null) {
        await sameAsNaive(t, d, naive, id, parent, `seed ${seed} layer ${k}: ${log.join('; ')}`);
        compared++;
      }
      parent = id;
    }
  }
  t.false('Native Changes (last fallback)' in status(d), status(d)['Native Changes (last fallback)']);
  t.log(`${compared} comparisons, all native`);
});

onBtrfs('btrfs: init leaves a symlink or a file named like a dead holder\'s send scratch dir alone (never follows it to destroy subvolumes)', async (t) => {
  const { d, home } = await driverOnBtrfs(t);
  await d.create('a', null);
  await d.create('b', 'a');
  fs.symlinkSync(path.join(home, 'subvolumes'), path.join(home, 'strata-send-999999999.1-abcdef'));
  fs.writeFileSync(path.join(home, 'strata-send-999999999.1-ghijkl'), 'not a dir');
  const again = await init(home, [], { mode: 'manage' });
  t.teardown(() => again.cleanup());
  t.deepEqual(again.layers?.().map((l) => l.id), ['a', 'b'], 'the layers the symlink names are not destroyed');
  t.true(isSubvolume(path.join(home, 'subvolumes', 'a')));
});
