// A child process that writes a small modern store (fixtures/modern-store.ts,
// through layerstore/writer.ts and the vfs driver) and SIGKILLs itself at
// its Nth file-system operation, for test/layerstore/writer-kill.test.ts.
//
//   tsx test/helpers/store-writer-worker.ts <root> <killAt>
//
// killAt 0: write everything and print the number of operations ("ops N").
// Operations counted: opens, writes, fsyncs, renames, mkdirs, unlinks,
// symlinks, links; a write the kill lands on is cut in half first, so a kill
// can leave a partly written temp file, as a crash in the middle of write(2) would.
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import * as path from 'node:path';
import { patterned, writeModernStore, type StoreSpec } from '../../fixtures/modern-store.ts';

const [root, killArg] = process.argv.slice(2);
const killAt = Number(killArg);
let ops = 0;

function tick(): void {
  if (++ops === killAt) process.kill(process.pid, 'SIGKILL');
}

type AnyFn = (...a: unknown[]) => unknown;
const patchable = fs as unknown as Record<string, AnyFn>;
for (const name of ['openSync', 'fsyncSync', 'renameSync', 'mkdirSync', 'unlinkSync', 'symlinkSync', 'linkSync', 'writeFileSync', 'rmSync']) {
  const orig = patchable[name];
  patchable[name] = function (this: unknown, ...a: unknown[]) {
    tick();
    return orig.apply(this, a);
  };
}
const origWrite = patchable.writeSync;
patchable.writeSync = function (this: unknown, ...a: unknown[]) {
  if (ops + 1 === killAt && Buffer.isBuffer(a[1]) && a[1].length > 1) {
    // half of it, then the kill
    origWrite.call(this, a[0], a[1], a[2] ?? 0, Math.floor(((a[3] as number | undefined) ?? a[1].length) / 2));
  }
  tick();
  return origWrite.apply(this, a);
};
syncBuiltinESMExports();

const T = new Date('2024-05-06T07:08:09Z');
const spec: StoreSpec = {
  images: [
    {
      name: 'base', tags: ['kill/base:latest'], created: '2024-05-06T07:08:09Z', layers: [{
        createdBy: 'base', entries: [
          { name: 'etc/', type: 'directory', mtime: T }, { name: 'etc/passwd', content: 'root:x:0:0::/:/bin/sh\n', mtime: T },
          { name: 'bin/', type: 'directory', mtime: T }, { name: 'bin/tool', content: patterned(20_000, 7), mode: 0o755, mtime: T },
        ],
      }],
    },
    {
      name: 'app', tags: ['kill/app:1', 'kill/app:latest'], from: 'base', created: '2024-05-06T08:00:00Z', layers: [
        { createdBy: 'add', entries: [{ name: 'srv/', type: 'directory', mtime: T }, { name: 'srv/a.txt', content: 'a\n', mtime: T }] },
        { createdBy: 'rm', entries: [{ name: 'etc/', type: 'directory', mtime: T }, { name: 'etc/.wh.passwd', mtime: T }] },
      ],
    },
    {
      name: 'other', tags: ['kill/other:latest'], from: 'base', created: '2024-05-06T09:00:00Z',
      layers: [{ createdBy: 'data', entries: [{ name: 'data.bin', content: patterned(5_000, 9), mtime: T }] }],
    },
  ],
  containers: [
    { name: 'k1', image: 'app', created: '2024-05-06T10:00:00Z', change: (r) => fs.writeFileSync(path.join(r, 'new.txt'), 'new\n') },
    { name: 'k2', image: 'other', created: '2024-05-06T10:00:01Z', change: (r) => fs.writeFileSync(path.join(r, 'x.txt'), 'x\n') },
  ],
};

await writeModernStore(root, 'vfs', spec);
process.stdout.write(`ops ${ops}\n`);
