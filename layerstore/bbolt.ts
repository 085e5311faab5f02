// A read-only reader of bbolt files (etcd-io/bbolt), as containerd writes its
// meta.db and snapshotter metadata.db. Opened without a lock and never
// written; pages are read on demand into a few reused buffers (bounded
// memory); the freelist is ignored.
// Layout (bbolt page.go, bucket.go, db.go): every page starts with a 16-byte
// header {id u64, flags u16, count u16, overflow u32}; pages 0 and 1 are metas
// and the one with the higher txid whose checksum holds is current.
import * as fs from 'node:fs';

const BRANCH = 0x01;
const LEAF = 0x02;
const META = 0x04;
const BUCKET_LEAF = 0x01;
const MAGIC = 0xed0cdaed;
const HEADER = 16;
const ELEMENT = 16;
const BUCKET_HEADER = 16;

/** A damaged or foreign file, named with the page and byte offset. */
export class BboltError extends Error {}

/** A bucket: its root page, or its inline page's bytes (root 0). */
interface BucketRef {
  root: bigint;
  inline?: Buffer;
}

export interface Entry {
  key: Buffer;
  /** a value, or null for a nested bucket */
  value: Buffer | null;
}

export class BboltFile {
  private constructor(
    readonly file: string,
    private readonly fd: number,
    readonly pageSize: number,
    private readonly root: BucketRef,
    private readonly highWater: bigint,
  ) {}

  /**
   * Page buffers no walk holds any more. A fresh buffer per page read was most
   * of the cost of reading a meta.db (1,000 images: 3,200 pages scattered over
   * the file), in first-touch page faults and GC of the external memory, not
   * in the reads; so entries read from a pooled page are copied out of it (a
   * few bytes each, most entries being in inline buckets, which are copies).
   */
  private readonly spare: Buffer[] = [];

