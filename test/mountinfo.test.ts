// sys/mountinfo.ts: the one parser of /proc/self/mountinfo, on a fixed text
// and on real mounts whose names the kernel has to escape.
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isMountPoint, mountAt, mountFor, mountsUnder, parseMountinfo, readMountinfo, unescapeMountinfo } from '../sys/mountinfo.ts';
import * as sys from '../sys/syscalls.ts';
import { asRoot } from './helpers/require.ts';
import { tempDir } from './helpers/tar.ts';

test('every field of a line, optional fields and escapes included', (t) => {
  const [m] = parseMountinfo('36 35 98:0 /mnt\\0401 /mnt/a\\040b\\011c\\012d\\134e rw,noatime master:1 shared:7 - ext3 /dev/ro\\040ot rw,errors=continue\n');
  t.like(m, {
    id: 36, parent: 35, dev: '98:0', root: '/mnt 1', mountPoint: '/mnt/a b\tc\nd\\e',
    options: ['rw', 'noatime'], optional: ['master:1', 'shared:7'], fstype: 'ext3', source: '/dev/ro ot',
    superOptions: ['rw', 'errors=continue'],
  });
  t.deepEqual(m.mountPointBytes, Buffer.from('/mnt/a b\tc\nd\\e'));
});

test('no optional fields; a malformed line is skipped', (t) => {
  const ms = parseMountinfo('garbage\n25 1 0:22 / /sys rw - sysfs sysfs rw\n\n');
  t.is(ms.length, 1);
  t.like(ms[0], { mountPoint: '/sys', optional: [], fstype: 'sysfs', source: 'sysfs', superOptions: ['rw'] });
});

test('non-ASCII bytes decode as UTF-8 (as node:fs names paths) and stay raw in mountPointBytes', (t) => {
  const name = Buffer.from('/m/é', 'utf8').toString('latin1');
  const [m] = parseMountinfo(Buffer.from(`1 0 0:1 / ${name} rw - tmpfs tmpfs rw\n`, 'latin1'));
  t.is(m.mountPoint, '/m/é');
  t.deepEqual(m.mountPointBytes, Buffer.from('/m/é'));
  t.is(unescapeMountinfo('/a\\303\\251'), '/aé');
});

asRoot({ serial: true })('real mounts at hostile names (space, tab, newline, backslash, UTF-8) are found by every lookup', (t) => {
  const { dir, cleanup } = tempDir('strata-mountinfo-');
  const names = ['with space', 'with\ttab', 'with\nnewline', 'back\\slash', 'ü ñ'];
  const points = names.map((n) => path.join(dir, n));
  t.teardown(() => {
    for (const p of points) if (isMountPoint(p)) sys.umount2(p, sys.MNT_DETACH);
    cleanup();
  });
  for (const p of points) {
    fs.mkdirSync(p);
    sys.mount('tmpfs', p, 'tmpfs', 0, 'size=1m,mode=0755');
  }
  const raw = fs.readFileSync('/proc/self/mountinfo', 'latin1');
  t.true(raw.includes('with\\040space') && raw.includes('with\\011tab') && raw.includes('with\\012newline') && raw.includes('back\\134slash'),
    'the kernel escaped the names');
  const mounts = readMountinfo();
  t.deepEqual(mountsUnder(dir, mounts).map((m) => m.mountPoint).sort(), [...points].sort());
  for (const p of points) {
    t.true(isMountPoint(p, mounts), p);
    t.is(mountAt(p, mounts)?.fstype, 'tmpfs');
    fs.writeFileSync(path.join(p, 'f'), 'x');
    t.is(mountFor(path.join(p, 'f'), mounts)?.mountPoint, p);
    t.is(mountFor(p)?.fstype, 'tmpfs');
  }
  t.false(isMountPoint(dir, mounts));
  t.is(mountAt(dir, mounts), undefined);
});
