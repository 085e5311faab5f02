// The embedded sample image: parses with tar-stream (and GNU tar), holds the entries its
// description promises, and is byte-identical on every build.
import test from 'ava';
import { createHash } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, lstatSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { extract, type Header } from 'tar-stream';
import {
  sampleLayers, writeSampleLayers, CAPABILITY, NS_MTIME_PATH, NON_ASCII_PATH, LONG_PATH, LONG_NAME_PATH, REPLACED_DIR,
} from '../fixtures/sample-image.ts';
import { lgetxattr } from '../sys/syscalls.ts';
import { asRoot, when } from './helpers/require.ts';

interface Parsed {
  header: Header & { pax?: Record<string, string> | null };
  sha256: string;
  size: number;
}

async function parse(tar: NodeJS.ReadableStream): Promise<Map<string, Parsed>> {
  const out = new Map<string, Parsed>();
  const ex = extract();
  const done = (async () => {
    for await (const entry of ex) {
      const hash = createHash('sha256');
      let size = 0;
      for await (const chunk of entry as AsyncIterable<Buffer>) {
        hash.update(chunk);
        size += chunk.length;
      }
      out.set(entry.header.name.replace(/\/$/, ''), { header: entry.header as Parsed['header'], sha256: hash.digest('hex'), size });
    }
  })();
  tar.pipe(ex as unknown as NodeJS.WritableStream);
  await done;
  return out;
}

async function sha256(tar: NodeJS.ReadableStream): Promise<string> {
  const h = createHash('sha256');
  for await (const c of tar as AsyncIterable<Buffer>) h.update(c);
  return h.digest('hex');
}

const layers = sampleLayers();

test('three layers, bottom first, with names and descriptions', (t) => {
  t.deepEqual(layers.map((l) => l.name), ['base', 'edit', 'replace']);
  for (const l of layers) t.true(l.description.length > 10, l.name);
});

test('layer 1 (base) holds every entry kind the description promises', async (t) => {
  const e = await parse(layers[0].tar());
  const files = [...e.values()].filter((p) => p.header.type === 'file');
  t.true(files.length >= 200, `a few hundred files (got ${files.length})`);
  for (const d of ['etc', 'usr/bin', 'usr/share/doc']) t.is(e.get(d)?.header.type, 'directory', d);
  // varied sizes, including an empty file and one of a few MB
  const sizes = files.map((f) => f.size);
  t.true(sizes.includes(0), 'an empty file');
  t.true(Math.max(...sizes) >= 2 * 1024 * 1024 && Math.max(...sizes) < 16 * 1024 * 1024, 'one file of a few MB');
  t.true(new Set(sizes).size > 150, 'sizes vary');
  // the size in the header matches the body
  for (const f of files) t.is(f.header.size, f.size, f.header.name);

  t.like(e.get('usr/bin/sh')?.header, { type: 'symlink', linkname: 'dash' });
  t.is(e.get('usr/bin/dash')?.header.type, 'file');
  t.like(e.get('usr/bin/gunzip')?.header, { type: 'link', linkname: 'usr/bin/gzip' });
  t.is(e.get('usr/bin/gzip')?.header.type, 'file');
  t.is(e.get('usr/bin/su')?.header.mode, 0o4755, 'setuid');
  t.is(e.get('usr/bin/dash')?.header.mode, 0o755, 'executable');
  t.like(e.get('run/initctl')?.header, { type: 'fifo', mode: 0o600 });
  t.like(e.get('home/user')?.header, { type: 'directory', uid: 1000, gid: 1000 });
  t.is(e.get('tmp')?.header.mode, 0o1777, 'sticky /tmp');

  const cap = e.get('usr/bin/ping')?.header.pax?.['SCHILY.xattr.security.capability'];
  t.truthy(cap, 'PAX xattr record');
  t.deepEqual(Buffer.from(cap ?? '', 'latin1'), CAPABILITY);

  t.is(e.get(NS_MTIME_PATH)?.header.pax?.mtime, '1700000000.123456789', 'ns mtime through PAX');
  // (tar-stream's reader applies only PAX path/linkpath; its header.mtime is the ustar seconds)
  t.is(e.get(NS_MTIME_PATH)?.header.mtime.getTime(), 1_700_000_000_000, 'ustar mtime field in seconds');
  t.truthy(e.get(NON_ASCII_PATH), 'non-ASCII name');
  t.not(Buffer.byteLength(NON_ASCII_PATH), NON_ASCII_PATH.length);
  t.truthy(e.get(LONG_PATH), 'long path (ustar prefix)');
  t.true(Buffer.byteLength(LONG_PATH) > 100);
  t.truthy(e.get(LONG_NAME_PATH), 'long name (PAX path)');
  t.true(Buffer.byteLength(LONG_NAME_PATH.split('/').pop() ?? '') > 100);
  t.truthy(e.get('etc/motd'), 'the file layer 2 deletes');
  t.truthy(e.get(`${REPLACED_DIR}/copyright`), 'content layer 3 hides');
  t.falsy([...e.keys()].find((k) => k.split('/').pop()?.startsWith('.wh.')), 'no whiteouts in the base');
});

