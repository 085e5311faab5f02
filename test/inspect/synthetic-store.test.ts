// The speed-goal store generator (fixtures/synthetic-store.ts), small: the
// shape it promises, a clean verify, and its planted leftovers found by df.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeSyntheticStore } from '../../fixtures/synthetic-store.ts';
import { diskUsage } from '../../inspect/df.ts';
import { imageRows } from '../../inspect/images.ts';
import { openStore } from '../../layerstore/store.ts';
import { verifyStore } from '../../inspect/verify.ts';
import { isRoot, when } from '../helpers/require.ts';
import { duBytes } from '../helpers/store-copy.ts';

when(isRoot && fs.existsSync('/sys/module/overlay'), 'root and the overlay module')('40 images / 200 layers: shape, verify, leftovers', async (t) => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-synth-'));
  t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const root = path.join(tmp, 'root');
  const info = await writeSyntheticStore(root, 'overlay2', { images: 40, layers: 200, containers: 5 });
  const model = await openStore(root);
  t.is(model.images.size, 40);
  t.is(model.layers.size, 200);
  t.is(model.containers.length, 5);
  t.deepEqual(model.problems.list, []);
  // base images share their layers with the images built on them
  const depths = [...model.images.values()].map((i) => i.layers.length);
  t.is(Math.min(...depths), 10); // 4 base images × 10 layers = 20% of the 200
  t.is(Math.max(...depths), 15); // 160 layers over 36 images: 4 each, 16 of them 5
  t.true(imageRows(model).length >= 35);
  const v = await verifyStore(model);
  // the planted dangling l/ link is the one problem (orphans and -removing dirs are not damage)
  const links = info.leftovers.filter((p) => p.includes(`${path.sep}l${path.sep}`));
  t.deepEqual(v.problems.map((p) => p.path), links, JSON.stringify(v.problems.slice(0, 3)));
  t.regex(v.problems[0].message, /^layer link is dangling/);
  t.is(v.checked.layersReassembled, 200);
  const df = await diskUsage(model);
  t.is(df.total.disk, duBytes(root));
  const odd = df.driverDirs.filter((d) => d.class !== 'image-layer' && d.class !== 'container-layer' && d.class !== 'container-init' && d.class !== 'driver-metadata');
  t.deepEqual(odd.flatMap((d) => d.paths).sort(), info.leftovers.filter((p) => !p.includes(`${path.sep}l${path.sep}`)).sort());
  t.deepEqual(df.danglingLinks, info.leftovers.filter((p) => p.includes(`${path.sep}l${path.sep}`)));
});
