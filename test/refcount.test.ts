// Reference counts across real processes: children (`node --import tsx`)
// take and drop references on a tmpfs mount through drivers/refcount.ts;
// after each step the parent reads /proc/self/mountinfo itself.
import test from 'ava';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { RefCounter, tempRecordName } from '../drivers/refcount.ts';
import { parseMountPoints, unescapeMountinfo } from '../sys/mountinfo.ts';
import { isAlive, tagOf } from '../drivers/holder.ts';
import * as sys from '../sys/syscalls.ts';
import { asRoot } from './helpers/require.ts';
import { LineChild, repo } from './helpers/line-child.ts';


// The child: reads `acquire|release|persist|loop|count ID PATH [N]` lines, answers `ok COUNT` or `error MESSAGE`.
const CHILD = `
import { createInterface } from 'node:readline';
import * as fs from 'node:fs';
const { RefCounter } = await import(${JSON.stringify(path.join(repo, 'drivers/refcount.ts'))});
const { isMountPoint } = await import(${JSON.stringify(path.join(repo, 'sys/mountinfo.ts'))});
const sys = await import(${JSON.stringify(path.join(repo, 'sys/syscalls.ts'))});
const refs = new RefCounter(process.env.REF_HOME);
const mount = (p) => () => sys.mount('tmpfs', p, 'tmpfs', 0, 'size=1m');
const unmount = (p) => () => sys.umount2(p);
for await (const line of createInterface({ input: process.stdin })) {
  const [cmd, id, p, n] = line.split(' ');
  try {
    if (cmd === 'acquire') console.log('ok', await refs.acquire(id, p, mount(p)));
    else if (cmd === 'release') console.log('ok', await refs.release(id, p, unmount(p)));
    else if (cmd === 'count') console.log('ok', await refs.count(id, p));
    else if (cmd === 'persist') console.log('ok', await refs.persist(id, p));
    else if (cmd === 'loop') {
      for (let i = 0; i < Number(n); i++) {
        await refs.acquire(id, p, mount(p));
        // while we hold a reference the mount must stay: write into it and check
        if (!isMountPoint(p)) throw new Error('not mounted while holding a reference (iteration ' + i + ')');
        fs.writeFileSync(p + '/f-' + process.pid, String(i));
        await new Promise((r) => setTimeout(r, 2));
        if (!isMountPoint(p)) throw new Error('unmounted under us (iteration ' + i + ')');
        await refs.release(id, p, unmount(p));
      }
      console.log('ok 0');
    } else console.log('error unknown command ' + cmd);
  } catch (e) {
    console.log('error ' + String(e && e.message).replace(/\\n/g, ' '));
  }
}
`;

/** A child answering counts: `send` gives the number it printed. */
class Child extends LineChild {
  constructor(home: string) {
    super(CHILD, { REF_HOME: home });
  }
  async count(cmd: string): Promise<number> {
    return Number(await super.send(cmd));
  }
}

/** How many mount entries sit exactly on `p`, read by this (the parent) process. */
function mountsAt(p: string): number {
  return parseMountPoints(fs.readFileSync('/proc/self/mountinfo', 'latin1')).filter((m) => m === p).length;
}

function setup(t: { teardown: (fn: () => void | Promise<void>) => void }, children = 2) {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-refcount-'));
  const mnt = path.join(home, 'mnt');
  fs.mkdirSync(mnt);
  const kids = Array.from({ length: children }, () => new Child(home));
  t.teardown(async () => {
    await Promise.all(kids.map((k) => k.close()));
    while (mountsAt(mnt) > 0) sys.umount2(mnt, sys.MNT_DETACH);
    fs.rmSync(new RefCounter(home).dir, { recursive: true, force: true }); // crash cases leave counts on purpose
    fs.rmSync(home, { recursive: true, force: true });
  });
  return { home, mnt, kids };
}

test('mountinfo mount points are unescaped', (t) => {
  t.is(unescapeMountinfo('/a\\040b\\011c\\134d'), '/a b\tc\\d');
  t.deepEqual(parseMountPoints('36 35 98:0 /mnt1 /mnt\\040x rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n'), ['/mnt x']);
});

const rootSerial = asRoot({ serial: true });

rootSerial('two processes share one mount: the last put unmounts, not the first', async (t) => {
  const { mnt, kids: [a, b] } = setup(t);
  t.is(await a.count(`acquire L ${mnt}`), 1);
  t.is(mountsAt(mnt), 1);
  t.is(await b.count(`acquire L ${mnt}`), 2);
  t.is(mountsAt(mnt), 1, 'the second get must not mount again');
  t.is(await a.count(`release L ${mnt}`), 1);
  t.is(mountsAt(mnt), 1, 'A put must not unmount under B');
  t.is(await b.count(`count L ${mnt}`), 1);
  t.is(await b.count(`release L ${mnt}`), 0);
  t.is(mountsAt(mnt), 0, 'the last put unmounts');
  t.is(await a.count(`release L ${mnt}`), 0, 'an extra put is a no-op');
});

