// strata migrate's command line: the dry-run plan (text and JSON), JSON
// progress events, the pre-flight refusals (a live daemon's pid file or
// socket, a target holding data), --delete-source, usage errors.
import test from 'ava';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { sampleStoreSpec, writeModernStore } from '../fixtures/modern-store.ts';
import { asRoot } from './helpers/require.ts';
import { strata } from './helpers/strata-cli.ts';
import { rootSnapshot } from './helpers/migrate-store.ts';

async function sampleRoot(t: { teardown(fn: () => void): void }, driver = 'vfs'): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-migrate-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const root = path.join(dir, 'root');
  await writeModernStore(root, driver, sampleStoreSpec());
  return root;
}

asRoot()('--dry-run prints the plan and writes nothing; --json gives it as JSON', async (t) => {
  const root = await sampleRoot(t);
  const before = rootSnapshot(root);
  const text = strata(['migrate', '--root', root, '--to', 'overlay2', '--dry-run']);
  t.is(text.code, 0, text.stderr);
  t.regex(text.stdout, /vfs → overlay2\n\s+layers\s+8 \(6 image, 1 init, 1 read-write\)\n\s+containers\s+1\n/);
  t.regex(text.stdout, /\n\s+inodes\s+\d+ needed, (\d+ free|no inode limit on this filesystem)\n/);
  const json = strata(['migrate', '--root', root, '--to', 'overlay2', '--dry-run', '--json']);
  t.is(json.code, 0, json.stderr);
  const plan = JSON.parse(json.stdout);
  t.like(plan, { root, from: 'vfs', to: 'overlay2', bytesToLink: 0 });
  t.is(plan.layers.length, 8);
  t.deepEqual(Object.keys(plan.layers[0]).sort(), ['bytes', 'chainId', 'diffId', 'id', 'inodes', 'kind', 'method', 'parent', 'tarSplit']);
  t.true(plan.layers.every((l: { kind: string; method: string }) => (l.kind === 'image') === (l.method === 'tar-split')));
  t.is(plan.containers.length, 1);
  t.true(plan.bytesToCopy > 0 && plan.free.bytes > 0 && plan.estimateSeconds >= 0);
  t.true(plan.free.inodes === null || plan.free.inodes > 0);
  // every layer costs inodes; the total is the layers' and the metadata's
  t.true(plan.layers.every((l: { inodes: number }) => l.inodes > 0) && plan.metadataInodes > 0);
  t.is(plan.inodes, plan.layers.reduce((s: number, l: { inodes: number }) => s + l.inodes, plan.metadataInodes));
  t.deepEqual(rootSnapshot(root), before);
});

asRoot()('--json: one event a line, the result last; --delete-source removes the source after the run', async (t) => {
  const root = await sampleRoot(t);
  const r = strata(['migrate', '--root', root, '--to', 'overlay2', '--json', '--delete-source']);
  t.is(r.code, 0, r.stderr);
  const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
  t.is(events[0].event, 'plan');
  t.is(events.filter((e) => e.event === 'layer').length, 8);
  t.deepEqual(events.filter((e) => e.event === 'switch').map((e) => e.step), ['home', 'image', 'containers']);
  t.like(events.at(-1), { event: 'result', action: 'migrated', layersMoved: 8 });
  for (const gone of ['vfs', 'image/vfs', '.strata-migrate']) t.false(fs.existsSync(path.join(root, gone)), gone);
  t.deepEqual(fs.readdirSync(path.join(root, 'image')), ['overlay2']);
});