test('layer 2 (edit) deletes etc/motd and modifies etc/passwd', async (t) => {
  const base = await parse(layers[0].tar());
  const e = await parse(layers[1].tar());
  t.like(e.get('etc/.wh.motd')?.header, { type: 'file', size: 0 });
  const passwd = e.get('etc/passwd');
  t.is(passwd?.header.type, 'file');
  t.not(passwd?.sha256, base.get('etc/passwd')?.sha256, 'new content');
  t.true((passwd?.header.mtime.getTime() ?? 0) > (base.get('etc/passwd')?.header.mtime.getTime() ?? 0), 'newer mtime');
});

test('layer 3 (replace) makes a directory opaque and fills it anew', async (t) => {
  const base = await parse(layers[0].tar());
  const e = await parse(layers[2].tar());
  const names = [...e.keys()];
  t.is(e.get(REPLACED_DIR)?.header.type, 'directory');
  t.like(e.get(`${REPLACED_DIR}/.wh..wh..opq`)?.header, { type: 'file', size: 0 });
  t.true(names.indexOf(REPLACED_DIR) < names.indexOf(`${REPLACED_DIR}/.wh..wh..opq`), 'dir header before its marker');
  const fresh = names.filter((n) => n.startsWith(REPLACED_DIR + '/') && !n.includes('.wh.'));
  t.true(fresh.length >= 2, 'new content');
  t.not(e.get(`${REPLACED_DIR}/copyright`)?.sha256, base.get(`${REPLACED_DIR}/copyright`)?.sha256);
  const hidden = [...base.keys()].filter((n) => n.startsWith(REPLACED_DIR + '/') && !e.has(n));
  t.true(hidden.length >= 1, 'some base content is only hidden by the opaque marker');
});

test('deterministic: every build is byte-identical, and the written files match the streams', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'strata-sample-'));
  try {
    const written = await writeSampleLayers(dir);
    for (const [i, l] of layers.entries()) {
      const a = await sha256(l.tar());
      t.is(await sha256(sampleLayers()[i].tar()), a, l.name);
      t.is(written[i].diffId, `sha256:${a}`, l.name);
      t.is(statSync(written[i].path).size, written[i].bytes);
      t.is(written[i].bytes % 512, 0, 'whole tar blocks');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const hasTar = spawnSync('tar', ['--version']).stdout?.toString().includes('GNU tar') ?? false;

when(hasTar, 'GNU tar')('GNU tar lists the same entries tar-stream reads', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'strata-sample-'));
  try {
    const written = await writeSampleLayers(dir);
    for (const [i, l] of layers.entries()) {
      const gnu = execFileSync('tar', ['-tf', written[i].path]).toString('utf8').split('\n').filter(Boolean).map((n) => n.replace(/\/$/, ''));
      t.deepEqual(gnu, [...(await parse(l.tar())).keys()], l.name);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

asRoot()('GNU tar extracts the capability xattr and the ns mtime as written', async (t) => {
  t.true(hasTar, 'GNU tar');
  const dir = mkdtempSync(join(tmpdir(), 'strata-sample-'));
  try {
    const [base] = await writeSampleLayers(join(dir, 'tars'));
    execFileSync('mkdir', [join(dir, 'root')]);
    execFileSync('tar', ['--xattrs', '--xattrs-include=*', '-xf', base.path, '-C', join(dir, 'root')]);
    t.deepEqual(lgetxattr(join(dir, 'root/usr/bin/ping'), 'security.capability'), CAPABILITY);
    t.is(lstatSync(join(dir, 'root', NS_MTIME_PATH), { bigint: true }).mtimeNs, 1_700_000_000_123_456_789n);
    t.is(lstatSync(join(dir, 'root/home/user')).uid, 1000);
    t.is(lstatSync(join(dir, 'root/usr/bin/gunzip')).ino, lstatSync(join(dir, 'root/usr/bin/gzip')).ino);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
