// archive/copy-tree.ts: a copy on btrfs shares its extents with the source
// (the FICLONE reflink happened); on tmpfs and ext4 the data is copied; the
// metadata comes along either way.
import { execFileSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { copyTree } from '../archive/copy-tree.ts';
import { loopMount } from '../sys/loop.ts';
import * as sys from '../sys/syscalls.ts';
import { hasTool, when } from './helpers/require.ts';
import { tinyExt4, tinyFsMissing } from './helpers/tiny-fs.ts';

/** Does filefrag report every extent of `file` as shared (FIEMAP_EXTENT_SHARED)? */
function allExtentsShared(file: string): boolean {
  const out = execFileSync('filefrag', ['-v', file], { encoding: 'utf8' });
  const extents = out.split('\n').filter((l) => /^\s*\d+:/.test(l));
  return extents.length > 0 && extents.every((l) => l.includes('shared'));
}

/** A source tree in `base`: a 1 MiB file with an xattr, odd mode, owner and ns mtime, and a hardlink of it. */
function makeSource(base: string): { src: string; data: Buffer } {
  const src = path.join(base, 'src');
  fs.mkdirSync(path.join(src, 'd'), { recursive: true });
  const data = crypto.randomBytes(1 << 20);
  const f = path.join(src, 'd/file');
  fs.writeFileSync(f, data);
  fs.linkSync(f, path.join(src, 'link'));
  fs.chownSync(f, 1234, 5678);
  fs.chmodSync(f, 0o4751);
  sys.lsetxattr(f, 'user.k', Buffer.from('v'));
  sys.lutimensNs(f, 1_600_000_000_123_456_789n, 1_600_000_000_000_000_001n);
  execFileSync('sync', ['-f', f]); // extents are allocated only once written back
  return { src, data };
}

function checkCopy(t: import('ava').ExecutionContext, src: string, dst: string, data: Buffer): void {
  const f = path.join(dst, 'd/file');
  t.deepEqual(fs.readFileSync(f), data);
  const st = fs.lstatSync(f, { bigint: true });
  t.is(Number(st.mode) & 0o7777, 0o4751);
  t.is(Number(st.uid), 1234);
  t.is(Number(st.gid), 5678);
  t.is(st.mtimeNs, 1_600_000_000_123_456_789n);
  t.deepEqual(sys.lgetxattr(f, 'user.k'), Buffer.from('v'));
  t.is(fs.statSync(path.join(dst, 'link')).ino, Number(st.ino), 'the hardlink stays one inode in the copy');
  t.not(Number(st.ino), fs.statSync(path.join(src, 'd/file')).ino, 'and a new one, not the source’s');
}

const btrfsMissing = tinyFsMissing() ?? (hasTool('mkfs.btrfs') && hasTool('filefrag') ? null : 'mkfs.btrfs (btrfs-progs) and filefrag (e2fsprogs)');

when(btrfsMissing === null, btrfsMissing ?? '', { serial: true })('on btrfs the copy is a reflink: its extents are shared with the source', (t) => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-copytree-btrfs-'));
  const img = path.join(tmp, 'btrfs.img');
  const mnt = path.join(tmp, 'mnt');
  fs.mkdirSync(mnt);
  fs.writeFileSync(img, '');
  fs.truncateSync(img, 256 << 20);
  execFileSync('mkfs.btrfs', ['-q', '-f', img], { stdio: 'pipe' });
  const loop = loopMount(img, mnt, { type: 'btrfs' });
  t.teardown(() => {
    try {
      loop.unmount();
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
  const { src, data } = makeSource(mnt);
  t.false(allExtentsShared(path.join(src, 'd/file')), 'nothing shared before the copy');
  const dst = path.join(mnt, 'dst');
  fs.mkdirSync(dst);
  copyTree(src, dst);
  execFileSync('sync', ['-f', dst]);
  t.true(allExtentsShared(path.join(dst, 'd/file')), execFileSync('filefrag', ['-v', path.join(dst, 'd/file')], { encoding: 'utf8' }));
  checkCopy(t, src, dst, data);
});

for (const [name, missing, make] of [
  ['tmpfs', process.getuid?.() === 0 ? null : 'root (chown)', () => {
    const dir = fs.mkdtempSync(path.join('/dev/shm', 'strata-copytree-'));
    return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
  }],
  ['ext4', tinyFsMissing(), () => tinyExt4(16)],
] as const) {
  when(missing === null, missing ?? '', { serial: true })(`on ${name} (no reflink) the data is copied, metadata and hardlinks kept`, (t) => {
    const fsys = make();
    t.teardown(() => fsys.cleanup());
    const { src, data } = makeSource(fsys.dir);
    const dst = path.join(fsys.dir, 'dst');
    fs.mkdirSync(dst);
    copyTree(src, dst);
    checkCopy(t, src, dst, data);
    if (name === 'ext4') t.false(allExtentsShared(path.join(dst, 'd/file')), 'ext4 cannot share extents');
  });
}
