// The value encodings containerd's bolt schemas use (core/metadata, the
// snapshotters' storage/bolt.go): sizes as Go varints (zigzag), snapshot ids
// as uvarints, times as Go's time.MarshalBinary, labels as sub-buckets of
// strings. Each decoder returns null for bytes that are not its encoding.
import type { BucketHandle } from '../bbolt.ts';

/** Go binary.Uvarint; null when truncated or over 2^53. */
export function uvarint(b: Buffer): number | null {
  let x = 0;
  let scale = 1;
  for (let i = 0; i < b.length && i < 10; i++) {
    x += (b[i] & 0x7f) * scale;
    if (!Number.isSafeInteger(x)) return null;
    if (b[i] < 0x80) return x;
    scale *= 128;
  }
  return null;
}

/** Go binary.Varint (zigzag on top of the uvarint). */
export function varint(b: Buffer): number | null {
  const u = uvarint(b);
  if (u === null) return null;
  return u % 2 === 0 ? u / 2 : -(u + 1) / 2;
}

// seconds from 0001-01-01 (Go's internal epoch) to 1970-01-01
const UNIX_TO_INTERNAL = 62135596800n;

/** Go time.MarshalBinary (version 1 or 2): seconds since year 1, ns, zone offset. */
export function goTime(b: Buffer | null): Date | null {
  if (!b || (b[0] !== 1 && b[0] !== 2) || b.length < 15) return null;
  const sec = b.readBigInt64BE(1) - UNIX_TO_INTERNAL;
  const ns = b.readInt32BE(9);
  const ms = Number(sec) * 1000 + Math.floor(ns / 1e6);
  return Number.isFinite(ms) ? new Date(ms) : null;
}

/** A bucket of string values (labels, annotations) as an object; {} when absent. */
export function stringMap(b: BucketHandle | null): Record<string, string> {
  const out: Record<string, string> = {};
  if (!b) return out;
  for (const e of b.entries()) if (e.value !== null) out[e.key.toString()] = e.value.toString();
  return out;
}

/** A string value, or null when absent. */
export function str(b: BucketHandle, key: string): string | null {
  const v = b.get(key);
  return v === null ? null : v.toString();
}
