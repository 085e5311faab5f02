// A real containerd (Debian's /usr/bin/containerd) on its own root, state dir
// and socket, for tests: never the default socket or /run/containerd (dockerd
// oracle tests run beside us). Started by path, stopped by its PID, and its
// temp dir removed, also when the test fails. A root given by the caller (on
// a loop-mounted btrfs, for the btrfs snapshotter) stays the caller's to remove.
// `gc: false` holds its garbage collector off (no startup collection, no
// thresholds reached), so what the test made and nothing holds stays until
// the test has looked: a collection otherwise runs when it pleases.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';

export const containerdBin = '/usr/bin/containerd';
export const ctrBin = '/usr/bin/ctr';

export interface Containerd {
  dir: string;
  root: string;
  address: string;
  /** run ctr against this daemon, returning its stdout */
  ctr(...args: string[]): string;
  stop(): Promise<void>;
  /** stop (if running) and remove everything it made */
  cleanup(): Promise<void>;
}

export async function startContainerd(opts: { root?: string; gc?: boolean } = {}): Promise<Containerd> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-containerd-'));
  const root = opts.root ?? path.join(dir, 'root');
  const address = path.join(dir, 'c.sock');
  const config = path.join(dir, 'config.toml');
  fs.writeFileSync(
    config,
    [
      'version = 2',
      `root = ${JSON.stringify(root)}`,
      `state = ${JSON.stringify(path.join(dir, 'state'))}`,
      '[grpc]',
      `address = ${JSON.stringify(address)}`,
      '[ttrpc]',
      `address = ${JSON.stringify(address + '.ttrpc')}`,
      '[debug]',
      'address = ""',
      '[metrics]',
      'address = ""',
      ...(opts.gc === false
        ? ['[plugins."io.containerd.gc.v1.scheduler"]', 'deletion_threshold = 1000000', 'mutation_threshold = 1000000', 'startup_delay = "24h"']
        : []),
      '',
    ].join('\n'),
  );
  const child = spawn(containerdBin, ['--config', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const log: string[] = [];
  try {
    await booted(child, log);
  } catch (e) {
    child.kill('SIGKILL');
    await exited;
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  let running = true;
  const stop = async () => {
    if (!running) return;
    running = false;
    child.kill('SIGTERM');
    await exited;
  };
  return {
    dir,
    root,
    address,
    ctr: (...args) => execFileSync(ctrBin, ['--address', address, ...args], { encoding: 'utf8' }),
    stop,
    cleanup: async () => {
      await stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

// containerd logs this line once every service (and the socket) is up.
function booted(child: ChildProcess, log: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stderr! });
    lines.on('line', (line) => {
      log.push(line);
      if (line.includes('containerd successfully booted')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`containerd exited ${code} before booting: ${log.slice(-3).join(' | ')}`)));
  });
}