  static open(file: string): BboltFile {
    const fd = fs.openSync(file, 'r');
    try {
      const first = readAt(fd, 0, 4096, file);
      const pageSize = first.length >= HEADER + 12 ? first.readUInt32LE(HEADER + 8) : 0;
      if (pageSize < 512 || pageSize > 1 << 20 || (pageSize & (pageSize - 1)) !== 0)
        throw new BboltError(`${file}: not a bbolt file (page 0 at offset 0: no valid page size)`);
      const metas = [0, 1].map((n) => parseMeta(readAt(fd, n * pageSize, pageSize, file), n, pageSize, file));
      const ok = metas.filter((m): m is Meta => !('error' in m));
      if (!ok.length) throw new BboltError((metas[0] as { error: string }).error);
      const meta = ok.reduce((a, b) => (b.txid > a.txid ? b : a));
      return new BboltFile(file, fd, pageSize, { root: meta.root }, meta.pgid);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  close(): void {
    fs.closeSync(this.fd);
  }

  /** The bucket at `path` (names from the top), or null when absent. */
  bucket(...names: string[]): BucketHandle | null {
    let ref: BucketRef = this.root;
    for (const name of names) {
      const found = this.find(ref, Buffer.from(name));
      if (!found || found.value !== null) return null;
      ref = found.ref!;
    }
    return new BucketHandle(this, ref);
  }

  /** Every entry of bucket `ref`, in key order. */
  *entries(ref: BucketRef): Generator<Entry & { ref?: BucketRef }> {
    if (ref.inline) {
      yield* this.pageEntries(ref.inline, 'inline');
      return;
    }
    yield* this.walk(ref.root, 0);
  }

  private *walk(pgid: bigint, depth: number): Generator<Entry & { ref?: BucketRef }> {
    if (depth > 64) throw new BboltError(`${this.file}: page ${pgid}: tree deeper than 64 (a loop?)`);
    const page = this.page(pgid);
    try {
      const flags = page.readUInt16LE(8);
      const count = page.readUInt16LE(10);
      if (flags & BRANCH) {
        for (let i = 0; i < count; i++) {
          const at = HEADER + i * ELEMENT;
          this.bound(page, at + ELEMENT, pgid, at);
          yield* this.walk(page.readBigUInt64LE(at + 8), depth + 1);
        }
      } else if (flags & LEAF) {
        yield* this.pageEntries(page, pgid);
      } else {
        throw new BboltError(`${this.file}: page ${pgid} at offset ${BigInt(this.pageSize) * pgid}: flags 0x${flags.toString(16)} is not a branch or leaf`);
      }
    } finally {
      this.release(page);
    }
  }

  /** A leaf's entries: copies out of a page (its buffer is reused), views into an inline bucket (itself a copy). */
  private *pageEntries(page: Buffer, pgid: bigint | 'inline'): Generator<Entry & { ref?: BucketRef }> {
    if (page.length < HEADER) throw new BboltError(`${this.file}: ${pgid} page is truncated`);
    const count = page.readUInt16LE(10);
    if (!(page.readUInt16LE(8) & LEAF)) throw new BboltError(`${this.file}: ${pgid} page is not a leaf`);
    const view = pgid === 'inline' ? (b: Buffer) => b : (b: Buffer) => Buffer.from(b);
    for (let i = 0; i < count; i++) {
      const at = HEADER + i * ELEMENT;
      this.bound(page, at + ELEMENT, pgid, at);
      const flags = page.readUInt32LE(at);
      const pos = page.readUInt32LE(at + 4);
      const ksize = page.readUInt32LE(at + 8);
      const vsize = page.readUInt32LE(at + 12);
      const k = at + pos;
      this.bound(page, k + ksize + vsize, pgid, at);
      const key = view(page.subarray(k, k + ksize));
      const value = page.subarray(k + ksize, k + ksize + vsize);
      if (flags & BUCKET_LEAF) {
        if (vsize < BUCKET_HEADER) throw new BboltError(`${this.file}: page ${pgid} offset ${at}: bucket value of ${vsize} bytes`);
        const root = value.readBigUInt64LE(0);
        const ref: BucketRef = root === 0n ? { root, inline: Buffer.from(value.subarray(BUCKET_HEADER)) } : { root };
        yield { key, value: null, ref };
      } else {
        yield { key, value: view(value) };
      }
    }
  }

  /** Entry `key` of bucket `ref`: branch pages are descended, not scanned. */
  find(ref: BucketRef, key: Buffer): (Entry & { ref?: BucketRef }) | null {
    if (ref.inline) {
      for (const e of this.pageEntries(ref.inline, 'inline')) if (e.key.equals(key)) return e;
      return null;
    }
    let pgid = ref.root;
    for (let depth = 0; depth <= 64; depth++) {
      const page = this.page(pgid);
      try {
        if (!(page.readUInt16LE(8) & BRANCH)) {
          for (const e of this.pageEntries(page, pgid)) if (e.key.equals(key)) return e;
          return null;
        }
        pgid = this.branchChild(page, pgid, key);
      } finally {
        this.release(page);
      }
    }
    throw new BboltError(`${this.file}: page ${pgid}: tree deeper than 64 (a loop?)`);
  }

  /** The child of branch page `page` that holds `key`. */
  private branchChild(page: Buffer, pgid: bigint, key: Buffer): bigint {
    // the last element whose key is <= key holds it (bbolt cursor.searchBranch)
    const count = page.readUInt16LE(10);
    let next = -1;
    for (let i = 0; i < count; i++) {
      const at = HEADER + i * ELEMENT;
      this.bound(page, at + ELEMENT, pgid, at);
      const k = at + page.readUInt32LE(at);
      const ksize = page.readUInt32LE(at + 4);
      this.bound(page, k + ksize, pgid, at);
      if (Buffer.compare(page.subarray(k, k + ksize), key) > 0) break;
      next = i;
    }
    if (next < 0) next = 0;
    return page.readBigUInt64LE(HEADER + next * ELEMENT + 8);
  }

  /** Page `pgid` with its overflow pages. */
  private page(pgid: bigint): Buffer {
    const offset = pgid * BigInt(this.pageSize);
    if (pgid < 2n || pgid >= this.highWater)
      throw new BboltError(`${this.file}: page ${pgid} at offset ${offset}: outside the file's pages (2..${this.highWater - 1n})`);
    // one read for the common page without overflow; a second only for overflow pages
    const head = readAt(this.fd, Number(offset), this.pageSize, this.file, this.spare.pop());
    if (head.length < HEADER) throw new BboltError(`${this.file}: page ${pgid} at offset ${offset}: truncated`);
    if (head.readBigUInt64LE(0) !== pgid)
      throw new BboltError(`${this.file}: page ${pgid} at offset ${offset}: header names page ${head.readBigUInt64LE(0)}`);
    const span = (head.readUInt32LE(12) + 1) * this.pageSize;
    if (pgid + BigInt(head.readUInt32LE(12)) >= this.highWater)
      throw new BboltError(`${this.file}: page ${pgid} at offset ${offset}: overflow beyond the file's pages`);
    if (span === head.length) return head;
    this.release(head);
    const page = readAt(this.fd, Number(offset), span, this.file);
    if (page.length < span) throw new BboltError(`${this.file}: page ${pgid} at offset ${offset}: truncated`);
    return page;
  }

  /** Give a page's buffer back for the next read: only whole single pages (an overflow span is left to the GC). */
  private release(page: Buffer): void {
    if (page.length === this.pageSize && page.byteOffset === 0 && page.buffer.byteLength === this.pageSize) this.spare.push(page);
  }

  private bound(page: Buffer, end: number, pgid: bigint | 'inline', at: number): void {
    if (end > page.length)
      throw new BboltError(`${this.file}: page ${pgid} offset ${at}: element runs past the page (${end} > ${page.length})`);
  }
}

/** A bucket of an open file: its entries and sub-buckets. */
export class BucketHandle {
  constructor(private readonly db: BboltFile, private readonly ref: BucketRef) {}

  *entries(): Generator<Entry> {
    for (const { key, value } of this.db.entries(this.ref)) yield { key, value };
  }

  get(key: string): Buffer | null {
    const e = this.db.find(this.ref, Buffer.from(key));
    return e && e.value;
  }

  bucket(name: string): BucketHandle | null {
    const e = this.db.find(this.ref, Buffer.from(name));
    return e && e.value === null ? new BucketHandle(this.db, e.ref!) : null;
  }

  /** Every entry, a nested bucket as its handle, in key order, in one pass (no lookup per name). */
  *items(): Generator<[string, Buffer | BucketHandle]> {
    for (const e of this.db.entries(this.ref)) yield [e.key.toString(), e.value ?? new BucketHandle(this.db, e.ref!)];
  }

  /** The nested buckets with their handles, in key order, in one pass. */
  *children(): Generator<[string, BucketHandle]> {
    for (const [k, v] of this.items()) if (v instanceof BucketHandle) yield [k, v];
  }

  /** Names of the nested buckets, in key order. */
  buckets(): string[] {
    return [...this.db.entries(this.ref)].filter((e) => e.value === null).map((e) => e.key.toString());
  }
}

interface Meta {
  root: bigint;
  pgid: bigint;
  txid: bigint;
}

function parseMeta(page: Buffer, n: number, pageSize: number, file: string): Meta | { error: string } {
  const where = `${file}: meta page ${n} at offset ${n * pageSize}`;
  if (page.length < HEADER + 64) return { error: `${where}: truncated` };
  if (!(page.readUInt16LE(8) & META)) return { error: `${where}: not a meta page` };
  const m = page.subarray(HEADER, HEADER + 64);
  if (m.readUInt32LE(0) !== MAGIC) return { error: `${where}: bad magic` };
  if (m.readUInt32LE(4) !== 2) return { error: `${where}: version ${m.readUInt32LE(4)}, not 2` };
  if (fnv64a(m.subarray(0, 56)) !== m.readBigUInt64LE(56)) return { error: `${where}: checksum mismatch` };
  return { root: m.readBigUInt64LE(16), pgid: m.readBigUInt64LE(40), txid: m.readBigUInt64LE(48) };
}

// bbolt seals each meta with FNV-1a 64 over the fields before the checksum.
function fnv64a(bytes: Buffer): bigint {
  let h = 0xcbf29ce484222325n;
  for (const b of bytes) h = BigInt.asUintN(64, (h ^ BigInt(b)) * 0x100000001b3n);
  return h;
}

function readAt(fd: number, offset: number, length: number, file: string, reuse?: Buffer): Buffer {
  const buf = reuse ?? Buffer.alloc(length);
  let got = 0;
  while (got < length) {
    const n = fs.readSync(fd, buf, got, length - got, offset + got);
    if (n === 0) break;
    got += n;
  }
  if (got === 0 && length > 0 && offset === 0) throw new BboltError(`${file}: empty file`);
  return buf.subarray(0, got);
}
