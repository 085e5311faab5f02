// security.capability values for tests (what setcap writes).

/**
 * A valid VFS_CAP_REVISION_2 value (20 bytes, little-endian): magic|effective,
 * then permitted/inheritable for capabilities 0–31 and 32–63. Only the low
 * permitted word is set; e.g. 1 << 13 is cap_net_raw.
 */
export function capabilityV2(permittedLow: number, effective: boolean): Buffer {
  const b = Buffer.alloc(20);
  b.writeUInt32LE(0x02000000 | (effective ? 1 : 0), 0);
  b.writeUInt32LE(permittedLow >>> 0, 4);
  return b;
}