rootSerial('a count for a path that is not mounted is stale and counts as 0', async (t) => {
  const { home, mnt, kids: [a] } = setup(t, 1);
  const refsDir = new RefCounter(home).dir;
  t.false(refsDir.startsWith(home), 'counts live outside the driver home');
  fs.mkdirSync(refsDir, { recursive: true });
  fs.writeFileSync(path.join(refsDir, 'L'), JSON.stringify({ count: 5, path: mnt }));
  t.is(await a.count(`count L ${mnt}`), 0);
  t.is(await a.count(`acquire L ${mnt}`), 1);
  t.is(mountsAt(mnt), 1, 'a stale count must not stop the mount');
  t.is(await a.count(`release L ${mnt}`), 0);
  t.is(mountsAt(mnt), 0);
  t.false(fs.existsSync(path.join(refsDir, 'L')));
});

rootSerial('a killed holder\'s reference is reclaimed: the next user takes the mount over, the last put unmounts', async (t) => {
  const { home, mnt, kids: [a, b] } = setup(t);
  t.is(await a.count(`acquire L ${mnt}`), 1); // answered once the mount is made
  await a.kill9();
  t.is(mountsAt(mnt), 1, 'killed while holding: still mounted');
  t.is(await b.count(`count L ${mnt}`), 0, 'a dead holder\'s reference does not count');
  t.is(await b.count(`acquire L ${mnt}`), 1, 'taken over, not mounted twice');
  t.is(mountsAt(mnt), 1);
  t.is(await b.count(`release L ${mnt}`), 0);
  t.is(mountsAt(mnt), 0, 'no live holder left: unmounted');
  t.deepEqual(new RefCounter(home).ids(), []);
});

rootSerial('reclaim (driver init) unmounts what only dead holders held', async (t) => {
  const { home, mnt, kids: [a] } = setup(t, 1);
  t.is(await a.count(`acquire L ${mnt}`), 1);
  t.is(await a.count(`acquire L ${mnt}`), 2);
  await a.kill9();
  const refs = new RefCounter(home);
  await refs.reclaim((_id, p) => sys.umount2(p));
  t.is(mountsAt(mnt), 0);
  t.deepEqual(refs.ids(), []);
  t.false(fs.existsSync(refs.dir), 'nothing left in the run dir');
});

rootSerial('a holder is its pid and start time: a live pid with another start time is a dead holder', async (t) => {
  const { home, mnt } = setup(t, 0);
  const refs = new RefCounter(home);
  const start = fs.readFileSync('/proc/self/stat', 'latin1').split(') ')[1].split(' ')[19];
  const record = (tag: string) => {
    fs.mkdirSync(refs.dir, { recursive: true });
    fs.writeFileSync(path.join(refs.dir, 'L'), JSON.stringify({ path: mnt, holders: { [tag]: 1 }, persistent: 0, foreign: false }));
  };
  sys.mount('tmpfs', mnt, 'tmpfs', 0, 'size=1m');
  record(`${process.pid}.${start}`); // this very process: alive
  await refs.reclaim((_id, p) => sys.umount2(p));
  t.is(mountsAt(mnt), 1, 'a live holder keeps its mount');
  record(`${process.pid}.${Number(start) + 1}`); // our pid, but not our start: a reused pid
  await refs.reclaim((_id, p) => sys.umount2(p));
  t.is(mountsAt(mnt), 0, 'a reused pid is not the holder');
  t.deepEqual(refs.ids(), []);
});

rootSerial('a persistent reference (strata layer mount) outlives its process; a put from another process releases it', async (t) => {
  const { home, mnt, kids: [a, b] } = setup(t);
  t.is(await a.count(`acquire L ${mnt}`), 1);
  t.is(await a.count(`persist L ${mnt}`), 1);
  await a.close(); // exits normally, as the CLI does after printing the path
  const refs = new RefCounter(home);
  await refs.reclaim((_id, p) => sys.umount2(p));
  t.is(mountsAt(mnt), 1, 'not reclaimed: nobody put it');
  t.is(await b.count(`count L ${mnt}`), 1);
  t.is(await b.count(`acquire L ${mnt}`), 2);
  t.is(await b.count(`release L ${mnt}`), 1, 'b drops its own reference first');
  t.is(mountsAt(mnt), 1);
  t.is(await b.count(`release L ${mnt}`), 0, 'then the persistent one');
  t.is(mountsAt(mnt), 0);
});

rootSerial('a put never takes another live process\'s reference', async (t) => {
  const { mnt, kids: [a, b] } = setup(t);
  t.is(await a.count(`acquire L ${mnt}`), 1);
  t.is(await b.count(`release L ${mnt}`), 1);
  t.is(mountsAt(mnt), 1, 'a still holds it');
  t.is(await a.count(`release L ${mnt}`), 0);
  t.is(mountsAt(mnt), 0);
});

