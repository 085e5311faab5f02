// The suite can fail: deliberately broken drivers (thin wrappers over vfs)
// go through the suite's checks, which must throw — and the sound vfs must
// pass the very same checks, so the failures come from the breakage.
import { Readable } from 'node:stream';
import { ChangeKind } from '../../archive/types.ts';
import { tarSource, type Driver, type TarInput } from '../../drivers/driver.ts';
import { init } from '../../drivers/vfs/vfs.ts';
import { isRoot, when } from '../helpers/require.ts';
import { ConformanceError, checks, withDriver, type CheckContext } from './suite.ts';

/** `inner` with some methods replaced. */
function wrap(inner: Driver, name: string, over: Partial<Driver>): Driver {
  const base: Driver = {
    name,
    home: inner.home,
    create: (id, parent, opts) => inner.create(id, parent, opts),
    createReadWrite: (id, parent, opts) => inner.createReadWrite(id, parent, opts),
    remove: (id) => inner.remove(id),
    get: (id, label) => inner.get(id, label),
    put: (id) => inner.put(id),
    exists: (id) => inner.exists(id),
    status: () => inner.status(),
    metadata: (id) => inner.metadata(id),
    cleanup: () => inner.cleanup(),
    diff: (id, parent) => inner.diff(id, parent),
    changes: (id, parent) => inner.changes(id, parent),
    applyDiff: (id, parent, tar) => inner.applyDiff(id, parent, tar),
    diffSize: (id, parent) => inner.diffSize(id, parent),
  };
  return { ...base, ...over };
}

async function bytes(tar: TarInput): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of tarSource(tar) as AsyncIterable<Uint8Array>) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}

/**
 * Drop the tar entries whose name `drop` selects, with the PAX header that
 * precedes each. Enough tar for the archives exportDir writes (ustar + PAX).
 */
function filterTar(tar: Buffer, drop: (name: string) => boolean): Buffer {
  const out: Buffer[] = [];
  let pending: Buffer[] = [];
  let paxPath: string | undefined;
  let off = 0;
  while (off + 512 <= tar.length) {
    const h = tar.subarray(off, off + 512);
    if (h.every((b) => b === 0)) break;
    const size = parseInt(h.toString('latin1', 124, 136).replace(/\0.*$/, '').trim() || '0', 8);
    const span = 512 + Math.ceil(size / 512) * 512;
    const block = tar.subarray(off, off + span);
    const type = String.fromCharCode(h[156]);
    off += span;
    if (type === 'x') {
      const m = /\d+ path=([^\n]*)\n/.exec(block.toString('latin1', 512, 512 + size));
      paxPath = m?.[1];
      pending.push(block);
      continue;
    }
    const name = h.toString('latin1', 0, 100).replace(/\0.*$/, '');
    const prefix = h.toString('latin1', 345, 500).replace(/\0.*$/, '');
    const full = paxPath ?? (prefix ? `${prefix}/${name}` : name);
    if (!drop(full)) out.push(...pending, block);
    pending = [];
    paxPath = undefined;
  }
  out.push(Buffer.alloc(1024));
  return Buffer.concat(out);
}

const base = (name: string) => name.replace(/\/$/, '').split('/').pop()!;

/** applyDiff that ignores opaque markers (`<dir>/.wh..wh..opq`). */
async function ignoresOpaque(home: string): Promise<Driver> {
  const inner = await init(home, []);
  return wrap(inner, 'broken-opaque', {
    applyDiff: async (id, parent, tar) => inner.applyDiff(id, parent, filterTar(await bytes(tar), (n) => base(n) === '.wh..wh..opq')),
  });
}

/** changes() that drops every Delete. */
async function dropsDeletes(home: string): Promise<Driver> {
  const inner = await init(home, []);
  return wrap(inner, 'broken-changes', {
    changes: async (id, parent) => (await inner.changes(id, parent)).filter((c) => c.kind !== ChangeKind.Delete),
  });
}

/** diff() that leaves out the `.wh.` deletions. */
async function diffWithoutWhiteouts(home: string): Promise<Driver> {
  const inner = await init(home, []);
  return wrap(inner, 'broken-diff', {
    diff: (id, parent) => Readable.from((async function* () {
      const all = await bytes(inner.diff(id, parent));
      yield filterTar(all, (n) => base(n).startsWith('.wh.'));
    })(), { objectMode: false }),
  });
}

const vfs = (home: string) => init(home, []);
const rootTest = when(isRoot, 'root (run the tests as root)');

type Check = (ctx: CheckContext) => Promise<unknown>;

/** The check passes for vfs and throws a ConformanceError for the broken driver. */
function failsOnlyWhenBroken(title: string, broken: (home: string) => Promise<Driver>, check: Check, expect: RegExp) {
  rootTest(title, async (t) => {
    await t.notThrowsAsync(withDriver('vfs', vfs, check), 'the sound driver passes');
    const err = await t.throwsAsync(withDriver('broken', broken, check));
    t.true(err instanceof ConformanceError, `a conformance failure, not a crash: ${String(err)}`);
    t.regex(err!.message, expect);
    t.log(err!.message.split('\n').slice(0, 4).join('\n'));
  });
}

failsOnlyWhenBroken('suite fails a driver whose applyDiff ignores opaque markers (ApplyDiffWhiteouts)',
  ignoresOpaque, checks.applyDiffWhiteouts, /opaque markers applied over its parent: tree differs[\s\S]*\/etc\/a/);

failsOnlyWhenBroken('suite fails a driver whose changes() drops Deletes (Changes: the 21 changes)',
  dropsDeletes, checks.changes, /unexpected number of changes, expected 21, got 15/);

failsOnlyWhenBroken('suite fails a driver whose changes() drops Deletes (Echo)',
  dropsDeletes, checks.echo, /unexpected number of changes/);

failsOnlyWhenBroken('suite fails a driver whose diff() drops whiteouts (DiffApply 10)',
  diffWithoutWhiteouts, (c) => checks.diffApply(c, 10), /file still exists: file-remove\.txt/);

failsOnlyWhenBroken('suite fails a driver whose diff() drops whiteouts (DeletedFilesInChildSnapshot, diff side)',
  diffWithoutWhiteouts, checks.deletedFilesInChildSnapshot, /diff\(layer, parent\) applied onto a new child[\s\S]*\/foobar/);
