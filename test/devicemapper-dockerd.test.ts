// A data root written by a real dockerd 20.10 on devicemapper, in the VM
// (devicemapper-dockerd-in-vm.ts: the oracle's sample store — an import, a
// Dockerfile build, one container run), read on this host, which has no
// device-mapper: `strata images`, `history` and `diff` on it, and every layer
// mounted through the read-only driver (its thin device rebuilt from the
// pool files) showing what the build put there.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { init } from '../drivers/devicemapper/devicemapper.ts';
import { runInVm, vmMissing } from '../vm/vm.ts';
import { dockerdAvailable } from './oracle/dockerd.ts';
import { CONTAINER, SAMPLE_REF, containerLayerOnDisk, imageLayersOnDisk, type SampleStore } from './oracle/store.ts';
import { when } from './helpers/require.ts';
import { strata } from './helpers/strata-cli.ts';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const missing = vmMissing() ?? (dockerdAvailable() ? null : 'dockerd (apt-get install docker.io)');
const inVm = when(missing === null, `a VM running dockerd on devicemapper: ${missing}`);

inVm('dockerd on devicemapper in the VM: its data root read on the host by strata images/history/diff and mounted layer by layer', async (t) => {
  t.timeout(25 * 60_000);
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-dm-dockerd-'));
  t.teardown(() => fs.rmSync(scratch, { recursive: true, force: true }));
  const r = await runInVm(['node', '--import=tsx', 'test/devicemapper-dockerd-in-vm.ts', scratch], { cwd: repo, shares: [scratch], timeoutSec: 1200 });
  t.log(`VM run: ${Math.round(r.ms / 1000)} s`);
  t.is(r.code, 0, r.stderr.slice(-3000));
  const store = JSON.parse(fs.readFileSync(path.join(scratch, 'store.json'), 'utf8')) as SampleStore;
  const root = path.join(scratch, 'root');
  fs.mkdirSync(root);
  execFileSync('tar', ['-C', root, '-xSf', path.join(scratch, 'data-root.tar')]);
  fs.rmSync(path.join(scratch, 'data-root.tar'));

  const images = strata(['images', '--root', root, '--json']);
  t.is(images.code, 0, images.stderr);
  const shortId = store.image.id.replace('sha256:', '').slice(0, 12);
  t.true(images.stdout.includes(shortId), `images lists ${shortId}: ${images.stdout}`);
  const history = strata(['history', '--root', root, SAMPLE_REF]);
  t.is(history.code, 0, history.stderr);
  t.regex(history.stdout, /ADD file:/);
  t.regex(history.stdout, /Imported from -/);
  const diff = strata(['diff', '--root', root, CONTAINER]);
  t.is(diff.code, 0, diff.stderr);
  for (const line of ['A /run-added.txt', 'C /etc/base.txt', 'D /data/keep/k.txt']) t.true(diff.stdout.split('\n').includes(line), `diff has ${line}: ${diff.stdout}`);

  const d = await init(path.join(root, 'devicemapper'), [], { mode: 'read-only' });
  t.teardown(() => d.cleanup());
  const layers = imageLayersOnDisk(root, 'devicemapper', store.image.id);
  const seen: string[] = [];
  for (const l of layers) {
    const dir = await d.get(l.cacheId);
    try {
      if (fs.existsSync(path.join(dir, 'added.txt'))) seen.push('added.txt');
      t.true(fs.existsSync(path.join(dir, 'bin')), `layer ${l.cacheId} holds the whole tree (bin/)`);
    } finally {
      await d.put(l.cacheId);
    }
  }
  t.true(seen.length >= 1, 'the ADD layer and those above it show /added.txt');
  const c = containerLayerOnDisk(root, 'devicemapper', store.container.id);
  const rw = await d.get(c.mountId);
  try {
    t.is(fs.readFileSync(path.join(rw, 'run-added.txt'), 'utf8'), 'run-added\n');
    t.false(fs.existsSync(path.join(rw, 'data/keep/k.txt')));
  } finally {
    await d.put(c.mountId);
  }
});
