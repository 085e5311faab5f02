// drivers/aufs/mount-plan.ts: the kernel aufs option strings exactly as
// moby's aufsMount builds them (one page, then remount-append runs), the
// dirperm1 probe's options, the /proc/filesystems test and the FUSE union's
// options. Pure: no module, no root needed.
import test from 'ava';
import { PAGE_SIZE, XINO, aufsInFilesystems, dirperm1ProbeData, fuseUnionOptions, fuseWorkDir, planAufsMount } from '../drivers/aufs/mount-plan.ts';

const ro = (n: number, len = 0) => Array.from({ length: n }, (_, i) => `/var/lib/docker/aufs/diff/${String(i).padStart(len, '0')}`);

test('aufs plan: a few branches go in one mount, rw first, each parent ro+wh, then dio and xino', (t) => {
  const p = planAufsMount('/h/diff/c', ['/h/diff/p', '/h/diff/g'], { dirperm1: false });
  t.is(p.data, `br:/h/diff/c=rw:/h/diff/p=ro+wh:/h/diff/g=ro+wh,dio,xino=${XINO}`);
  t.deepEqual(p.appends, []);
  t.is(planAufsMount('/h/diff/c', [], { dirperm1: true }).data, `br:/h/diff/c=rw,dio,xino=${XINO},dirperm1`);
  t.is(planAufsMount('/h/diff/c', ['/h/diff/p'], { dirperm1: false, mountLabel: 'system_u:object_r:svirt_sandbox_file_t:s0' }).data,
    `br:/h/diff/c=rw:/h/diff/p=ro+wh,dio,xino=${XINO},context="system_u:object_r:svirt_sandbox_file_t:s0"`);
});

test('aufs plan: past a page the branches that do not fit are appended by remounts, each run inside the same limit', (t) => {
  const branches = ro(126, 64); // moby TestMountMoreThan42Layers: 126 layers of 64-hex ids
  for (const dirperm1 of [false, true]) {
    const p = planAufsMount('/var/lib/docker/aufs/diff/top', branches, { dirperm1 });
    const room = PAGE_SIZE - 54 - (dirperm1 ? 9 : 0);
    t.true(p.data.length - `,dio,xino=${XINO}${dirperm1 ? ',dirperm1' : ''}`.length <= room);
    t.true(p.appends.length >= 1);
    for (const a of p.appends) {
      t.true(a.length <= room, `${a.length} > ${room}`);
      t.regex(a, /^(append:[^,]+=ro\+wh,)+$/);
    }
    // every branch exactly once, in order: the first mount's, then the appended ones
    const inFirst = p.data.slice(p.data.indexOf(':') + 1).split(',')[0].split(':').slice(1).map((b) => b.replace(/=ro\+wh$/, ''));
    const appended = p.appends.flatMap((a) => a.split(',').filter(Boolean).map((b) => b.slice('append:'.length).replace(/=ro\+wh$/, '')));
    t.deepEqual([...inFirst, ...appended], branches);
    // the first mount is as full as moby makes it: the next branch would not have fitted
    const brLen = p.data.length - `,dio,xino=${XINO}${dirperm1 ? ',dirperm1' : ''}`.length;
    t.true(brLen + `:${branches[inFirst.length]}=ro+wh`.length > room);
  }
});

test('aufs plan: the dirperm1 probe, /proc/filesystems, the FUSE union options and workdir', (t) => {
  t.is(dirperm1ProbeData('/tmp/b'), `br:/tmp/b,dirperm1,xino=${XINO}`);
  t.true(aufsInFilesystems('nodev\tsysfs\nnodev\taufs\n\text4\n'));
  t.false(aufsInFilesystems('nodev\tsysfs\nnodev\toverlay\n\text4\nnodev\tfuse\n'));
  t.is(fuseUnionOptions('/h/diff/c', ['/h/diff/p', '/h/diff/g'], '/h/.strata-fuse-work/c'),
    'lowerdir=/h/diff/p:/h/diff/g,upperdir=/h/diff/c,workdir=/h/.strata-fuse-work/c,writeback=0');
  t.throws(() => fuseUnionOptions('/h/diff/a:b', ['/h/diff/p'], '/w'), { message: /':' or ','/ });
  t.throws(() => fuseUnionOptions('/h/diff/c', ['/h/diff/p,q'], '/w'), { message: /\/h\/diff\/p,q/ });
  t.is(fuseWorkDir('/h', 'c'), '/h/.strata-fuse-work/c');
});
