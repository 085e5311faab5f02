// Is a daemon answering on the root's API socket? dockerd's only sign for a
// root other than the default is the socket beside it (`--host` aside): a
// live one accepts a connection, a stale file left by a killed daemon refuses
// it (ECONNREFUSED) and says nothing.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';

const DEFAULT_ROOT = '/var/lib/docker';

/** The sockets a daemon on `root` listens on by default: `<root>/../docker.sock`, and /var/run/docker.sock for the default root. */
export function daemonSockets(root: string): string[] {
  const out = [path.join(path.dirname(root), 'docker.sock')];
  let real = root;
  try {
    real = fs.realpathSync(root);
  } catch {
    // a root that does not resolve is refused later, naming it
  }
  if (root === DEFAULT_ROOT || real === DEFAULT_ROOT) out.push('/var/run/docker.sock', '/run/docker.sock');
  return [...new Set(out)];
}

export type SocketAnswer = 'listening' | 'unknown' | 'nobody';

/**
 * Connect to the unix socket `file` and hang up. libuv's connect is
 * non-blocking, and a unix connect completes at once: accepted (or queued)
 * means a listener; EAGAIN means its backlog is full, so a listener too;
 * ECONNREFUSED / ENOENT / ENOTSOCK: nobody. EACCES: a socket we may not
 * reach, so whether a daemon is behind it cannot be told.
 */
export function probeSocket(file: string): Promise<SocketAnswer> {
  return new Promise((resolve) => {
    const s = net.connect(file);
    s.once('connect', () => {
      s.destroy();
      resolve('listening');
    });
    s.once('error', (e: NodeJS.ErrnoException) => {
      s.destroy();
      resolve(e.code === 'EAGAIN' ? 'listening' : e.code === 'EACCES' || e.code === 'EPERM' ? 'unknown' : 'nobody');
    });
  });
}

/** One line refusing `root` when a daemon answers on one of its sockets, else null. */
export async function socketRefusal(root: string): Promise<string | null> {
  for (const sock of daemonSockets(root)) {
    const a = await probeSocket(sock);
    if (a === 'listening') return `${sock}: a daemon answers on this socket (dockerd on ${root}?); stop it first`;
    if (a === 'unknown') return `${sock}: cannot tell whether a daemon listens here (permission denied); stop it or run as root`;
  }
  return null;
}
