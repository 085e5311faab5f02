// The real-dockerd oracle: a private Docker daemon (Debian's docker.io, 20.10)
// on its own data-root, exec-root, pidfile and unix socket, for tests that
// compare strata with what Docker itself does.
//
//   const d = await startDockerd({ driver: 'overlay2', dir });   // dir: an empty scratch dir
//   await d.docker(['import', '-', 'x:latest'], { input: tarBytes });
//   …
//   const report = await d.stop();    // always, also on failure (t.teardown / test.after.always)
//
// Layout under `dir`: root/ (--data-root), exec/ (--exec-root), docker.sock,
// dockerd.pid, dockerd.log, daemon.json (--config-file, so the host's
// /etc/docker/daemon.json never applies and the trust key goes to
// dir/key.json), client/ (DOCKER_CONFIG of the client).
//
// The client is always /usr/bin/docker (the Debian one, matching the daemon);
// /usr/local/bin/docker may come first in PATH and is never used. Builds use
// the legacy builder (DOCKER_BUILDKIT=0) unless the caller's env says otherwise.
//
// What stop() does, in order:
//   1. SIGTERM to dockerd by its PID, wait for it to exit (timeout: SIGKILL by PID);
//   2. any process still referring to this daemon's exec-root or data-root
//      (its managed containerd, container shims) gets SIGTERM, then SIGKILL, by PID;
//   3. everything still mounted under the data-root or exec-root is unmounted
//      (deepest first; a failed start leaves the data-root bind-mounted on itself);
//   4. the host paths dockerd and containerd create outside the data-root
//      (HOST_PATHS and /sys/fs/cgroup/<controller>/docker) are removed if they
//      did not exist before: a snapshot is taken before the first daemon starts.
//      Several oracle daemons may run at once (ava runs test files in parallel),
//      so the snapshot lives in a small ledger shared by all of them
//      (/tmp/strata-oracle-dockerd.json, under a mkdir lock) and the paths are
//      removed when the last one stops, and not while a dockerd or containerd
//      that is not one of ours is running (the report says what was kept).
// Nothing is ever killed by name.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { parseMountPoints } from '../../sys/mountinfo.ts';
import * as sys from '../../sys/syscalls.ts';

export const DOCKERD = '/usr/sbin/dockerd';
/** The Debian client; NOT /usr/local/bin/docker. */
export const DOCKER_CLIENT = '/usr/bin/docker';
/** What docker.io needs at run time besides dockerd itself. */
const RUNTIME_BINARIES = [DOCKERD, DOCKER_CLIENT, '/usr/bin/containerd', '/usr/sbin/runc'];

/** Paths outside the data-root that dockerd 20.10, its managed containerd or the client create (children first). */
export const HOST_PATHS = [
  '/etc/docker/key.json', '/etc/docker',
  '/opt/containerd',
  '/run/docker', '/run/containerd', '/run/runc',
  '/root/.docker',
];

const LEDGER = '/tmp/strata-oracle-dockerd.json';
const LEDGER_LOCK = '/tmp/strata-oracle-dockerd.lock';

