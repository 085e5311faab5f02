// Our extraction against dockerd's own: fixtures/golden/overlay2.tar.gz is a data
// root a real dockerd 20.10 built by pulling layer tars in (fixtures/golden/capture.ts),
// so each image layer's diff dir there is what moby's UnpackLayer made of that layer.
// The layer's exact tar comes back from its tar-split and that diff dir (checked
// against the DiffID); applied by strata into an empty directory in the overlay
// form, it must give the same tree: types, modes, owners, ns mtimes, xattrs
// (trusted.overlay.opaque included), hardlinks, whiteout devices. One difference
// is by design: moby leaves a whiteout device's times at "now", we give it the
// header's (so a re-export is reproducible); those two times are not compared.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { applyLayer } from '../archive/apply.ts';
import { manifestDiff, treeManifest } from '../archive/digest.ts';
import { archiveOf } from '../fixtures/golden/golden.ts';
import { assembleTar, DirFileGetter, readTarSplit } from '../layerstore/tar-split.ts';
import { hasTool, isRoot, when } from './helpers/require.ts';
import { tempDir } from './helpers/tar.ts';

const ready = isRoot && hasTool('tar') && hasTool('gzip');

/** A manifest line without the mtime of a whiteout (char 0/0), the one field moby leaves to the clock. */
function comparable(line: string): string {
  return /\tchar /.test(line) && / rdev=0:0(\s|$)/.test(line) ? line.replace(/ mtime=\S+/, ' mtime=*') : line;
}

when(ready, 'root, GNU tar and gzip (owners, trusted.* xattrs and whiteout devices of the golden store)')(
  'each layer dockerd unpacked into the golden overlay2 store, applied by strata, gives dockerd\'s tree', async (t) => {
    const { dir, cleanup } = tempDir('strata-apply-oracle-');
    t.teardown(cleanup);
    const root = path.join(dir, 'root');
    fs.mkdirSync(root);
    execFileSync('tar', ['-C', root, '-xzpf', archiveOf('overlay2'), '--xattrs', '--xattrs-include=trusted.*'], { stdio: ['ignore', 'ignore', 'pipe'] });
    const layerdb = path.join(root, 'image/overlay2/layerdb/sha256');
    const chains = fs.readdirSync(layerdb);
    t.true(chains.length >= 3, 'the store has its image layers');
    for (const chain of chains) {
      const meta = path.join(layerdb, chain);
      const diffDir = path.join(root, 'overlay2', fs.readFileSync(path.join(meta, 'cache-id'), 'utf8').trim(), 'diff');
      const problems: string[] = [];
      const chunks: Buffer[] = [];
      for await (const c of assembleTar(readTarSplit(path.join(meta, 'tar-split.json.gz')), new DirFileGetter(diffDir), (p, m) => problems.push(`${p}: ${m}`))) {
        chunks.push(Buffer.from(c));
      }
      const tar = Buffer.concat(chunks);
      t.deepEqual(problems, [], chain);
      t.is(`sha256:${createHash('sha256').update(tar).digest('hex')}`, fs.readFileSync(path.join(meta, 'diff'), 'utf8').trim(), `${chain}: the rebuilt tar is the layer's`);
      const ours = path.join(dir, 'ours', chain);
      fs.mkdirSync(ours, { recursive: true });
      await applyLayer(Readable.from([tar]), ours, { whiteouts: 'overlay' });
      const opts = { rootMetadata: false, ignoreXattrs: () => false };
      const [theirs, mine] = [await treeManifest(diffDir, opts), await treeManifest(ours, opts)];
      t.is(manifestDiff(theirs.map(comparable), mine.map(comparable)), '', `${chain}: dockerd's tree (-) and ours (+)`);
    }
  });
