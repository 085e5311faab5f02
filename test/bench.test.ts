// strata bench: --quick --json structure over every driver that runs here and the
// peers; --html rendered in headless chromium (DOM after load carries the JSON's
// medians, the screenshot holds the chart colours); SIGINT leaves nothing behind.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';
import { execFileSync, spawn } from 'node:child_process';
import { mountsUnder } from '../sys/mountinfo.ts';
import { awaitEntry } from './helpers/await-entry.ts';
import { decodePng } from './helpers/png.ts';
import { hasTool, isRoot, when } from './helpers/require.ts';
import { strata, strataSpawn } from './helpers/strata-cli.ts';
import type { BenchReport } from '../bench/suite/result.ts';

const ready = isRoot && hasTool('containers-storage') && hasTool('chromium') && existsSync('/usr/bin/time');
const it = when(ready, 'root, containers-storage, chromium and /usr/bin/time', { serial: true });
// a plain workload with the peers, the depth sweep (mount / unmount around each timed read), inspect (no peer)
const WORKLOADS = 'Exists,DeepChainFirstRead,InspectHistory';

/** Loop devices some process's mount namespace has mounted (from every /proc/<pid>/mountinfo). */
function loopsMountedAnywhere(): Set<string> {
  const held = new Set<string>();
  for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/mountinfo`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    for (const m of text.matchAll(/ - \S+ (\/dev\/loop\d+) /g)) held.add(m[1]);
  }
  return held;
}

/**
 * Loop devices on images under `dir` that the bench left: attached, and mounted
 * in no namespace. A test elsewhere that made a mount namespace (unshare) while
 * the bench had its btrfs mounted holds a copy of that mount, and so keeps the
 * device (autoclear) until it exits: not the bench's leak. The holders are read
 * before the devices, so a holder that exits in between only removes a device.
 */
function loopsLeft(dir: string): string[] {
  const held = loopsMountedAnywhere();
  return execFileSync('losetup', ['-a'], { encoding: 'utf8' }).split('\n')
    .filter((l) => l.includes(dir)).map((l) => l.slice(0, l.indexOf(':'))).filter((dev) => !held.has(dev));
}

function tmp(t: { teardown: (f: () => void) => void }): string {
  const d = mkdtempSync('/dev/shm/strata-bench-test-');
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

it('bench --quick --json --html: every usable driver and the peers, finite numbers; chromium renders the charts with them', async (t) => {
  const dir = tmp(t);
  const html = join(dir, 'report.html');
  const r = strata(['bench', '--quick', '--json', '--peer', 'containers-storage', '--workloads', WORKLOADS, '--html', html, '--tmpdir', dir]);
  t.is(r.code, 0, r.stderr);
  const rep = JSON.parse(r.stdout) as BenchReport;
  t.is(rep.schema, 'strata-bench/1');
  t.truthy(rep.kernel && rep.machine.cores > 0 && rep.fs.type);
  const ran = rep.drivers.filter((d) => d.ran).map((d) => d.name);
  t.deepEqual(ran, rep.drivers.filter((d) => d.usable && d.name !== 'devicemapper').map((d) => d.name));
  t.true(ran.includes('vfs') && ran.includes('overlay2'));
  t.deepEqual(rep.workloads.map((w) => w.name), WORKLOADS.split(','));
  t.truthy(rep.rss.peer && rep.rss.strata, 'the report says how RSS is measured');
  const [exists, sweep, history] = rep.workloads;
  t.deepEqual(exists.variants.map((v) => v.name), [...ran, ...rep.peers.filter((p) => p !== 'GNU tar')]);
  // the sweep: every driver and peer at depths 1 and 8, each point against the reference peer at its depth
  t.is(sweep.sweep, 'layers');
  t.deepEqual(sweep.variants.map((v) => `${v.series} @${v.at}`), [1, 8].flatMap((d) => [...ran, ...rep.peers.filter((p) => p !== 'GNU tar')].map((n) => `${n} @${d}`)));
  for (const v of sweep.variants) t.is(v.ratio, v.wallMs / sweep.variants.find((r) => r.series === sweep.reference && r.at === v.at)!.wallMs);
  t.is(history.reference, null);
  t.deepEqual(history.variants.map((v) => [v.name, v.ratio]), [['strata', null]]);
  for (const w of rep.workloads) {
    for (const v of w.variants) {
      t.is(v.samples.length, rep.rounds.measured);
      for (const x of [v.wallMs, v.cpuMs, v.rssKB, v.spread.min, v.spread.max, v.ratio ?? 0]) t.true(Number.isFinite(x), `${w.name} ${v.name}`);
      t.true(v.rssKB > 0, `${w.name} ${v.name}: RSS measured`);
    }
  }
  t.deepEqual(readdirSync(dir), ['report.html']); // the work dir is gone
  t.deepEqual(loopsLeft(dir), [], 'no loop device left');

  const profile = join(dir, 'chromium-profile');
  const flags = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', `--user-data-dir=${profile}`, '--window-size=1280,2400'];
  const runChromium = async (args: string[]) => {
    const c = spawn('chromium', [...flags, ...args, `file://${html}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    t.teardown(() => { if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL'); });
    let out = '';
    c.stdout.on('data', (b: Buffer) => (out += b));
    const [code] = await once(c, 'exit');
    return { code, out };
  };
  const dom = await runChromium(['--dump-dom']);
  t.is(dom.code, 0);
  for (const w of rep.workloads) {
    const svg = new RegExp(`<svg id="workload-${w.name}"[^]*?</svg>`).exec(dom.out)?.[0] ?? '';
    t.truthy(svg, `chart of ${w.name}`);
    const values = [...svg.matchAll(/data-value="([^"]+)"/g)].map((m) => Number(m[1]));
    t.deepEqual(values, w.variants.map((v) => v.wallMs));
  }
  for (const d of ran) t.regex(dom.out, new RegExp(`<svg id="driver-${d}"`));
  const line = new RegExp(`<svg id="sweep-${sweep.name}"[^]*?</svg>`).exec(dom.out)?.[0] ?? '';
  const points = [...line.matchAll(/data-series="([^"]+)" data-at="(\d+)" data-value="([^"]+)"/g)].map((m) => [m[1], Number(m[2]), Number(m[3])]);
  t.deepEqual(points.sort(), sweep.variants.map((v) => [v.series, v.at, v.wallMs]).sort(), 'the depth chart has every point of the JSON');
  const png = join(dir, 'shot.png');
  const shot = await runChromium([`--screenshot=${png}`]);
  t.is(shot.code, 0);
  const { rgba, width, height } = decodePng(readFileSync(png));
  const count = (r: number, g: number, b: number) => {
    let n = 0;
    for (let i = 0; i < width * height; i++) if (Math.abs(rgba[i * 4] - r) < 8 && Math.abs(rgba[i * 4 + 1] - g) < 8 && Math.abs(rgba[i * 4 + 2] - b) < 8) n++;
    return n;
  };
  t.true(count(0x1f, 0x77, 0xb4) > 100, 'strata bars painted');
  t.true(count(0xff, 0x7f, 0x0e) > 100, 'peer bars painted');
});

