// Run a command in a new user + mount namespace, as rootless Docker's daemon
// runs: uid/gid 0 inside maps to 0 outside, over all ids but the last one, so
// the process is root with chown to any id, but /proc/self/uid_map is not the
// identity map (RunningInUserNS is true), trusted.* xattrs and device nodes are
// refused, and overlayfs wants `userxattr`.
//
// unshare(1) creates the namespaces and waits (a `read` on its stdin) until we,
// root in the initial namespace, have written its uid_map and gid_map ourselves:
// unshare's own --map-users needs newuidmap and /etc/subuid entries. Its mounts
// are private and vanish with the namespace when the last process in it exits.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';

export interface NsResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

const MAP = '0 0 4294967294\n';

/** Run `argv` in a fresh user + mount namespace; resolves when it exits (killed, whole group, at `timeoutMs`). */
export async function runInUserNS(argv: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs: number }): Promise<NsResult> {
  const child = spawn('unshare', ['--user', '--mount', '--propagation', 'private', '--', 'sh', '-c', 'read go && exec "$@"', 'sh', ...argv], {
    cwd: opts.cwd, env: opts.env, stdio: ['pipe', 'pipe', 'pipe'], detached: true,
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal }));
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  }, opts.timeoutMs);
  try {
    const mine = fs.readlinkSync('/proc/self/ns/user');
    const deadline = Date.now() + 10_000;
    for (;;) {
      let theirs = mine;
      try {
        theirs = fs.readlinkSync(`/proc/${child.pid}/ns/user`);
      } catch {
        // not started yet, or already failed (then `exited` says why)
      }
      if (theirs !== mine) break;
      if (child.exitCode !== null || Date.now() > deadline) {
        const r = await exited;
        throw new Error(`unshare did not enter a user namespace (exit ${r.code}): ${stderr.trim()}`);
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    fs.writeFileSync(`/proc/${child.pid}/uid_map`, MAP);
    fs.writeFileSync(`/proc/${child.pid}/gid_map`, MAP);
    child.stdin.end('go\n');
    const r = await exited;
    return { ...r, stdout, stderr, timedOut };
  } finally {
    clearTimeout(timer);
  }
}

/** Counts from a TAP stream (ava --tap): `ok`, `not ok`, and `# SKIP` lines. */
export function tapCounts(tap: string): { pass: number; fail: number; skip: number; failing: string[]; titles: string[] } {
  let pass = 0;
  let fail = 0;
  let skip = 0;
  const failing: string[] = [];
  const titles: string[] = [];
  for (const line of tap.split('\n')) {
    const m = /^(ok|not ok) \d+ - (.*)$/.exec(line);
    if (!m) continue;
    const skipped = /# SKIP/.test(m[2]);
    titles.push(m[2]);
    if (skipped) skip++;
    else if (m[1] === 'ok') pass++;
    else {
      fail++;
      failing.push(m[2]);
    }
  }
  return { pass, fail, skip, failing, titles };
}
