// vfs through the conformance suite, plus its own option and id rules.
// Layers are full copies, so every depth works (DeepLayerRead 128, like
// overlay2's); quotas need a home with project quotas, which the suite makes
// on a loop-mounted xfs where the kernel allows.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidParameterError, QuotaNotSupportedError, type Driver } from '../../drivers/driver.ts';
import { copyTree } from '../../archive/copy-tree.ts';
import { init } from '../../drivers/vfs/vfs.ts';
import { asRoot, hasTool } from '../helpers/require.ts';
import { runConformance, xfsProjectQuotaHome } from './suite.ts';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

const xfs = xfsProjectQuotaHome();

runConformance('vfs', (home) => init(home, []), {
  deepLayers: 128,
  diffApplyFiles: [10, 100],
  quota: { kind: 'filesystem', ...xfs },
});

async function scratch(t: { teardown: (fn: () => void) => void }): Promise<{ home: string; d: Driver }> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-vfs-'));
  t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const home = path.join(tmp, 'vfs');
  return { home, d: await init(home, []) };
}

test('vfs: options are moby\'s: unknown option, size without quota, bad size', async (t) => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-vfs-'));
  t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const home = path.join(tmp, 'vfs');
  await t.throwsAsync(init(home, ['foo=bar']), { instanceOf: InvalidParameterError, message: 'unknown option foo for vfs' });
  await t.throwsAsync(init(home, ['size']), { message: 'unable to parse storage-opt: size' });
  await t.throwsAsync(init(home, ['size=12Q']), { message: "invalid suffix: 'q'" });
  // tmpdir has no project quotas enforced here, so a default size cannot be honoured
  const quota = await t.throwsAsync(init(home, ['size=10M']));
  t.true(quota instanceof QuotaNotSupportedError, String(quota));
  t.is(quota?.message, 'Filesystem does not support, or has not enabled quotas');
});

test('vfs: storage opts on create and createReadWrite', async (t) => {
  const { d } = await scratch(t);
  await t.throwsAsync(d.create('ro', null, { storageOpt: { size: '1G' } }), { message: '--storage-opt is not supported for vfs on read-only layers' });
  await t.throwsAsync(d.createReadWrite('rw', null, { storageOpt: { foo: '1' } }), { message: 'Storage opt foo not supported' });
  await t.throwsAsync(d.createReadWrite('rw', null, { storageOpt: { size: '1G' } }), { instanceOf: QuotaNotSupportedError });
  t.false(d.exists('ro'));
  t.false(d.exists('rw'));
});

test('vfs: layout, metadata, status, ids, listing', async (t) => {
  const { home, d } = await scratch(t);
  await d.create('a', null);
  await d.create('b', 'a');
  t.is(await d.get('b'), path.join(home, 'dir', 'b'));
  await d.put('b');
  t.deepEqual(d.metadata('a'), { SourceDir: path.join(home, 'dir', 'a') });
  t.deepEqual(d.status(), []);
  t.deepEqual(d.layers?.(), [{ id: 'a' }, { id: 'b' }]);
  for (const bad of ['', '.', '..', 'a/b', '../x']) {
    await t.throwsAsync(d.create(bad, null), { instanceOf: InvalidParameterError }, JSON.stringify(bad));
  }
  await t.throwsAsync(d.create('a', null), { code: 'EEXIST' });
  await t.throwsAsync(d.create('c', 'missing'), { message: /layer missing does not exist/ });
  t.false(d.exists('c'));
  await t.throwsAsync(d.get('missing'), { message: /layer missing does not exist/ });
  await d.remove('a');
  await d.remove('a');
  t.false(d.exists('a'));
  t.true(d.exists('b'));
});

asRoot()('vfs: copyTree keeps a hardlink set shared inside the copy and separate from the source', async (t) => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-vfs-copy-'));
  t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const src = path.join(tmp, 'src');
  const dst = path.join(tmp, 'dst');
  fs.mkdirSync(path.join(src, 'd'), { recursive: true });
  fs.mkdirSync(dst);
  fs.writeFileSync(path.join(src, 'x'), 'one');
  fs.linkSync(path.join(src, 'x'), path.join(src, 'd', 'y'));
  copyTree(src, dst);
  const a = fs.statSync(path.join(dst, 'x'));
  const b = fs.statSync(path.join(dst, 'd', 'y'));
  t.is(a.ino, b.ino);
  t.is(a.nlink, 2);
  t.not(a.ino, fs.statSync(path.join(src, 'x')).ino);
  fs.writeFileSync(path.join(dst, 'd', 'y'), 'two');
  t.is(fs.readFileSync(path.join(src, 'x'), 'utf8'), 'one');
});