asRoot()('pre-flight: a target home holding data, a live dockerd pid file, an unknown driver — one line, exit 1, nothing written', async (t) => {
  const root = await sampleRoot(t);
  const before = rootSnapshot(root);
  const unknown = strata(['migrate', '--root', root, '--to', 'zfs2']);
  t.is(unknown.code, 1);
  t.regex(unknown.stderr, /^strata: --to zfs2: no such driver .*\n$/);
  fs.writeFileSync(path.join(root, 'docker.pid'), String(process.pid));
  const busy = strata(['migrate', '--root', root, '--to', 'overlay2']);
  t.is(busy.code, 1);
  t.regex(busy.stderr, /^strata: .*docker\.pid: dockerd \(pid \d+\) is running on this root; stop it first\n$/);
  fs.rmSync(path.join(root, 'docker.pid'));
  fs.mkdirSync(path.join(root, 'overlay2', 'x'), { recursive: true });
  const taken = strata(['migrate', '--root', root, '--to', 'overlay2']);
  t.is(taken.code, 1);
  t.regex(taken.stderr, /^strata: .*overlay2: already holds data; .*\n$/);
  fs.rmSync(path.join(root, 'overlay2'), { recursive: true });
  const same = strata(['migrate', '--root', root, '--to', 'vfs']);
  t.is(same.code, 1);
  t.regex(same.stderr, /already on vfs/);
  t.deepEqual(rootSnapshot(root), before);
});

/** A socket file left by a daemon killed with SIGKILL: nobody listens behind it (a connect gets ECONNREFUSED). */
async function staleSocket(file: string): Promise<void> {
  const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(file)}, () => process.stdout.write('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = once(child, 'exit');
  const up = await Promise.race([once(child.stdout!, 'data').then(() => true), exited.then(() => false)]);
  if (!up) throw new Error('the socket helper exited before listening');
  child.kill('SIGKILL');
  await exited;
}

asRoot()('pre-flight: a daemon answering on <root>/../docker.sock refuses, also with its backlog full; a stale socket file does not', async (t) => {
  const root = await sampleRoot(t);
  const before = rootSnapshot(root);
  const sock = path.join(path.dirname(root), 'docker.sock');
  const refusal = `strata: ${sock}: a daemon answers on this socket (dockerd on ${root}?); stop it first\n`;

  // stale: pre-flight goes past the socket to the next check (a target home holding data)
  await staleSocket(sock);
  t.true(fs.lstatSync(sock).isSocket());
  fs.mkdirSync(path.join(root, 'overlay2', 'x'), { recursive: true });
  const stale = strata(['migrate', '--root', root, '--to', 'overlay2']);
  t.is(stale.code, 1);
  t.regex(stale.stderr, /^strata: .*overlay2: already holds data; .*\n$/);
  fs.rmSync(path.join(root, 'overlay2'), { recursive: true });
  fs.rmSync(sock);

  // live: the test's event loop is blocked in spawnSync, so the kernel queues strata's connect (as for a busy dockerd)
  const server = net.createServer((c) => c.destroy());
  t.teardown(() => server.close());
  server.listen({ path: sock, backlog: 1 });
  await once(server, 'listening');
  const live = strata(['migrate', '--root', root, '--to', 'overlay2']);
  t.is(live.code, 1);
  t.is(live.stderr, refusal);

  // backlog full: two connects queued (backlog 1), a third gets EAGAIN — as does strata's, which must not block on it
  const clients = [0, 1, 2].map(() => net.connect(sock));
  t.teardown(() => clients.forEach((c) => c.destroy()));
  const errors = clients.map((c) => new Promise<string | null>((resolve) => {
    c.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    c.once('connect', () => resolve(null));
  }));
  const full = strata(['migrate', '--root', root, '--to', 'overlay2']);
  t.is((await errors[2]), 'EAGAIN', 'the backlog was full while strata probed it');
  t.is(full.code, 1);
  t.is(full.stderr, refusal);
  t.deepEqual(rootSnapshot(root), before);
});

test('usage errors exit 2 with one line', (t) => {
  for (const args of [['--to', 'overlay2'], ['--root', '/nonexistent'], ['--root', '/x', '--to', 'vfs', '--resume', '--rollback'], ['--root', '/x', '--rollback', '--delete-source'], ['--root', '/x', '--to', 'vfs', '--bogus']]) {
    const r = strata(['migrate', ...args]);
    t.is(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
});

test('a root without a store: one line naming it, exit 1', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-migrate-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const r = strata(['migrate', '--root', dir, '--to', 'overlay2']);
  t.is(r.code, 1);
  t.is(r.stderr, `strata: ${dir}: holds no image/<driver>/ store to migrate\n`);
});
