// CRC-64 with the ISO polynomial, as Go's hash/crc64 (crc64.MakeTable(crc64.ISO))
// computes it: reflected, initial value and final xor all ones. tar-split
// stores it, big-endian, as the payload of every file entry.
//
// 64-bit values are kept as two uint32 halves (hi, lo); eight tables
// (slicing-by-8) process eight bytes per step.

const POLY_HI = 0xd8000000; // 0xD800000000000000, reversed ISO polynomial
const POLY_LO = 0x00000000;

const T_HI: Uint32Array[] = [];
const T_LO: Uint32Array[] = [];

(function buildTables() {
  const hi0 = new Uint32Array(256);
  const lo0 = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let hi = 0;
    let lo = i;
    for (let k = 0; k < 8; k++) {
      const lsb = lo & 1;
      lo = ((lo >>> 1) | ((hi & 1) << 31)) >>> 0;
      hi = hi >>> 1;
      if (lsb) {
        hi = (hi ^ POLY_HI) >>> 0;
        lo = (lo ^ POLY_LO) >>> 0;
      }
    }
    hi0[i] = hi;
    lo0[i] = lo;
  }
  T_HI.push(hi0);
  T_LO.push(lo0);
  for (let t = 1; t < 8; t++) {
    const ph = T_HI[t - 1];
    const pl = T_LO[t - 1];
    const h = new Uint32Array(256);
    const l = new Uint32Array(256);
    for (let i = 0; i < 256; i++) {
      // next[i] = table0[prev[i] & 0xff] ^ (prev[i] >> 8)
      const idx = pl[i] & 0xff;
      l[i] = (lo0[idx] ^ ((pl[i] >>> 8) | ((ph[i] & 0xff) << 24))) >>> 0;
      h[i] = (hi0[idx] ^ (ph[i] >>> 8)) >>> 0;
    }
    T_HI.push(h);
    T_LO.push(l);
  }
})();

/** A running CRC-64/ISO (Go hash/crc64 with the ISO table). */
export class Crc64 {
  // state kept inverted, as Go's update does (^crc on the way in and out)
  private hi = 0xffffffff;
  private lo = 0xffffffff;

  update(buf: Uint8Array): this {
    let hi = this.hi;
    let lo = this.lo;
    let i = 0;
    const n = buf.length;
    const [h0, h1, h2, h3, h4, h5, h6, h7] = T_HI;
    const [l0, l1, l2, l3, l4, l5, l6, l7] = T_LO;
    for (; i + 8 <= n; i += 8) {
      const a = (lo ^ (buf[i] | (buf[i + 1] << 8) | (buf[i + 2] << 16) | (buf[i + 3] << 24))) >>> 0;
      const b = (hi ^ (buf[i + 4] | (buf[i + 5] << 8) | (buf[i + 6] << 16) | (buf[i + 7] << 24))) >>> 0;
      const x0 = a & 0xff, x1 = (a >>> 8) & 0xff, x2 = (a >>> 16) & 0xff, x3 = a >>> 24;
      const x4 = b & 0xff, x5 = (b >>> 8) & 0xff, x6 = (b >>> 16) & 0xff, x7 = b >>> 24;
      hi = (h7[x0] ^ h6[x1] ^ h5[x2] ^ h4[x3] ^ h3[x4] ^ h2[x5] ^ h1[x6] ^ h0[x7]) >>> 0;
      lo = (l7[x0] ^ l6[x1] ^ l5[x2] ^ l4[x3] ^ l3[x4] ^ l2[x5] ^ l1[x6] ^ l0[x7]) >>> 0;
    }
    for (; i < n; i++) {
      const idx = (lo ^ buf[i]) & 0xff;
      lo = (l0[idx] ^ ((lo >>> 8) | ((hi & 0xff) << 24))) >>> 0;
      hi = (h0[idx] ^ (hi >>> 8)) >>> 0;
    }
    this.hi = hi;
    this.lo = lo;
    return this;
  }

  /** The 8-byte big-endian sum (Go's Sum(nil)). */
  digest(): Buffer {
    const out = Buffer.allocUnsafe(8);
    out.writeUInt32BE((~this.hi) >>> 0, 0);
    out.writeUInt32BE((~this.lo) >>> 0, 4);
    return out;
  }

  /** The sum as a bigint (Go's Sum64()). */
  sum64(): bigint {
    return (BigInt((~this.hi) >>> 0) << 32n) | BigInt((~this.lo) >>> 0);
  }
}

/** CRC-64/ISO of one buffer. */
export function crc64(buf: Uint8Array): Buffer {
  return new Crc64().update(buf).digest();
}
