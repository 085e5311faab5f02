// btrfs through the conformance suite on a loop-mounted btrfs this file makes
// and removes, twice: with the native changes (BTRFS_IOC_SEND) and with the
// naive walk forced, so that both are held to every case. The native run also
// checks, after each case, that no comparison against a direct parent fell
// back to the walk (status() would name it). SetQuota runs on the default
// home (qgroups are enabled on first use) and on a second, fresh btrfs.
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Driver } from '../../drivers/driver.ts';
import { init } from '../../drivers/btrfs/btrfs.ts';
import { loopBtrfs, loopBtrfsMissing, type TinyFs } from '../helpers/tiny-fs.ts';
import { when } from '../helpers/require.ts';
import { runConformance, type QuotaSetup } from './suite.ts';

const missing = loopBtrfsMissing();
let btrfs: TinyFs | null = null;
if (missing === null) {
  btrfs = loopBtrfs(2048);
  // the suite makes every home and scratch dir under os.tmpdir(): here, on the btrfs
  const tmp = path.join(btrfs.dir, 'tmp');
  fs.mkdirSync(tmp);
  process.env.TMPDIR = tmp;
}
test.after.always('unmount the loop btrfs', () => btrfs?.cleanup());

const quota: QuotaSetup = {
  kind: 'filesystem', missing,
  makeHome: async () => {
    const q = loopBtrfs(512);
    return { dir: q.dir, cleanup: async () => q.cleanup() };
  },
};

/** A native driver whose cleanup fails the case when a direct-parent comparison took the naive walk. */
async function nativeOnly(home: string): Promise<Driver> {
  const d = await init(home, []);
  const cleanup = d.cleanup.bind(d);
  d.cleanup = async () => {
    const fallback = d.status().find(([k]) => k === 'Native Changes (last fallback)');
    await cleanup();
    if (fallback && !/is not the direct parent/.test(fallback[1])) throw new Error(`native changes fell back: ${fallback[1]}`);
  };
  return d;
}

const common = { deepLayers: 128, diffApplyFiles: [10, 100], quota };
if (missing === null) {
  runConformance('btrfs', nativeOnly, common);
  runConformance('btrfs-naive', (home) => init(home, ['btrfs.native_changes=false']), common);
} else {
  when(false, `btrfs conformance: ${missing}`)('btrfs: conformance suite', (t) => t.pass());
}
