// overlay2 as rootless Docker runs it: the whole overlay2 conformance file
// (native and forced-naive, plus its status check) run again in a user
// namespace, where the driver must mount with `userxattr` and keep opaque dirs
// in user.overlay.opaque. A child ava process, since a running Node process
// (many threads) cannot move itself into a new user namespace.
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { backingFsName } from '../../drivers/backing-fs.ts';
import { hasTool, isRoot, when } from '../helpers/require.ts';
import { overlayListed } from '../helpers/overlay-mount.ts';
import { runInUserNS, tapCounts } from '../helpers/userns.ts';

const repo = fileURLToPath(new URL('../..', import.meta.url));
// userxattr came with Linux 5.11; moby (and we) never use it on tmpfs, where the homes would be
const [major, minor] = os.release().split('.').map(Number);
const missing = [
  ...(isRoot ? [] : ['root']),
  ...(hasTool('unshare') ? [] : ['unshare (apt-get install util-linux)']),
  ...(overlayListed() ? [] : ['overlayfs']),
  ...(major > 5 || (major === 5 && minor >= 11) ? [] : ['Linux >= 5.11 (overlayfs userxattr)']),
  ...(backingFsName(os.tmpdir()) !== 'tmpfs' ? [] : [`a TMPDIR that is not tmpfs (${os.tmpdir()} is)`]),
];

when(missing.length === 0, missing.join(', '), { serial: true })(
  'overlay2 in a user namespace (userxattr): the conformance suite passes unchanged, native and naive', async (t) => {
    const ava = path.join(repo, 'node_modules/ava/entrypoints/cli.mjs');
    const r = await runInUserNS([process.execPath, ava, '--tap', 'test/conformance/overlay2.test.ts'], {
      cwd: repo, env: { ...process.env, STRATA_REQUIRE_ALL: '1' }, timeoutMs: 240_000,
    });
    const c = tapCounts(r.stdout);
    t.log(`inside: ${c.pass} passed, ${c.fail} failed, ${c.skip} skipped (exit ${r.code}${r.timedOut ? ', timed out' : ''})`);
    for (const s of r.stderr.split('\n').filter((l) => l.startsWith('skipping'))) t.log(s);
    const detail = `failing: ${c.failing.join('; ')}\n${r.stdout.split('\n').filter((l) => !/^ok /.test(l)).slice(0, 80).join('\n')}\n${r.stderr.slice(-3000)}`;
    t.false(r.timedOut, detail);
    t.is(c.fail, 0, detail);
    t.is(r.code, 0, detail);
    // the whole file ran: both registrations of the suite and the status check inside the namespace
    t.true(c.pass >= 40, `only ${c.pass} passed\n${detail}`);
    t.true(c.titles.some((x) => x.includes('overlay2-naive: DiffApply')), 'the naive registration ran');
    t.true(c.titles.some((x) => /overlay2 status: userxattr/.test(x) && !x.includes('# SKIP')), 'the status check ran');
    t.regex(r.stdout, /in a user namespace: true; home on tmpfs: false; status .*"userxattr":"true"/, 'inside, the driver mounted with userxattr');
  });
