// The bytes Go's encoding/json writes, for the store files dockerd marshals itself.

/**
 * JSON the way Go's encoding/json Marshal writes it: compact, with <, >, &,
 * U+2028 and U+2029 escaped (outside strings none of them can occur). Key
 * order is the object's own (Go: struct field order; maps sorted by the caller).
 */
export function goJson(value: unknown): Buffer {
  const s = JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return Buffer.from(s, 'utf8');
}