/** Run the CLI; returns exit code, stdout, stderr. */
function strata(args: string[], input?: Buffer): { code: number; out: Buffer; err: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(repo, 'cli/main.ts'), ...args], { input: input ?? Buffer.alloc(0) });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr.toString() };
}

asRoot()('vfs through `strata layer`: create, apply, mount, changes, size, diff, ls, rm; usage errors exit 2', async (t) => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-vfs-cli-'));
  t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const home = path.join(tmp, 'vfs');
  const on = ['--driver', 'vfs', '--home', home];
  // a layer tar made by the driver itself from a scratch layer
  const src = await init(path.join(tmp, 'src', 'vfs'), []);
  await src.create('s', null);
  const sroot = await src.get('s');
  fs.mkdirSync(path.join(sroot, 'etc'));
  fs.writeFileSync(path.join(sroot, 'etc', 'x'), 'hello');
  const chunks: Buffer[] = [];
  for await (const c of src.diff('s', null)) chunks.push(c as Buffer);
  const tar = Buffer.concat(chunks);

  t.is(strata(['layer', 'create', 'base', ...on]).code, 0);
  const applied = strata(['layer', 'apply', 'base', ...on], tar);
  t.is(applied.code, 0, applied.err);
  t.is(applied.out.toString(), '5\n', 'apply prints the size (Σ tar header sizes)');
  t.is(strata(['layer', 'create', 'top', '--parent', 'base', ...on]).code, 0);
  const mounted = strata(['layer', 'mount', 'top', ...on]);
  const top = mounted.out.toString().trim().split('\n').pop()!;
  t.is(top, path.join(home, 'dir', 'top'));
  fs.rmSync(path.join(top, 'etc', 'x'));
  fs.writeFileSync(path.join(top, 'new'), 'new!');
  t.is(strata(['layer', 'umount', 'top', ...on]).code, 0);
  t.is(strata(['layer', 'changes', 'top', '--parent', 'base', ...on]).out.toString(), 'C /etc\nD /etc/x\nA /new\n');
  t.deepEqual(JSON.parse(strata(['layer', 'changes', 'top', '--parent', 'base', '--json', ...on]).out.toString()),
    [{ path: '/etc', kind: 'C' }, { path: '/etc/x', kind: 'D' }, { path: '/new', kind: 'A' }]);
  t.is(strata(['layer', 'size', 'top', '--parent', 'base', ...on]).out.toString(), '4\n');
  const diff = strata(['layer', 'diff', 'top', '--parent', 'base', ...on]);
  t.is(diff.code, 0, diff.err);
  const names = spawnSync('tar', ['-tf', '-'], { input: diff.out }).stdout.toString().split('\n').filter(Boolean);
  t.deepEqual(names, ['etc/', 'etc/.wh.x', 'new']);
  t.is(strata(['layer', 'ls', ...on]).out.toString(), 'ID     PARENT\nbase   ?\ntop    ?\n');
  t.is(strata(['layer', 'rm', 'top', ...on]).code, 0);
  t.false(fs.existsSync(top));

  const missingId = strata(['layer', 'mount', ...on]);
  t.is(missingId.code, 2);
  t.regex(missingId.err, /needs a layer ID/);
  t.is(strata(['layer', 'mount', 'x', '--driver', 'nope', '--home', path.join(tmp, 'nope')]).code, 2);
  t.is(strata(['layer', 'mount', 'x', '--home', home]).code, 2);
  t.is(strata(['layer', 'mount', 'x', '--driver', 'vfs', '--home', path.join(tmp, 'elsewhere')]).code, 2);
  const missingLayer = strata(['layer', 'mount', 'missing', ...on]);
  t.is(missingLayer.code, 1);
  t.regex(missingLayer.err, /layer missing does not exist/);
});

test('`strata drivers --json` lists the six drivers with reasons', (t) => {
  const r = strata(['drivers', '--json', '--root', os.tmpdir()]);
  t.is(r.code, 0, r.err);
  const rows = JSON.parse(r.out.toString()) as { name: string; usable: boolean; reason: string }[];
  t.deepEqual(rows.map((x) => x.name), ['aufs', 'overlay', 'overlay2', 'btrfs', 'devicemapper', 'vfs']);
  t.true(rows.find((x) => x.name === 'vfs')!.usable);
  // aufs runs where the kernel has it or through its FUSE union (/dev/fuse, fuse-overlayfs, fusermount3)
  const aufs = rows.find((x) => x.name === 'aufs')!;
  const union = fs.readFileSync('/proc/filesystems', 'utf8').includes('aufs') ||
    (fs.existsSync('/dev/fuse') && hasTool('fuse-overlayfs') && hasTool('fusermount3'));
  if (union) t.deepEqual([aufs.usable, aufs.reason], [true, '']);
  else t.regex(aufs.reason, /^driver not supported \(AUFS was not found in \/proc\/filesystems, and its FUSE union needs /);
});
