// The proof harness itself (migrate-proof.ts), before any migration: a store captured by
// dockerd on vfs and checked by dockerd restarted on the same root and driver must show no
// difference; after one image is removed through docker, the check must report that image
// (and only it). So checkAfter passes what is the same and fails what is not.
import test from 'ava';
import { checkAfter, type Capture } from './migrate-proof.ts';
import { DaemonDir, buildAndCapture, missingFor } from './migrate-scenario.ts';
import type { Dockerd } from './dockerd.ts';
import { when } from '../helpers/require.ts';

const missing = missingFor(['vfs']);
const oracle = when(missing.length === 0, missing.join(', '), { serial: true });
const short = (id: string) => id.replace(/^sha256:/, '').slice(0, 12);

let dd: DaemonDir | undefined;
let st: { before: Capture; untagged: string; d2: Dockerd } | undefined;

test.after.always(async () => {
  const left = (await dd?.cleanup()) ?? [];
  if (left.length) throw new Error(`left behind: ${left.join('; ')}`);
});

oracle('vfs store, dockerd restarted on it (same driver): checkAfter finds no difference', async (t) => {
  dd = new DaemonDir(false);
  const { before, untagged } = await buildAndCapture(dd, 'vfs');
  t.true(before.imageLs.some((r) => r.id === untagged && r.repository === '<none>' && r.tag === '<none>'), 'the untagged image is listed as <none>:<none>');
  t.true(before.saved.length >= 3 && before.saved.every((s) => s.probe.path !== ''), 'every top-level image has a probe file');
  t.true(before.containers.length === 1 && before.containers[0].diff.length > 5, 'c1 and its changes were captured');
  const d2 = await dd.start('vfs');
  st = { before, untagged, d2 };
  t.deepEqual(await checkAfter(d2, before), []);
});

oracle('the same store with one image removed through docker: checkAfter reports that image, and only it', async (t) => {
  if (!st) return t.fail('the store of the first test was not built');
  await st.d2.docker(['rmi', st.untagged]);
  const diffs = await checkAfter(st.d2, st.before);
  t.log(diffs.join('\n'));
  t.true(diffs.length >= 2, 'image ls, inspect and save/run each notice');
  t.deepEqual(diffs.filter((l) => !l.includes(short(st!.untagged))), [], 'every difference names the removed image');
});