it('--drivers devicemapper on a kernel without device-mapper: one line says why, the run goes on', (t) => {
  const dir = tmp(t);
  const r = strata(['bench', '--quick', '--json', '--drivers', 'devicemapper', '--workloads', 'Exists', '--tmpdir', dir]);
  t.is(r.code, 0, r.stderr);
  const dm = (JSON.parse(r.stdout) as BenchReport).drivers.find((d) => d.name === 'devicemapper')!;
  if (dm.usable) return t.pass('this kernel has device-mapper');
  t.false(dm.ran);
  t.regex(r.stderr, /^strata bench: devicemapper: .*VM harness.*\n$/);
  t.deepEqual(readdirSync(dir), []);
});

it('SIGINT during a run: exit 130, the work dir and its mounts gone', async (t) => {
  const dir = tmp(t);
  const c = strataSpawn(['bench', '--quick', '--workloads', 'ChangesModified', '--tmpdir', dir]);
  t.teardown(() => { if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL'); });
  // the work dir's tars/ appears once every driver is open: stop it there
  const exited = once(c, 'exit').then(([code]) => { throw new Error(`bench exited (${code}) before its drivers were open`); });
  const work = await Promise.race([awaitEntry(dir, /^strata-bench-/), exited]);
  await Promise.race([awaitEntry(join(dir, work), /^tars$/), exited]);
  c.kill('SIGINT');
  const [code] = await once(c, 'exit');
  t.is(code, 130);
  t.deepEqual(readdirSync(dir), []);
  t.deepEqual(mountsUnder(dir), []);
  t.deepEqual(loopsLeft(dir), [], 'no loop device on an image in the work dir');
});