/** Are dockerd, the Debian client, containerd and runc installed (package docker.io)? */
export function dockerdAvailable(): boolean {
  return RUNTIME_BINARIES.every((b) => {
    try {
      fs.accessSync(b, fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

export interface DockerdOptions {
  /** --storage-driver */
  driver: string;
  /** scratch directory for everything of this daemon (created if missing) */
  dir: string;
  /** more dockerd arguments (e.g. --storage-opt …) */
  extraArgs?: string[];
  /** how long to wait for the API to answer (default 60 s) */
  startTimeoutMs?: number;
}

export interface DockerOptions {
  /** bytes or text for the client's stdin */
  input?: string | Buffer;
  /** extra environment for the client (DOCKER_BUILDKIT defaults to '0') */
  env?: Record<string, string>;
  /** kill the client (by PID) after this long (default 180 s) */
  timeoutMs?: number;
}

export interface StopReport {
  /** dockerd's exit: code or signal */
  exit: { code: number | null; signal: NodeJS.Signals | null };
  /** SIGKILL was needed for dockerd */
  forced: boolean;
  /** other processes of this daemon (containerd, shims) that were still alive and got killed, by PID */
  killedStragglers: number[];
  /** mount points under the data-root / exec-root that were still mounted and got unmounted */
  unmounted: string[];
  /** host paths created while oracle daemons ran, removed now */
  removedHostPaths: string[];
  /** host paths created meanwhile but kept, and why (another daemon still running) */
  keptHostPaths: string[];
  /**
   * host paths the oracle daemons created that still existed right after the
   * removal, checked under the ledger lock (later, another oracle daemon may
   * have started and made them again): [] when the cleanup worked
   */
  leftHostPaths: string[];
  note: string;
  ms: number;
}

export interface Dockerd {
  readonly driver: string;
  readonly dir: string;
  readonly dataRoot: string;
  readonly execRoot: string;
  readonly socket: string;
  readonly pidfile: string;
  readonly logFile: string;
  /** dockerd's PID */
  readonly pid: number;
  /** Run /usr/bin/docker -H unix://<socket> ARGS; resolves to stdout (utf8), rejects with stderr on a non-zero exit. */
  docker(args: string[], opts?: DockerOptions): Promise<string>;
  /** The same, stdout as bytes (docker export/save to stdout). */
  dockerBytes(args: string[], opts?: DockerOptions): Promise<Buffer>;
  running(): boolean;
  /** The last lines of dockerd's log. */
  logTail(lines?: number): string;
  /** Stop and clean up (idempotent: a second call returns the first report). */
  stop(opts?: { timeoutMs?: number }): Promise<StopReport>;
}

// ---- small process helpers ---------------------------------------------------

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function readProc(pid: string, file: string): string | null {
  try {
    return fs.readFileSync(`/proc/${pid}/${file}`, 'latin1');
  } catch {
    return null;
  }
}

/** PIDs whose command line mentions one of `needles` (never our own process). */
export function processesMentioning(needles: string[]): number[] {
  const out: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    const cmd = readProc(name, 'cmdline');
    if (cmd && needles.some((n) => cmd.split('\0').some((arg) => arg === n || arg.startsWith(n + '/') || arg.includes('=' + n)))) {
      out.push(Number(name));
    }
  }
  return out;
}

/** dockerd / containerd processes on the host, by executable path. */
function daemonProcesses(): number[] {
  const out: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let exe: string;
    try {
      exe = fs.readlinkSync(`/proc/${name}/exe`);
    } catch {
      continue;
    }
    const base = path.basename(exe.replace(/ \(deleted\)$/, ''));
    if (base === 'dockerd' || base === 'containerd' || base.startsWith('containerd-shim')) out.push(Number(name));
  }
  return out;
}

/** Kill `pids` by PID: SIGTERM, wait up to `ms`, then SIGKILL. Returns the ones that were alive. */
async function terminate(pids: number[], ms: number): Promise<number[]> {
  const live = pids.filter(alive);
  for (const p of live) {
    try {
      process.kill(p, 'SIGTERM');
    } catch {
      // gone meanwhile
    }
  }
  const deadline = Date.now() + ms;
  while (live.some(alive) && Date.now() < deadline) await sleep(100);
  for (const p of live.filter(alive)) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
  while (live.some(alive) && Date.now() < deadline + 5000) await sleep(50);
  return live;
}

/** Unmount every mount point at or below one of `roots`, deepest first, repeating for stacked mounts. */
export function unmountBelow(roots: string[]): string[] {
  const done: string[] = [];
  for (let round = 0; round < 16; round++) {
    const mine = parseMountPoints(fs.readFileSync('/proc/self/mountinfo', 'latin1'))
      .filter((m) => roots.some((r) => m === r || m.startsWith(r + '/')))
      .sort((a, b) => b.length - a.length);
    if (mine.length === 0) break;
    for (const m of mine) {
      try {
        sys.umount2(Buffer.from(m, 'latin1'), sys.MNT_DETACH);
        done.push(m);
      } catch (e) {
        if (!(e instanceof sys.SysError && (e.code === 'EINVAL' || e.code === 'ENOENT'))) throw e;
      }
    }
  }
  return done;
}

// ---- the host-path ledger ----------------------------------------------------

interface Member {
  /** the node process that started the daemon */
  owner: number;
  dockerd: number | null;
  dir: string;
}

interface Ledger {
  /** host paths that existed before the first of the current oracle daemons started */
  existed: string[];
  taken: string;
  members: Member[];
}

/** HOST_PATHS plus `<controller>/docker` for each cgroup hierarchy (v1 and v2). */
export function hostPaths(): string[] {
  const out = [...HOST_PATHS];
  let ctrls: string[] = [];
  try {
    ctrls = fs.readdirSync('/sys/fs/cgroup');
  } catch {
    // no cgroupfs
  }
  for (const c of ctrls.sort()) {
    const p = path.join('/sys/fs/cgroup', c);
    try {
      if (fs.lstatSync(p).isDirectory()) out.push(path.join(p, 'docker'));
    } catch {
      // vanished
    }
  }
  if (fs.existsSync('/sys/fs/cgroup/cgroup.controllers')) out.push('/sys/fs/cgroup/docker'); // cgroup v2
  return [...new Set(out)];
}

const exists = (p: string) => {
  try {
    fs.lstatSync(p);
    return true;
  } catch {
    return false;
  }
};

function withLedgerLock<T>(fn: () => T): T {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      fs.mkdirSync(LEDGER_LOCK);
      fs.writeFileSync(path.join(LEDGER_LOCK, 'owner'), String(process.pid));
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      let owner = NaN;
      try {
        owner = Number(fs.readFileSync(path.join(LEDGER_LOCK, 'owner'), 'utf8'));
      } catch {
        // being created or removed right now
      }
      if (Number.isInteger(owner) && owner > 0 && !alive(owner)) {
        fs.rmSync(LEDGER_LOCK, { recursive: true, force: true }); // its holder died
        continue;
      }
      if (Date.now() > deadline) throw new Error(`oracle dockerd: ${LEDGER_LOCK} held for 30 s by pid ${owner}`);
      sleepSync(50);
    }
  }
  try {
    return fn();
  } finally {
    fs.rmSync(LEDGER_LOCK, { recursive: true, force: true });
  }
}

function readLedger(): Ledger | null {
  try {
    return JSON.parse(fs.readFileSync(LEDGER, 'utf8')) as Ledger;
  } catch {
    return null;
  }
}

function writeLedger(l: Ledger): void {
  fs.writeFileSync(`${LEDGER}.tmp-${process.pid}`, JSON.stringify(l, null, 1) + '\n');
  fs.renameSync(`${LEDGER}.tmp-${process.pid}`, LEDGER);
}

const memberAlive = (m: Member) => alive(m.owner) || (m.dockerd !== null && alive(m.dockerd));

/** Join the ledger before starting a daemon; the first live member takes the snapshot. Returns a note. */
function joinLedger(dir: string): string {
  return withLedgerLock(() => {
    let l = readLedger();
    let note = '';
    if (l && !l.members.some(memberAlive)) {
      // A run died without stopping its daemons: its snapshot cannot be trusted to
      // describe the host now (packages may have been installed since), so take a
      // new one and only say what that run may have left.
      const left = hostPaths().filter((p) => exists(p) && !l!.existed.includes(p));
      note = `a previous oracle run (snapshot ${l.taken}) ended without cleanup; it may have left: ${left.join(', ') || 'nothing'}`;
      l = null;
    }
    l ??= { existed: hostPaths().filter(exists), taken: new Date().toISOString(), members: [] };
    l.members = l.members.filter(memberAlive);
    l.members.push({ owner: process.pid, dockerd: null, dir });
    writeLedger(l);
    return note;
  });
}

function setLedgerPid(dir: string, pid: number): void {
  withLedgerLock(() => {
    const l = readLedger();
    const m = l?.members.find((x) => x.dir === dir && x.owner === process.pid);
    if (l && m) {
      m.dockerd = pid;
      writeLedger(l);
    }
  });
}

/** Cgroup dirs can only go by rmdir, children first. */
function rmdirTree(p: string): void {
  for (const e of fs.readdirSync(p, { withFileTypes: true })) if (e.isDirectory()) rmdirTree(path.join(p, e.name));
  fs.rmdirSync(p);
}

/** Leave the ledger after our daemon stopped; the last one out removes what the oracle daemons created. */
function leaveLedger(dir: string, ownDockerd: number): { removed: string[]; kept: string[]; left: string[]; note: string } {
  return withLedgerLock(() => {
    const l = readLedger();
    // every start joins the ledger, so a missing one means something else removed it
    if (!l) return { removed: [], kept: [], left: [`(no ledger at ${LEDGER}: host paths unaccounted for)`], note: 'no ledger' };
    l.members = l.members.filter((m) => !(m.dir === dir && m.owner === process.pid)).filter(memberAlive);
    const created = hostPaths().filter((p) => exists(p) && !l.existed.includes(p));
    if (l.members.length > 0) {
      writeLedger(l);
      return { removed: [], kept: created, left: [], note: `${l.members.length} other oracle dockerd(s) still running: host paths left for the last one to remove` };
    }
    const foreign = daemonProcesses().filter((p) => p !== ownDockerd);
    if (foreign.length > 0) {
      fs.rmSync(LEDGER, { force: true });
      return { removed: [], kept: created, left: [], note: `dockerd/containerd processes not started by this oracle are running (PIDs ${foreign.join(' ')}): host paths kept` };
    }
    const removed: string[] = [];
    for (const p of created) {
      if (!exists(p)) continue; // a parent went first
      if (p.startsWith('/sys/fs/cgroup/')) rmdirTree(p);
      else {
        unmountBelow([p]);
        fs.rmSync(p, { recursive: true, force: true });
      }
      removed.push(p);
    }
    fs.rmSync(LEDGER, { force: true });
    // looked up afresh: anything of the oracle daemons' that is still (or again) there
    return { removed, kept: [], left: hostPaths().filter((p) => exists(p) && !l.existed.includes(p)), note: '' };
  });
}

// ---- the daemon --------------------------------------------------------------

const liveDaemons = new Set<number>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // A worker that exits without its teardown (a crash) still stops its daemons;
  // the host paths are then reported by the next start's ledger note.
  process.once('exit', () => {
    for (const pid of liveDaemons) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // gone
      }
    }
  });
}

