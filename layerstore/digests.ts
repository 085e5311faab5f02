// Content identifiers of the modern store (graphdrivers.md §4.3).
import { createHash } from 'node:crypto';

const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;
const HEX64_RE = /^[0-9a-f]{64}$/;

export function isDigest(s: unknown): boolean {
  return typeof s === 'string' && DIGEST_RE.test(s);
}

export function isHex64(s: unknown): boolean {
  return typeof s === 'string' && HEX64_RE.test(s);
}

export function sha256Digest(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** The digest's hex part ("sha256:abc…" → "abc…"). */
export function digestHex(d: string): string {
  const i = d.indexOf(':');
  return i >= 0 ? d.slice(i + 1) : d;
}

/**
 * ChainIDs of a stack of DiffIDs, base first: ChainID(L1) = DiffID(L1),
 * ChainID(L1..Ln) = sha256(ChainID(L1..Ln-1) + " " + DiffID(Ln)).
 */
export function chainIds(diffIds: readonly string[], memo?: Map<string, string>): string[] {
  const out: string[] = [];
  for (const d of diffIds) {
    if (out.length === 0) {
      out.push(chainIdOf(null, d));
      continue;
    }
    const key = `${out[out.length - 1]} ${d}`;
    let c = memo?.get(key);
    if (c === undefined) {
      c = chainIdOf(out[out.length - 1], d);
      memo?.set(key, c);
    }
    out.push(c);
  }
  return out;
}

/** DiffID of the empty layer (a tar of 1024 zero bytes), moby layer/empty.go. */
export const EMPTY_LAYER_DIFF_ID = 'sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef';

/** ChainID of a layer on `parent` (a chain id, or null for a base layer). */
export function chainIdOf(parent: string | null, diffId: string): string {
  return parent === null ? diffId : sha256Digest(`${parent} ${diffId}`);
}

/** An image's id: sha256 of its config's exact bytes (moby image.store Create). */
export function imageIdOf(configBytes: Buffer): string {
  return sha256Digest(configBytes);
}
