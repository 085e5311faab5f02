// Reference counts across real processes: children (`node --import tsx`)
// take and drop references on a tmpfs mount through drivers/refcount.ts;
// after each step the parent reads /proc/self/mountinfo itself.
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { RefCounter, parseMountPoints, unescapeMountinfo } from '../drivers/refcount.ts';
import * as sys from '../sys/syscalls.ts';
import { asRoot } from './helpers/require.ts';
import { LineChild, repo } from './helpers/line-child.ts';


// The child: reads `acquire|release|loop|count ID PATH [N]` lines, answers `ok COUNT` or `error MESSAGE`.
const CHILD = `
import { createInterface } from 'node:readline';
import * as fs from 'node:fs';
const { RefCounter, isMountPoint } = await import(${JSON.stringify(path.join(repo, 'drivers/refcount.ts'))});
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

rootSerial('a crashed holder: its count stays while mounted; once unmounted the count is stale; cleanup unmounts', async (t) => {
  const { home, mnt, kids: [a, b] } = setup(t);
  t.is(await a.count(`acquire L ${mnt}`), 1);
  await a.kill9();
  t.is(mountsAt(mnt), 1);
  t.is(await b.count(`acquire L ${mnt}`), 2);
  t.is(await b.count(`release L ${mnt}`), 1);
  t.is(mountsAt(mnt), 1, 'the crashed holder still has its reference');
  // Cleanup (driver shutdown) unmounts everything recorded
  const refs = new RefCounter(home);
  await refs.releaseAll((_id, p) => sys.umount2(p));
  t.is(mountsAt(mnt), 0);
  t.deepEqual(refs.ids(), []);
  // a count left behind by a crash, for a path someone unmounted by hand
  const c = new Child(home);
  t.teardown(() => c.close());
  t.is(await c.count(`acquire L ${mnt}`), 1);
  await c.kill9();
  sys.umount2(mnt);
  t.is(await b.count(`acquire L ${mnt}`), 1, 'stale count ignored');
  t.is(mountsAt(mnt), 1, 'mounted again');
  t.is(await b.count(`release L ${mnt}`), 0);
  t.is(mountsAt(mnt), 0);
});

rootSerial('a mount made outside the counts (dockerd, by hand) is never unmounted by balanced get/put', async (t) => {
  const { mnt, kids: [a] } = setup(t, 1);
  sys.mount('tmpfs', mnt, 'tmpfs', 0, 'size=1m');
  t.is(await a.count(`acquire L ${mnt}`), 2);
  t.is(mountsAt(mnt), 1);
  t.is(await a.count(`release L ${mnt}`), 1);
  t.is(mountsAt(mnt), 1);
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
