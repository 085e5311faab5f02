// tar-split (github.com/vbatts/tar-split): the metadata that lets Docker
// rebuild a layer's exact tar from the files on disk, and so check its DiffID.
//
// Format: gzip'd JSON values, one per line, each an Entry:
//   {"type":2,"payload":"<base64>","position":N}     raw tar bytes: headers, PAX
//                                                   records, padding, end blocks
//   {"type":1,"name":"etc/passwd","size":N,"payload":"<base64 CRC-64/ISO>","position":N}
//                                                   one per tar header; the body
//                                                   (size > 0) comes from disk
// Non-UTF-8 names are carried base64 in "name_raw" instead of "name"; a size
// of 0 is omitted and the payload of an empty file is null.
//
// Reassembly (asm.WriteOutputTarStream) writes segments verbatim and, for
// file entries with size > 0, the file's bytes read by name from the layer's
// directory, checking each file's CRC-64. sha256 of the result = the DiffID.
//
// Here:
//   readTarSplit        stream the entries of a tar-split file (read-only)
//   assembleTar         reassemble the tar as a stream of chunks, reporting each
//                       missing, short, long or corrupted file and going on;
//                       the bytes such a file lacks are not made up (the stream
//                       is no longer the layer's, and a hostile tar-split may
//                       claim a petabyte for a file that is not there)
//   readCheckedTarSplit the entries, each file entry checked against the tar
//                       header its segments hold (name and size): what every
//                       reassembly reads, so a lying entry is refused unread
//   digestLayer         DiffID and size of the reassembled tar
//   tarSplitMembers     the tar headers (+ CRC) alone, no file read at all
//   TarSplitRecorder    write tar-split for a tar passing through (the store
//                       writer, writer.ts, as moby's layer store records a layer it applies)
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as zlib from 'node:zlib';
import { ScopedResolver, cleanRel } from '../archive/scope.ts';
import { BLOCK, TarFormatError, decodeRaw, isZeroBlock, parsePax, type TarHeader } from '../archive/tar-header.ts';
import { TarParser } from '../archive/tar-reader.ts';
import { displayPath, fsPath, rawPath } from '../archive/types.ts';
import { Crc64 } from './crc64.ts';
import { capText, describeFsError, openReadOnly, openRegular } from '../sys/read-only-files.ts';

export const SEGMENT_TYPE = 2;
export const FILE_TYPE = 1;

export type TarSplitEntry =
  | { type: 'segment'; payload: Buffer; position: number }
  | { type: 'file'; name: string; size: number; crc: Buffer | null; position: number };

/** A tar-split file that cannot be decoded (bad gzip, bad JSON, unknown entry type). */
export class TarSplitFormatError extends Error {
  constructor(readonly file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = 'TarSplitFormatError';
  }
}

// ---- reading ------------------------------------------------------------------

/** One JSON line → entry (names become raw byte strings). */
export function parseTarSplitLine(line: string): TarSplitEntry {
  const v = JSON.parse(line) as Record<string, unknown>;
  const position = typeof v.position === 'number' ? v.position : -1;
  const payload = typeof v.payload === 'string' ? Buffer.from(v.payload, 'base64') : null;
  if (v.type === SEGMENT_TYPE) return { type: 'segment', payload: payload ?? Buffer.alloc(0), position };
  if (v.type === FILE_TYPE) {
    let name: string;
    if (typeof v.name_raw === 'string' && v.name_raw !== '') name = Buffer.from(v.name_raw, 'base64').toString('latin1');
    else if (typeof v.name === 'string') name = rawPath(v.name);
    else throw new Error('file entry without a name');
    const size = typeof v.size === 'number' ? v.size : 0;
    if (!Number.isSafeInteger(size) || size < 0) throw new Error(`file entry "${displayPath(name)}" has size ${String(v.size)}`);
    return { type: 'file', name, size, crc: payload, position };
  }
  throw new Error(`unknown entry type ${JSON.stringify(v.type)}`);
}

