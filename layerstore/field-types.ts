// The JSON field types of the store's documents, as moby's Go structs declare
// them: a field of the wrong type (a "Driver": 5, an "Image": {}) makes
// dockerd's json.Unmarshal fail, so the document is damage, whatever the
// readers make of it (they read such a field as absent). null is what Go
// writes for nil maps and slices and accepts for any field, so it passes.
import { parseCreated } from './model.ts';

/** `time`: a string holding an RFC 3339 time (Go's time.Time); `integer`: a whole number. */
export type FieldType = 'string' | 'boolean' | 'integer' | 'number' | 'object' | 'array' | 'time' | 'strings';

export interface Fields {
  readonly [name: string]: FieldType | Fields;
}

function typeName(v: unknown): string {
  if (Array.isArray(v)) return 'an array';
  if (v === null) return 'null';
  const t = typeof v;
  return t === 'object' ? 'an object' : t === 'string' ? 'a string' : t === 'number' ? 'a number' : t === 'boolean' ? 'a boolean' : t;
}

const expected: Record<FieldType, string> = {
  string: 'a string', boolean: 'a boolean', integer: 'an integer', number: 'a number', object: 'an object',
  array: 'an array', time: 'an RFC 3339 time', strings: 'an array of strings',
};

function fits(v: unknown, t: FieldType): boolean {
  switch (t) {
    case 'string': return typeof v === 'string';
    case 'boolean': return typeof v === 'boolean';
    case 'integer': return typeof v === 'number' && Number.isSafeInteger(v);
    case 'number': return typeof v === 'number' && Number.isFinite(v);
    case 'object': return typeof v === 'object' && !Array.isArray(v);
    case 'array': return Array.isArray(v);
    case 'strings': return Array.isArray(v) && v.every((x) => typeof x === 'string');
    case 'time': return typeof v === 'string' && (v === '' || parseCreated(v) !== null);
  }
}

/**
 * Every field of `doc` listed in `fields` that is present, not null and of
 * another type, as messages ('"Driver" is a number, expected a string');
 * nested Fields describe an object's own fields. Unlisted fields are not looked at.
 */
export function fieldTypeProblems(doc: Record<string, unknown>, fields: Fields, prefix = ''): string[] {
  const out: string[] = [];
  for (const [name, t] of Object.entries(fields)) {
    if (!Object.hasOwn(doc, name)) continue;
    const v = doc[name];
    if (v === null) continue;
    const where = `"${prefix}${name}"`;
    if (typeof t === 'object') {
      if (typeof v !== 'object' || Array.isArray(v)) out.push(`${where} is ${typeName(v)}, expected an object`);
      else out.push(...fieldTypeProblems(v as Record<string, unknown>, t, `${prefix}${name}.`));
    } else if (!fits(v, t)) {
      const shown = typeof v === 'string' ? ` ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}` : '';
      out.push(`${where} is ${typeName(v)}${shown}, expected ${expected[t]}`);
    }
  }
  return out;
}

/** moby container.Container as config.v2.json holds it (the fields strata reads and their neighbours). */
export const CONTAINER_FIELDS: Fields = {
  ID: 'string', Created: 'time', Path: 'string', Args: 'strings', Image: 'string', Name: 'string', Driver: 'string',
  OS: 'string', RestartCount: 'integer', MountLabel: 'string', ProcessLabel: 'string', MountPoints: 'object',
  State: {
    Running: 'boolean', Paused: 'boolean', Restarting: 'boolean', OOMKilled: 'boolean', RemovalInProgress: 'boolean',
    Dead: 'boolean', Pid: 'integer', ExitCode: 'integer', Error: 'string', StartedAt: 'time', FinishedAt: 'time',
  },
  Config: { Hostname: 'string', Image: 'string', Cmd: 'strings', Env: 'strings', Labels: 'object' },
};

/** Docker ≤ 1.9 containers/<id>/config.json: the same names. */
export const LEGACY_CONTAINER_FIELDS: Fields = CONTAINER_FIELDS;

/** An image config (image-spec / moby image.Image). */
export const IMAGE_CONFIG_FIELDS: Fields = {
  architecture: 'string', os: 'string', created: 'time', author: 'string', docker_version: 'string',
  config: 'object', container_config: 'object', history: 'array', rootfs: { type: 'string', diff_ids: 'array' },
};

/** One entry of an image config's history. */
export const HISTORY_FIELDS: Fields = { created: 'time', created_by: 'string', comment: 'string', author: 'string', empty_layer: 'boolean' };

/** A v1 image JSON (legacy graph/<id>/json, registry images/<id>/json). */
export const V1_IMAGE_FIELDS: Fields = {
  id: 'string', parent: 'string', parent_id: 'string', created: 'time', comment: 'string', author: 'string',
  container: 'string', docker_version: 'string', architecture: 'string', os: 'string', Size: 'number',
  config: 'object', container_config: { Cmd: 'strings', Image: 'string' },
};
