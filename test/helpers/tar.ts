// Building test tars. `packTar` goes through tar-stream, a writer independent
// of ours, so reader tests are not checking our writer against itself;
// `rawTar` uses our encoder only where tar-stream cannot express the case
// (non-UTF-8 names).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import tarStream from 'tar-stream';
import { BLOCK, encodeHeader, headerSpace, type TarHeader } from '../../archive/tar-header.ts';

export interface Entry {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'character-device' | 'block-device' | 'fifo';
  content?: string | Buffer;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: Date;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  pax?: Record<string, string>;
}

export const T0 = new Date('2020-01-02T03:04:05Z');

/** A tar (as one Buffer) written by tar-stream. */
export async function packTar(entries: Entry[]): Promise<Buffer> {
  const pack = tarStream.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => chunks.push(c as Buffer));
  const done = new Promise<void>((resolve, reject) => {
    pack.on('end', () => resolve());
    pack.on('error', reject);
  });
  for (const e of entries) {
    const type = e.type ?? 'file';
    // always hand tar-stream a buffer: without one it waits for a body stream
    const body = e.content === undefined ? Buffer.alloc(0) : Buffer.isBuffer(e.content) ? e.content : Buffer.from(e.content);
    pack.entry({
      name: e.name, type, mode: e.mode ?? (type === 'directory' ? 0o755 : 0o644), uid: e.uid ?? 0, gid: e.gid ?? 0,
      mtime: e.mtime ?? T0, linkname: e.linkname, devmajor: e.devmajor, devminor: e.devminor, pax: e.pax,
      size: type === 'file' ? body.length : 0,
    }, body);
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** A tar written by our encoder (for names tar-stream would re-encode). */
export function rawTar(headers: (TarHeader & { body?: Buffer })[]): Buffer {
  const parts: Buffer[] = [];
  for (const h of headers) {
    const hb = Buffer.alloc(headerSpace(h));
    parts.push(hb.subarray(0, encodeHeader(h, hb, 0)));
    if (h.body) {
      parts.push(h.body, Buffer.alloc((512 - (h.body.length % 512)) % 512));
    }
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

/** Recompute the checksum of the header block at `at` in place (after a field was patched); a block past the end is left. */
export function fixChecksum(tar: Buffer, at = 0): void {
  if (at + BLOCK > tar.length) return;
  tar.fill(0x20, at + 148, at + 156);
  let sum = 0;
  for (let i = at; i < at + BLOCK; i++) sum += tar[i];
  tar.write(sum.toString(8).padStart(6, '0') + '\0 ', at + 148, 8, 'latin1');
}

export function header(name: string, over: Partial<TarHeader> = {}): TarHeader {
  return {
    name, type: 'file', mode: 0o644, uid: 0, gid: 0, size: 0, mtimeSec: T0.getTime() / 1000, mtimeNsec: 0,
    linkname: '', devmajor: 0, devminor: 0, xattrs: null, ...over,
  };
}

/** Stream a Buffer in small chunks, to exercise the parser's chunk boundaries. */
export function chunked(buf: Buffer, size = 777): Readable {
  let off = 0;
  return new Readable({
    read() {
      if (off >= buf.length) return void this.push(null);
      this.push(buf.subarray(off, off + size));
      off += size;
    },
  });
}

export async function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

/** A fresh temp dir, removed by the returned cleanup. */
export function tempDir(prefix = 'strata-test-'): { dir: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Entries of a tar as tar-stream reads them (an independent reader). */
export async function listTar(buf: Buffer): Promise<tarStream.Header[]> {
  const ex = tarStream.extract();
  const out: tarStream.Header[] = [];
  const done = new Promise<void>((resolve, reject) => {
    ex.on('entry', (h, s, next) => {
      out.push(h);
      s.on('end', next);
      s.resume();
    });
    ex.on('finish', () => resolve());
    ex.on('error', reject);
  });
  ex.end(buf);
  await done;
  return out;
}
