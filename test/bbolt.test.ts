// The bbolt reader on files real bbolt wrote (through containerd): many keys
// (branch pages), values larger than a page (overflow pages), nested buckets
// and inline buckets; damaged files named with page and offset.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BboltError, BboltFile } from '../layerstore/bbolt.ts';
import { hasTool, isRoot, when } from './helpers/require.ts';
import { startContainerd } from '../fixtures/containerd.ts';

const ok = fs.existsSync('/usr/bin/containerd') && hasTool('ctr');
const label = (i: number) => `label${String(i).padStart(4, '0')}`;

when(ok && isRoot, 'root and containerd + ctr (apt: containerd)')('bbolt reads a meta.db containerd wrote: branch, overflow, nested and inline buckets', async (t) => {
  const c = await startContainerd();
  t.teardown(() => c.cleanup());
  const small = Array.from({ length: 300 }, (_, i) => `${label(i)}=${String(i).padStart(200, '0')}`);
  c.ctr('namespaces', 'create', 'big', ...small);
  const large = Array.from({ length: 5 }, (_, i) => `huge${i}=${String(i).repeat(3900)}`);
  c.ctr('namespaces', 'create', 'huge', ...large);
  c.ctr('namespaces', 'create', 'small', 'a=b');
  c.ctr('--namespace', 'big', 'leases', 'create', '--id', 'l1');
  await c.stop();

  const file = path.join(c.root, 'io.containerd.metadata.v1.bolt', 'meta.db');
  const db = BboltFile.open(file);
  t.teardown(() => db.close());
  t.deepEqual(db.bucket('v1')!.buckets(), ['big', 'huge', 'small']);
  const labels = [...db.bucket('v1', 'big', 'labels')!.entries()];
  t.is(labels.length, 300);
  t.deepEqual(labels.map((e) => `${e.key}=${e.value}`), small);
  t.is(db.bucket('v1', 'big', 'labels')!.get(label(150))!.toString(), String(150).padStart(200, '0'));
  t.deepEqual([...db.bucket('v1', 'huge', 'labels')!.entries()].map((e) => `${e.key}=${e.value}`), large);
  t.deepEqual([...db.bucket('v1', 'small', 'labels')!.entries()].map((e) => `${e.key}=${e.value}`), ['a=b']);
  t.deepEqual(db.bucket('v1', 'big', 'leases')!.buckets(), ['l1']);
  t.is(db.bucket('v1', 'nope'), null);

  // damage: both metas' checksums broken, then a leaf page's header
  const copy = path.join(c.dir, 'damaged.db');
  const bytes = fs.readFileSync(file);
  const metas = Buffer.from(bytes);
  metas[16 + 20] ^= 0xff;
  metas[db.pageSize + 16 + 20] ^= 0xff;
  fs.writeFileSync(copy, metas);
  t.throws(() => BboltFile.open(copy), { instanceOf: BboltError, message: /meta page 0 at offset 0: checksum mismatch/ });
  const pages = Buffer.from(bytes);
  for (let p = 2; p * db.pageSize < pages.length; p++) pages.writeBigUInt64LE(0xdeadn, p * db.pageSize);
  fs.writeFileSync(copy, pages);
  const broken = BboltFile.open(copy);
  t.teardown(() => broken.close());
  t.throws(() => broken.bucket('v1'), { instanceOf: BboltError, message: /page \d+ at offset \d+: header names page 57005/ });
});