/**
 * Longest tar-split line read (bytes of JSON). The longest lines tar-split
 * writes are segments holding a PAX header, which Go's archive/tar caps at
 * 1 MiB (base64: 1.4 MB), and the 1 MiB segments of bytes after the end
 * blocks: 4 MiB is three times that.
 */
export const TAR_SPLIT_LINE_CAP = 4 << 20;

/**
 * The entries of a gzip'd tar-split file, in order, streamed: memory stays at
 * one decompressed chunk plus one line (at most `lineCap` bytes), and each
 * byte is looked at once, however long the lines. Opened read-only through
 * openRegular (a FIFO or a device is refused unread); errors (not a regular
 * file, gzip, JSON, entry, a line over the cap) are TarSplitFormatErrors
 * naming the file and, for lines, the line number.
 */
export async function* readTarSplit(file: string, lineCap = TAR_SPLIT_LINE_CAP): AsyncGenerator<TarSplitEntry> {
  let fd: number;
  try {
    fd = openRegular(file).fd;
  } catch (e) {
    throw new TarSplitFormatError(file, describeFsError(e));
  }
  const input = fs.createReadStream('', { fd, highWaterMark: 1 << 20 });
  const gunzip = zlib.createGunzip();
  input.on('error', (e) => gunzip.destroy(e));
  input.pipe(gunzip);
  // the line being read: its parts (chunks are not copied until the line ends)
  let parts: Buffer[] = [];
  let partLen = 0;
  let lineNo = 0;
  const parse = (line: Buffer): TarSplitEntry => {
    try {
      return parseTarSplitLine(line.toString('utf8'));
    } catch (e) {
      throw new TarSplitFormatError(file, `line ${lineNo}: ${(e as Error).message}`);
    }
  };
  const tooLong = () => new TarSplitFormatError(file, `line ${lineNo + 1}: longer than the ${capText(lineCap)} cap for a tar-split line`);
  const take = (piece: Buffer): Buffer => {
    const line = parts.length ? Buffer.concat([...parts, piece], partLen + piece.length) : piece;
    parts = [];
    partLen = 0;
    return line;
  };
  const blank = (b: Buffer) => b.every((c) => c === 0x20 || c === 0x09 || c === 0x0d);
  try {
    for await (const chunk of gunzip) {
      const c = chunk as Buffer;
      let from = 0;
      for (let nl = c.indexOf(0x0a, from); nl >= 0; nl = c.indexOf(0x0a, from)) {
        if (partLen + nl - from > lineCap) throw tooLong();
        const line = take(c.subarray(from, nl));
        from = nl + 1;
        lineNo++;
        if (!blank(line)) yield parse(line);
      }
      if (from < c.length) {
        partLen += c.length - from;
        if (partLen > lineCap) throw tooLong();
        parts.push(c.subarray(from));
      }
    }
  } catch (e) {
    if (e instanceof TarSplitFormatError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    const what = code === 'Z_BUF_ERROR' ? 'is truncated (gzip stream ends early)' : `cannot be decompressed (${(e as Error).message})`;
    throw new TarSplitFormatError(file, what);
  } finally {
    input.destroy();
    gunzip.destroy();
  }
  lineNo++;
  const last = take(Buffer.alloc(0));
  if (!blank(last)) yield parse(last);
}

// ---- reassembly ---------------------------------------------------------------

/** Where the bodies of file entries are read from. */
export interface FileGetter {
  /** Open the file named by a tar entry (raw byte string) read-only; throws an fs error. */
  open(name: string): number;
  /** The on-disk path of that name, for messages. */
  where(name: string): string;
}

/**
 * Files below one directory (moby storage.NewPathFileGetter), resolved as if
 * chrooted there: symlinks in the path are followed inside the directory only,
 * the file itself must not be a symlink. Never creates anything.
 */
export class DirFileGetter implements FileGetter {
  private readonly resolver: ScopedResolver;
  constructor(readonly root: string) {
    this.resolver = new ScopedResolver(rawPath(root).replace(/\/+$/, ''));
  }

  private resolve(name: string): string {
    const rel = cleanRel(name);
    if (rel === null || rel === '') throw Object.assign(new Error(`entry name ${JSON.stringify(displayPath(name))} leaves the layer`), { code: 'EINVAL' });
    const r = this.resolver.resolveEntry(rel, false);
    if (r === null) throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
    return this.resolver.abs(r.rel);
  }

  open(name: string): number {
    // O_NONBLOCK: a FIFO in the layer must not block the open (assembleTar then refuses it by fstat)
    return openReadOnly(fsPath(this.resolve(name)), fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  }

  where(name: string): string {
    const rel = cleanRel(name) ?? name;
    return `${this.root.replace(/\/+$/, '')}/${displayPath(rel)}`;
  }
}

export type ProblemSink = (path: string, message: string) => void;

const CHUNK = 1 << 20;


/**
 * The layer tar rebuilt from tar-split entries and the files `getter` finds,
 * as chunks (each valid until the next one is requested). Every file whose
 * body cannot be reproduced is reported through `problem` — missing, a
 * symlink or directory, shorter or longer than recorded, CRC-64 mismatch —
 * and the stream goes on without the bytes it lacks (none are made up: the
 * stream is no longer the layer's either way, and its digest then differs
 * from the DiffID, which the caller reports); a long body is cut at the
 * recorded size.
 * Entries of size 0 are never read from disk, as in tar-split.
 */
export async function* assembleTar(entries: AsyncIterable<TarSplitEntry>, getter: FileGetter, problem: ProblemSink): AsyncGenerator<Buffer> {
  const seen = new Set<string>();
  for await (const e of entries) {
    if (e.type === 'segment') {
      if (e.payload.length) yield e.payload;
      continue;
    }
    const key = cleanRel(e.name) ?? e.name;
    if (seen.has(key)) problem(getter.where(e.name), 'listed twice in tar-split (tar-split refuses duplicate paths)');
    seen.add(key);
    if (e.size === 0) continue;
    let fd: number;
    try {
      fd = getter.open(e.name);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const why = code === 'ENOENT' ? 'is missing' : code === 'ELOOP' ? 'is a symlink, expected a regular file'
        : code === 'EISDIR' ? 'is a directory, expected a regular file' : `cannot be read (${code ?? (err as Error).message})`;
      problem(getter.where(e.name), `${why} (layer file of ${e.size} bytes)`);
      continue;
    }
    const crc = new Crc64();
    let left = e.size;
    let extra = 0;
    try {
      const st = fs.fstatSync(fd);
      if (!st.isFile()) {
        problem(getter.where(e.name), `is not a regular file (layer file of ${e.size} bytes)`);
        continue;
      }
      while (left > 0) {
        const buf = Buffer.allocUnsafe(Math.min(left, CHUNK));
        const n = fs.readSync(fd, buf, 0, buf.length, null);
        if (n === 0) break;
        const chunk = buf.subarray(0, n);
        crc.update(chunk);
        left -= n;
        yield chunk;
      }
      if (left === 0) {
        const probe = Buffer.allocUnsafe(1);
        const n = fs.readSync(fd, probe, 0, 1, null);
        if (n > 0) extra = Math.max(1, st.size - e.size);
      }
    } catch (err) {
      problem(getter.where(e.name), `cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    } finally {
      fs.closeSync(fd);
    }
    if (left > 0) {
      problem(getter.where(e.name), `is ${e.size - left} bytes, tar-split records ${e.size}`);
    } else if (extra > 0) {
      problem(getter.where(e.name), `is longer than the ${e.size} bytes tar-split records`);
    } else if (e.crc !== null && !crc.digest().equals(e.crc)) {
      problem(getter.where(e.name), `content differs from the layer (CRC-64 ${crc.digest().toString('hex')}, tar-split records ${e.crc.toString('hex')})`);
    }
  }
}

export interface LayerDigest {
  /** "sha256:<hex>" of the reassembled tar */
  diffId: string;
  /** bytes in the reassembled tar */
  tarSize: number;
  /** file entries with a body read from disk */
  filesRead: number;
}

/** DiffID of a layer: sha256 of the tar reassembled from `tarSplitFile` and `getter`'s files. */
export async function digestLayer(tarSplitFile: string, getter: FileGetter, problem: ProblemSink): Promise<LayerDigest> {
  const h = createHash('sha256');
  let tarSize = 0;
  let filesRead = 0;
  const counted = async function* (): AsyncGenerator<TarSplitEntry> {
    for await (const e of readCheckedTarSplit(tarSplitFile)) {
      if (e.type === 'file' && e.size > 0) filesRead++;
      yield e;
    }
  };
  for await (const chunk of assembleTar(counted(), getter, problem)) {
    h.update(chunk);
    tarSize += chunk.length;
  }
  return { diffId: `sha256:${h.digest('hex')}`, tarSize, filesRead };
}

// ---- entries checked against their headers ----------------------------------

interface Paired {
  entry: TarSplitEntry;
  /** a file entry's tar header (null for segments and for a PAX global header's entry) */
  header: TarHeader | null;
}

/**
 * `file`'s entries, each file entry paired with the tar header its segments
 * hold and checked against it: the same name, and the size of the body that
 * header says follows. tar-split writes them so; one that lies would make a
 * reassembly read a file the tar does not name, or bytes the tar never had
 * (2^53 of them for a size of 1e15). A lie is a TarSplitFormatError naming
 * the entry, before anything is read for it.
 */
async function* paired(file: string): AsyncGenerator<Paired> {
  const pending: TarHeader[] = [];
  const parser = new TarParser({ entry: (h) => pending.push(h), data: () => undefined, entryEnd: () => undefined });
  const lie = (e: { name: string }, m: string) => new TarSplitFormatError(file, `entry "${displayPath(e.name)}" ${m}`);
  for await (const entry of readTarSplit(file)) {
    if (entry.type === 'segment') {
      try {
        if (!parser.ended) parser.push(entry.payload);
      } catch (err) {
        throw new TarSplitFormatError(file, `holds a damaged tar (${(err as Error).message})`);
      }
      yield { entry, header: null };
      continue;
    }
    const h = pending.shift() ?? null; // none for a PAX global header, which tar-split lists as an empty file entry
    const body = h?.type === 'file' ? h.size : 0;
    if (h && (cleanRel(h.name) ?? h.name) !== (cleanRel(entry.name) ?? entry.name)) throw lie(entry, `is read from disk for the tar header "${displayPath(h.name)}"`);
    if (entry.size !== body) throw lie(entry, `records ${entry.size} bytes, its tar header ${body}`);
    try {
      parser.skipBody(body);
    } catch (err) {
      throw lie(entry, `does not follow its tar header (${(err as Error).message})`);
    }
    yield { entry, header: h };
  }
}

/** `file`'s entries, checked against their tar headers (see paired): what every reassembly reads. */
export async function* readCheckedTarSplit(file: string): AsyncGenerator<TarSplitEntry> {
  for await (const { entry } of paired(file)) yield entry;
}

export interface TarSplitMember {
  header: TarHeader;
  /** CRC-64 of the body (regular files with content), else null */
  crc: Buffer | null;
}

/**
 * The tar headers of a layer, with each regular file's CRC-64, from the
 * tar-split entries alone (bodies are skipped, nothing is read from disk).
 */
export async function* tarSplitMembers(file: string): AsyncGenerator<TarSplitMember> {
  for await (const { entry, header: h } of paired(file)) {
    if (entry.type === 'file' && h) yield { header: h, crc: h.type === 'file' && h.size > 0 ? entry.crc : null };
  }
}

// ---- writing ------------------------------------------------------------------

interface PendingFile {
  name: string;
  size: number;
}

/**
 * Records tar-split entries for a tar stream pushed through it, exactly the
 * entries tar-split's disassembler (asm.NewInputTarStream) makes: per header a
 * segment with everything since the previous body (its padding, PAX/GNU
 * metadata entries, the header block) then a file entry (name, size, CRC-64 of
 * the body); at the end a segment with the last padding and the end-of-archive
 * blocks, then anything after them in segments of at most 1 MiB. Also
 * computes the sha256 (DiffID) and byte count of the whole stream.
 */
export class TarSplitRecorder {
  private readonly lines: string[] = [];
  private position = 0;
  private raw: Buffer[] = [];
  private rawLen = 0;
  private block = Buffer.alloc(BLOCK);
  private blockLen = 0;
  private state: 'header' | 'meta' | 'body' | 'end' = 'header';
  private left = 0; // bytes left in the current meta/body (+ its padding for meta)
  private metaType = 0;
  private metaName = '';
  private meta: Buffer[] = [];
  private metaSize = 0;
  private pax = new Map<string, Buffer>();
  private longName: string | null = null;
  private file: PendingFile | null = null;
  private crc = new Crc64();
  private bodyPad = 0;
  private sawZero = false;
  private readonly hash = createHash('sha256');
  size = 0;

  /** Feed the next bytes of the tar. */
  push(chunk: Buffer): void {
    this.hash.update(chunk);
    this.size += chunk.length;
    let i = 0;
    while (i < chunk.length) {
      if (this.state === 'end') {
        this.addRaw(chunk.subarray(i));
        return;
      }
      if (this.state === 'body') {
        const take = Math.min(this.left, chunk.length - i);
        this.crc.update(chunk.subarray(i, i + take));
        i += take;
        this.left -= take;
        if (this.left === 0) this.endBody();
        continue;
      }
      if (this.state === 'meta') {
        const take = Math.min(this.left, chunk.length - i);
        const part = chunk.subarray(i, i + take);
        this.addRaw(part);
        this.meta.push(Buffer.from(part));
        i += take;
        this.left -= take;
        if (this.left === 0) this.endMeta();
        continue;
      }
      const take = Math.min(BLOCK - this.blockLen, chunk.length - i);
      chunk.copy(this.block, this.blockLen, i, i + take);
      this.blockLen += take;
      i += take;
      if (this.blockLen === BLOCK) {
        this.blockLen = 0;
        this.header(Buffer.from(this.block));
      }
    }
  }

  private addRaw(b: Buffer): void {
    if (b.length === 0) return;
    this.raw.push(Buffer.from(b));
    this.rawLen += b.length;
  }

  private emit(obj: Record<string, unknown>): void {
    this.lines.push(JSON.stringify({ ...obj, position: this.position++ }));
  }

  private flushSegment(): void {
    if (this.rawLen === 0) return;
    this.emit({ type: SEGMENT_TYPE, payload: Buffer.concat(this.raw).toString('base64') });
    this.raw = [];
    this.rawLen = 0;
  }

  private header(b: Buffer): void {
    this.addRaw(b);
    if (isZeroBlock(b, 0)) {
      if (this.sawZero) {
        this.flushSegment();
        this.state = 'end';
      }
      this.sawZero = true;
      return;
    }
    if (this.sawZero) throw new TarFormatError('a lone zero block inside the archive');
    const raw = decodeRaw(b, 0, this.size);
    const tf = raw.typeflag;
    if (tf === 0x78 || tf === 0x67 || tf === 0x4c || tf === 0x4b) {
      this.metaType = tf;
      this.metaName = raw.name;
      this.meta = [];
      this.metaSize = raw.size;
      this.left = raw.size + ((BLOCK - (raw.size % BLOCK)) % BLOCK);
      if (this.left === 0) this.endMeta();
      else this.state = 'meta';
      return;
    }
    let name = this.longName ?? raw.name;
    const p = this.pax.get('path');
    if (p) name = p.toString('latin1');
    let size = raw.size;
    const ps = this.pax.get('size');
    if (ps) size = Number(ps.toString('latin1'));
    this.pax = new Map();
    this.longName = null;
    // Go's archive/tar reads no body for header-only types, whatever the size field says
    const headerOnly = tf >= 0x31 && tf <= 0x36;
    this.startFile(name, size, headerOnly ? 0 : size);
  }

  private startFile(name: string, size: number, body: number): void {
    this.flushSegment();
    this.file = { name, size };
    this.crc = new Crc64();
    this.left = body;
    this.bodyPad = (BLOCK - (body % BLOCK)) % BLOCK;
    if (body === 0) this.endBody();
    else this.state = 'body';
  }

  private endBody(): void {
    const f = this.file!;
    const entry: Record<string, unknown> = { type: FILE_TYPE };
    const nameBuf = Buffer.from(f.name, 'latin1');
    const utf8 = nameBuf.toString('utf8');
    if (Buffer.from(utf8, 'utf8').equals(nameBuf)) entry.name = utf8;
    else entry.name_raw = nameBuf.toString('base64');
    if (f.size !== 0) entry.size = f.size;
    entry.payload = f.size > 0 ? this.crc.digest().toString('base64') : null;
    this.emit(entry);
    this.file = null;
    // the body's padding is raw bytes of the next segment
    this.left = this.bodyPad;
    this.state = this.left > 0 ? 'meta' : 'header';
    this.metaType = 0;
    this.meta = [];
    this.metaSize = 0;
  }

  private endMeta(): void {
    const body = Buffer.concat(this.meta).subarray(0, this.metaSize);
    this.state = 'header';
    switch (this.metaType) {
      case 0x78:
        parsePax(body, this.pax);
        break;
      case 0x67: {
        // Go returns a global PAX header as an entry of its own
        this.startFile(this.metaName, 0, 0);
        break;
      }
      case 0x4c:
        this.longName = cstring(body);
        break;
      case 0x4b:
        break; // long link name: not part of the entry name
    }
  }

  /** The tar is complete: the gzip'd tar-split bytes. */
  finish(): Buffer {
    if (this.state !== 'end') {
      if (this.state !== 'header' || this.blockLen !== 0) throw new TarFormatError('tar stream ended inside an entry');
      this.flushSegment();
    }
    // trailing bytes after the end blocks, in chunks of at most 1 MiB
    const trailing = Buffer.concat(this.raw);
    this.raw = [];
    this.rawLen = 0;
    for (let i = 0; i < trailing.length; i += CHUNK) {
      this.emit({ type: SEGMENT_TYPE, payload: trailing.subarray(i, i + CHUNK).toString('base64') });
    }
    return zlib.gzipSync(Buffer.from(this.lines.map((l) => l + '\n').join(''), 'utf8'));
  }

  /** "sha256:<hex>" of everything pushed (call once, after the last push). */
  diffId(): string {
    return `sha256:${this.hash.digest('hex')}`;
  }
}

function cstring(b: Buffer): string {
  const z = b.indexOf(0);
  return b.toString('latin1', 0, z === -1 ? b.length : z);
}

/** Pass a tar stream through a recorder: yields the same chunks. */
export async function* recordTarSplit(source: AsyncIterable<Uint8Array>, rec: TarSplitRecorder): AsyncGenerator<Buffer> {
  for await (const c of source) {
    const b = Buffer.isBuffer(c) ? c : Buffer.from(c.buffer, c.byteOffset, c.byteLength);
    rec.push(b);
    yield b;
  }
}
