// `strata compare --sample`: the CLI runs and its checks pass; and the checks can fail —
// a tree changed behind the library's back (the `tamper` hook) must be caught.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { chmodSync, lstatSync, lutimesSync, writeFileSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compareSample, type CompareReport, type Stage } from '../bench/compare.ts';
import { chainIds } from '../layerstore/digests.ts';
import { createHash } from 'node:crypto';
import { lremovexattr } from '../sys/syscalls.ts';
import { asRoot } from './helpers/require.ts';

const repo = fileURLToPath(new URL('..', import.meta.url));

function failed(r: CompareReport): string[] {
  return r.checks.filter((c) => !c.ok).map((c) => c.name);
}

const at = (want: Partial<Stage>, fn: (dir: string) => void) => (stage: Stage, dir: string) => {
  if (Object.entries(want).every(([k, v]) => stage[k as keyof Stage] === v)) fn(dir);
};

asRoot({ serial: true })('strata compare --sample --json runs and every check passes', (t) => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'cli/main.ts', 'compare', '--sample', '--json'], {
    cwd: repo, encoding: 'utf8', timeout: 240_000,
  });
  t.is(r.status, 0, r.stderr + r.stdout.slice(-4000));
  const report = JSON.parse(r.stdout) as CompareReport;
  t.true(report.ok);
  t.deepEqual(failed(report), []);
  t.is(report.workDir, null, 'work dir removed');
  t.deepEqual(report.image.map((l) => l.name), ['base', 'edit', 'replace']);
  for (const format of ['aufs', 'overlay']) {
    for (const layer of ['base', 'edit', 'replace']) {
      const run = report.runs.find((x) => x.format === format && x.layer === layer);
      t.truthy(run, `${format} ${layer} ran`);
      t.true((run?.applyMs ?? -1) >= 0 && (run?.exportMs ?? -1) >= 0);
      t.truthy(report.checks.find((c) => c.name === `${format} ${layer}: re-applied export = first apply` && c.ok));
    }
  }
  t.truthy(report.checks.find((c) => c.name === 'none flat: re-applied export = flattened tree' && c.ok));
  t.truthy(report.checks.find((c) => c.name === 'base: applyLayer = GNU tar -x (same tar)' && c.ok), 'GNU tar cross-check ran');
  // the storage drivers: every known one is listed; vfs always runs; all usable ones agree
  t.deepEqual(report.drivers.map((d) => d.driver).sort(), ['aufs', 'btrfs', 'devicemapper', 'overlay', 'overlay2', 'vfs']);
  const ran = report.drivers.filter((d) => d.topDigest !== undefined);
  t.true(ran.some((d) => d.driver === 'vfs'), 'vfs ran');
  for (const d of ran) {
    t.deepEqual(d.layers.map((l) => l.layer), ['base', 'edit', 'replace'], d.driver);
    t.true(d.layers.every((l) => l.diffBytes > 0 && l.diffBytes % 512 === 0), `${d.driver}: diff tars`);
    t.is(d.topDigest, ran[0].topDigest, d.driver);
  }
  for (const d of report.drivers.filter((x) => !x.usable)) t.truthy(d.reason, `${d.driver} says why it is not usable`);
  t.truthy(report.checks.find((c) => c.name.startsWith("drivers: every driver's top layer has the same digest") && c.ok));
});

test('chainIds follow Docker: the first is the DiffID, then sha256 of "<parent chain> <diffid>"', (t) => {
  const a = 'sha256:' + 'a'.repeat(64);
  const b = 'sha256:' + 'b'.repeat(64);
  const [c1, c2] = chainIds([a, b]);
  t.is(c1, a);
  t.is(c2, 'sha256:' + createHash('sha256').update(`${a} ${b}`).digest('hex'));
});

asRoot({ serial: true })('the human table lists the runs and the checks', (t) => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'cli/main.ts', 'compare', '--sample'], { cwd: repo, encoding: 'utf8', timeout: 240_000 });
  t.is(r.status, 0, r.stderr);
  t.regex(r.stdout, /^FORMAT\s+LAYER\s+APPLY/m);
  t.regex(r.stdout, /^overlay\s+replace\s/m);
  t.regex(r.stdout, /^\d+ checks passed, 0 failed$/m);
});

test('compare without --sample is a usage error (exit 2)', (t) => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'cli/main.ts', 'compare'], { cwd: repo, encoding: 'utf8' });
  t.is(r.status, 2);
  t.regex(r.stderr, /--sample/);
});

asRoot({ serial: true })('a changed file in a re-applied tree fails exactly that digest check', async (t) => {
  const report = await compareSample({
    tamper: at({ format: 'aufs', layer: 'edit', phase: 'reapply' }, (dir) => appendFileSync(join(dir, 'etc/passwd'), 'x')),
  });
  t.false(report.ok);
  t.deepEqual(failed(report), ['aufs edit: re-applied export = first apply']);
  const detail = report.checks.find((c) => !c.ok)?.detail ?? '';
  t.regex(detail, /etc\/passwd/, 'the diff names the file');
});