rootSerial('cleanup unmounts what it recorded; a count left for a path unmounted by hand is stale', async (t) => {
  const { home, mnt, kids: [a, b] } = setup(t);
  t.is(await a.count(`acquire L ${mnt}`), 1);
  const refs = new RefCounter(home);
  await refs.releaseAll((_id, p) => sys.umount2(p));
  t.is(mountsAt(mnt), 0);
  t.deepEqual(refs.ids(), []);
  t.is(await b.count(`acquire L ${mnt}`), 1);
  await b.kill9();
  sys.umount2(mnt);
  t.is(await a.count(`acquire L ${mnt}`), 1, 'stale count ignored');
  t.is(mountsAt(mnt), 1, 'mounted again');
  t.is(await a.count(`release L ${mnt}`), 0);
  t.is(mountsAt(mnt), 0);
});

rootSerial('a mount made outside the counts (dockerd, by hand) is never unmounted by us, not even when its counted holder dies', async (t) => {
  const { home, mnt, kids: [a, b] } = setup(t);
  sys.mount('tmpfs', mnt, 'tmpfs', 0, 'size=1m');
  t.is(await a.count(`acquire L ${mnt}`), 2);
  t.is(mountsAt(mnt), 1);
  t.is(await a.count(`release L ${mnt}`), 1);
  t.is(await a.count(`release L ${mnt}`), 1, 'an extra put does not unmount it either');
  t.is(mountsAt(mnt), 1);
  t.is(await b.count(`acquire L ${mnt}`), 2);
  await b.kill9();
  await new RefCounter(home).reclaim((_id, p) => sys.umount2(p));
  t.is(mountsAt(mnt), 1, 'reclaim leaves a foreign mount alone');
  await new RefCounter(home).releaseAll((_id, p) => sys.umount2(p));
  t.is(mountsAt(mnt), 1, 'so does cleanup');
});

rootSerial('two processes racing get/put 40 times each never unmount under each other', async (t) => {
  const { home, mnt, kids: [a, b] } = setup(t);
  await Promise.all([a.send(`loop L ${mnt} 40`), b.send(`loop L ${mnt} 40`)]);
  t.is(mountsAt(mnt), 0);
  t.deepEqual(new RefCounter(home).ids(), []);
});

rootSerial('forget unmounts and drops the record and its lock file', async (t) => {
  const { home, mnt, kids: [a] } = setup(t, 1);
  t.is(await a.count(`acquire L ${mnt}`), 1);
  t.is(await a.count(`acquire L ${mnt}`), 2);
  const refs = new RefCounter(home);
  await refs.forget('L', (p) => sys.umount2(p));
  t.is(mountsAt(mnt), 0);
  t.false(fs.existsSync(refs.dir), 'with no references left, nothing stays in the run dir');
  t.is(await a.count(`count L ${mnt}`), 0);
});

/** The holder tag of a real process that has exited (and been reaped): spawned, its start time read, killed, waited for. */
async function deadHolderTag(): Promise<string> {
  const child = spawn('sleep', ['1000'], { stdio: 'ignore' });
  await once(child, 'spawn');
  const tag = tagOf(child.pid!)!;
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  await exited;
  return tag;
}

test('reclaim removes the temp record a writer killed before its rename left, only when that writer is gone', async (t) => {
  const run = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-refrun-'));
  t.teardown(() => fs.rmSync(run, { recursive: true, force: true }));
  const saved = process.env.STRATA_RUN_DIR;
  process.env.STRATA_RUN_DIR = run;
  let refs: RefCounter;
  try {
    refs = new RefCounter(path.join(run, 'home'));
  } finally {
    if (saved === undefined) delete process.env.STRATA_RUN_DIR;
    else process.env.STRATA_RUN_DIR = saved;
  }
  t.true(refs.dir.startsWith(run + '/'));
  const dead = await deadHolderTag();
  t.false(isAlive(dead), `${dead} has exited`);
  fs.mkdirSync(refs.dir, { recursive: true });
  const plant = (name: string) => fs.writeFileSync(path.join(refs.dir, name), '{"path":"/x","holders":{},"persistent":1}\n');
  const left = () => fs.readdirSync(refs.dir).sort();
  const mine = tempRecordName('L-init'); // a live writer's (this process), between its write and its rename
  plant(tempRecordName('L', dead));
  plant(mine);
  // from before writers were tagged: the pid alone; one a minute old is a dead writer's
  const [deadPid] = dead.split('.');
  plant(`.tmp-N-${deadPid}`);
  fs.utimesSync(path.join(refs.dir, `.tmp-N-${deadPid}`), new Date(Date.now() - 120_000), new Date(Date.now() - 120_000));
  plant(`.tmp-O-${process.pid}`);
  await refs.reclaim(() => t.fail('nothing is mounted'));
  t.deepEqual(left(), [`.tmp-O-${process.pid}`, mine].sort(), 'only the dead writers\' temp files go');
  // with only a dead writer's temp file left, the home's directory goes too
  fs.rmSync(path.join(refs.dir, mine));
  fs.rmSync(path.join(refs.dir, `.tmp-O-${process.pid}`));
  plant(tempRecordName('M', dead));
  await refs.reclaim(() => t.fail('nothing is mounted'));
  t.false(fs.existsSync(refs.dir), 'nothing left in the run dir');
});