function ping(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ socketPath: socket, path: '/_ping', timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

function clientEnv(configDir: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('DOCKER_')) env[k] = v;
  return { ...env, DOCKER_CONFIG: configDir, DOCKER_BUILDKIT: '0', DOCKER_CLI_HINTS: 'false', ...extra };
}

function runClient(socket: string, configDir: string, args: string[], opts: DockerOptions = {}): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(DOCKER_CLIENT, ['-H', `unix://${socket}`, ...args], {
      env: clientEnv(configDir, opts.env), stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 180_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(Buffer.concat(out));
      else {
        const why = signal ? `killed by ${signal}` : `exit ${code}`;
        reject(new Error(`docker ${args.join(' ')}: ${why}: ${Buffer.concat(err).toString().trim()}`));
      }
    });
    child.stdin.on('error', () => undefined); // the client may exit before reading all input
    child.stdin.end(opts.input ?? '');
  });
}

function tail(file: string, lines = 30): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Start a private dockerd and wait until its API answers. On failure everything is cleaned up and the error carries the log tail. */
export async function startDockerd(opts: DockerdOptions): Promise<Dockerd> {
  if (!dockerdAvailable()) throw new Error(`dockerd not installed (need ${RUNTIME_BINARIES.join(', ')}: apt-get install docker.io)`);
  const dir = path.resolve(opts.dir);
  const dataRoot = path.join(dir, 'root');
  const execRoot = path.join(dir, 'exec');
  const socket = path.join(dir, 'docker.sock');
  const pidfile = path.join(dir, 'dockerd.pid');
  const logFile = path.join(dir, 'dockerd.log');
  const configFile = path.join(dir, 'daemon.json');
  const clientConfig = path.join(dir, 'client');
  if (Buffer.byteLength(socket) > 100 || Buffer.byteLength(path.join(execRoot, 'containerd', 'containerd.sock.ttrpc')) > 100) {
    throw new Error(`oracle dockerd: ${dir} is too long for unix socket paths (108 bytes): use a short scratch dir`);
  }
  for (const d of [dataRoot, execRoot, clientConfig]) fs.mkdirSync(d, { recursive: true, mode: 0o710 });
  fs.writeFileSync(configFile, JSON.stringify({ 'deprecated-key-path': path.join(dir, 'key.json') }) + '\n');

  const ledgerNote = joinLedger(dir);
  installExitHook();
  const started = Date.now();
  const logFd = fs.openSync(logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(DOCKERD, [
      '--data-root', dataRoot, '--exec-root', execRoot, '--pidfile', pidfile, '-H', `unix://${socket}`,
      '--storage-driver', opts.driver, '--config-file', configFile,
      '--iptables=false', '--ip6tables=false', '--ip-masq=false', '--bridge=none',
      ...(opts.extraArgs ?? []),
    ], { stdio: ['ignore', logFd, logFd], env: { ...process.env, PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } });
  } finally {
    fs.closeSync(logFd);
  }
  let exit: StopReport['exit'] | null = null;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      if (child.pid !== undefined) liveDaemons.delete(child.pid);
      resolve();
    });
    child.once('error', () => resolve());
  });
  const pid = child.pid ?? -1;
  if (pid > 0) {
    liveDaemons.add(pid);
    setLedgerPid(dir, pid);
  }

  let report: Promise<StopReport> | null = null;
  const stop = (o: { timeoutMs?: number } = {}): Promise<StopReport> => {
    report ??= (async () => {
      const t0 = Date.now();
      let forced = false;
      if (exit === null && pid > 0) {
        try {
          process.kill(pid, 'SIGTERM');
        } catch {
          // already gone
        }
        const timeout = o.timeoutMs ?? 45_000;
        let timer: NodeJS.Timeout | undefined;
        const timedOut = await Promise.race([
          exited.then(() => false),
          new Promise<boolean>((r) => (timer = setTimeout(() => r(true), timeout))),
        ]);
        clearTimeout(timer); // a pending timer would keep the test worker alive
        if (timedOut) {
          forced = true;
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // gone
          }
          await exited;
        }
      }
      const killedStragglers = await terminate(processesMentioning([execRoot, dataRoot]), 10_000);
      const unmounted = unmountBelow([dataRoot, execRoot]);
      const host = leaveLedger(dir, pid);
      return {
        exit: exit ?? { code: null, signal: null }, forced, killedStragglers, unmounted,
        removedHostPaths: host.removed, keptHostPaths: host.kept, leftHostPaths: host.left,
        note: [ledgerNote, host.note].filter(Boolean).join('; '), ms: Date.now() - t0,
      };
    })();
    return report;
  };

  const d: Dockerd = {
    driver: opts.driver, dir, dataRoot, execRoot, socket, pidfile, logFile, pid,
    docker: async (args, o) => (await runClient(socket, clientConfig, args, o)).toString('utf8'),
    dockerBytes: (args, o) => runClient(socket, clientConfig, args, o),
    running: () => exit === null && pid > 0 && alive(pid),
    logTail: (n) => tail(logFile, n),
    stop,
  };

  const deadline = started + (opts.startTimeoutMs ?? 60_000);
  for (;;) {
    if (exit !== null || pid < 0) {
      const r = await stop();
      throw new Error(`dockerd (${opts.driver}) exited during start-up (${JSON.stringify(r.exit)}); unmounted ${r.unmounted.join(' ') || 'nothing'}:\n${tail(logFile)}`);
    }
    if (await ping(socket)) return d;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`dockerd (${opts.driver}) did not answer on ${socket} within ${opts.startTimeoutMs ?? 60_000} ms:\n${tail(logFile)}`);
    }
    await sleep(150);
  }
}