asRoot({ serial: true })('a lost opaque xattr in the overlay format is caught', async (t) => {
  const report = await compareSample({
    tamper: at({ format: 'overlay', layer: 'replace', phase: 'reapply' }, (dir) =>
      lremovexattr(join(dir, 'usr/share/doc/coreutils'), 'trusted.overlay.opaque')),
  });
  t.deepEqual(failed(report), ['overlay replace: re-applied export = first apply']);
});

asRoot({ serial: true })('overlay whiteouts round-trip exactly: a changed mtime or owner is caught', async (t) => {
  // applyLayer gives the char 0/0 device the header's times (moby leaves them at "now"), so nothing is forgiven
  const mtime = await compareSample({
    tamper: at({ format: 'overlay', layer: 'edit', phase: 'reapply' }, (dir) => lutimesSync(join(dir, 'etc/motd'), 1, 1)),
  });
  t.deepEqual(failed(mtime), ['overlay edit: re-applied export = first apply']);
  t.is(mtime.runs.find((x) => x.format === 'overlay' && x.layer === 'edit')?.match, 'NO');

  const owner = await compareSample({
    tamper: at({ format: 'overlay', layer: 'edit', phase: 'reapply' }, (dir) => {
      t.true(lstatSync(join(dir, 'etc/motd')).isCharacterDevice());
      spawnSync('chown', ['-h', '7:7', join(dir, 'etc/motd')]);
    }),
  });
  t.deepEqual(failed(owner), ['overlay edit: re-applied export = first apply']);
});

asRoot({ serial: true })('a bad flattened tree and a bad GNU tar tree are caught', async (t) => {
  const report = await compareSample({
    tamper: (stage, dir) => {
      if (stage.layer === 'flat' && stage.phase === 'reapply') writeFileSync(join(dir, 'etc/extra'), 'not in the image');
      if (stage.phase === 'gnu-tar') chmodSync(join(dir, 'usr/bin/su'), 0o755);
    },
  });
  t.deepEqual(failed(report).sort(), ['base: applyLayer = GNU tar -x (same tar)', 'none flat: re-applied export = flattened tree']);
});

asRoot({ serial: true })("a changed file in one driver's mounted top layer fails that driver and the agreement check", async (t) => {
  const report = await compareSample({
    tamper: at({ phase: 'driver', driver: 'vfs' }, (dir) => appendFileSync(join(dir, 'etc/hostname'), 'x')),
  });
  const others = report.drivers.filter((d) => d.topDigest !== undefined && d.driver !== 'vfs');
  const want = ['driver vfs: mounted top layer = flattened tree (dir mtimes aside)'];
  if (others.length > 0) want.push(`drivers: every driver's top layer has the same digest (${report.drivers.filter((d) => d.topDigest !== undefined).map((d) => d.driver).join(', ')})`);
  t.deepEqual(failed(report).sort(), want.sort());
});

asRoot({ serial: true })('--keep leaves the work dir for inspection', async (t) => {
  const report = await compareSample({ keep: true });
  t.true(report.ok);
  t.truthy(report.workDir);
  t.true(lstatSync(join(report.workDir ?? '', 'aufs/2-edit/diff/etc/.wh.motd')).isFile(), 'aufs whiteout kept as a file');
  t.true(lstatSync(join(report.workDir ?? '', 'overlay/2-edit/diff/etc/motd')).isCharacterDevice(), 'overlay whiteout is a char device');
  spawnSync('rm', ['-rf', report.workDir ?? '/nonexistent']);
});

asRoot({ serial: true })('the work dir of a killed compare (its holder gone, a mount left in it) is removed by the next; a kept one and a live one stay', async (t) => {
  const { mkdtempSync, mkdirSync, existsSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const sys = await import('../sys/syscalls.ts');
  const { mountsUnder } = await import('../sys/mountinfo.ts');
  const { selfTag } = await import('../drivers/holder.ts');
  const parent = mkdtempSync(join(tmpdir(), 'strata-compare-parent-'));
  t.teardown(() => {
    for (const m of mountsUnder(parent)) sys.umount2(m.mountPoint, sys.MNT_DETACH);
    rmSync(parent, { recursive: true, force: true });
  });
  // our pid with another start time: the process a reused pid once named, long gone
  const dead = join(parent, `strata-compare-${process.pid}.1-AbC123`);
  mkdirSync(join(dead, 'm'), { recursive: true });
  sys.mount('tmpfs', join(dead, 'm'), 'tmpfs', 0, 'size=1m');
  const live = join(parent, `strata-compare-${selfTag()}-DeF456`);
  mkdirSync(live);
  const report = await compareSample({ parent, keep: true });
  t.true(report.ok);
  t.false(existsSync(dead), 'a dead holder\'s work dir is removed (its mount detached first)');
  t.true(existsSync(live), 'a live holder\'s stays');
  t.true(existsSync(report.workDir ?? '/nonexistent'), 'the kept work dir is there');
  const next = await compareSample({ parent });
  t.true(next.ok);
  t.true(existsSync(report.workDir ?? '/nonexistent'), 'and a later compare leaves it (kept on purpose)');
});
