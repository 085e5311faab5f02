// strata layer: one driver operation on one layer, for scripts and by hand.
//
//   strata layer create  ID [--parent P] [--rw] [--storage-opt k=v]
//   strata layer apply   ID [--parent P] [--file F]     tar on stdin (or F); prints the size
//   strata layer diff    ID [--parent P]                tar on stdout (never to a terminal)
//   strata layer changes ID [--parent P] [--json]       `C /path` lines like docker diff
//   strata layer size    ID [--parent P]                diffSize in bytes
//   strata layer mount   ID                             get(), kept after this process exits
//                                                       (Driver.persist); the path is the last line
//   strata layer umount  ID                             put(): releases such a kept reference
//   strata layer rm      ID
//   strata layer ls                                     ids (and parents where known)
//
// All take --driver NAME --home DIR, DIR being the driver's home such as
// /var/lib/docker/overlay2 (so the data root is its parent). mount and umount
// are reference counted across processes by mounting drivers; this command
// never calls the driver's cleanup(), which would unmount everything.
import type { CommandModule } from 'yargs';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { changeLetter, displayPath } from '../archive/types.ts';
import { InvalidParameterError, parseStorageOptKeyValue, validateId, type Driver } from '../drivers/driver.ts';
import { emit, table, UsageError } from './output.ts';

const ACTIONS = ['create', 'apply', 'diff', 'changes', 'size', 'mount', 'umount', 'rm', 'ls'] as const;
type Action = (typeof ACTIONS)[number];

interface LayerArgs {
  json: boolean;
  action?: Action;
  id?: string;
  driver?: string;
  home?: string;
  parent?: string;
  file?: string;
  rw: boolean;
  'storage-opt'?: string[];
}

/** The driver named by --driver, initialised in --home (whose basename must be the driver's name). */
async function openDriver(argv: LayerArgs): Promise<Driver> {
  if (!argv.driver) throw new UsageError('--driver NAME is required');
  if (!argv.home) throw new UsageError('--home DIR is required (the driver home, e.g. /var/lib/docker/overlay2)');
  // loaded on use, so that other commands start without the drivers
  await import('../drivers/all.ts');
  const { drivers, getDriver } = await import('../drivers/registry.ts');
  if (!drivers.has(argv.driver)) {
    throw new UsageError(`unknown driver ${JSON.stringify(argv.driver)} (this strata implements: ${drivers.names().join(', ')})`);
  }
  const home = path.resolve(argv.home);
  if (path.basename(home) !== argv.driver) {
    throw new UsageError(`--home must be <root>/${argv.driver}: drivers keep their data in a directory named after them (got ${home})`);
  }
  // drivers create their home on init; only `create` may start a new store
  const exists = fs.existsSync(home);
  if (argv.action !== 'create' && !exists) {
    throw new Error(`${home}: no such driver home (strata layer create makes one)`);
  }
  // an existing home is opened to manage it: rm, umount and ls then work
  // whatever the driver's probes say (a full disk), and what needs a probe
  // fails with the probe's reason
  return getDriver(argv.driver, path.dirname(home), [], { mode: exists ? 'manage' : 'use' });
}

function needId(argv: LayerArgs): string {
  if (!argv.id) throw new UsageError(`strata layer ${argv.action} needs a layer ID`);
  return argv.id;
}

const parentOf = (argv: LayerArgs): string | null => argv.parent || null;

/** --storage-opt key=value pairs (create only); anything else is a usage error naming the option. */
function storageOpts(argv: LayerArgs): Record<string, string> {
  const given = argv['storage-opt'] ?? [];
  if (given.length && argv.action !== 'create') throw new UsageError(`--storage-opt is for strata layer create only, not ${argv.action}`);
  const out: Record<string, string> = {};
  for (const o of given) {
    if (!o.includes('=')) throw new UsageError(`--storage-opt ${JSON.stringify(o)}: not key=value`);
    const [k, v] = parseStorageOptKeyValue(o);
    out[k] = v;
  }
  return out;
}

export const layerCommand: CommandModule<{ json: boolean }, LayerArgs> = {
  command: 'layer <action> [id]',
  describe: 'create, apply, diff, inspect, mount or remove one layer of a storage driver',
  builder: (y) =>
    y
      .positional('action', { choices: ACTIONS, describe: 'what to do' })
      .positional('id', { type: 'string', describe: 'layer id' })
      .option('driver', { type: 'string', describe: 'driver name (strata drivers lists them)' })
      .option('home', { type: 'string', describe: 'the driver home, e.g. /var/lib/docker/vfs' })
      .option('parent', { type: 'string', describe: 'parent layer id (create) or the layer to compare with (diff, changes, size, apply)' })
      .option('file', { type: 'string', describe: 'apply: read the tar from this file instead of stdin' })
      .option('rw', { type: 'boolean', default: false, describe: 'create: a read-write (container) layer' })
      .option('storage-opt', { type: 'string', array: true, describe: 'create: key=value storage option (e.g. size=10G)' }),
  handler: async (argv) => {
    // usage errors first, before any driver is touched
    if (!argv.action) throw new UsageError(`strata layer needs an action: ${ACTIONS.join('|')}`);
    if (argv.action !== 'ls') {
      try {
        validateId(needId(argv));
      } catch (e) {
        if (e instanceof InvalidParameterError) throw new UsageError(e.message);
        throw e;
      }
    }
    if (argv.action === 'diff' && process.stdout.isTTY) {
      throw new UsageError('refusing to write a tar to a terminal: redirect stdout to a file or a pipe');
    }
    if (argv.action === 'apply' && !argv.file && process.stdin.isTTY) {
      throw new UsageError('apply reads a layer tar on stdin (or --file F); stdin is a terminal');
    }
    const storageOpt = storageOpts(argv);
    const d = await openDriver(argv);
    const id = argv.id ?? '';
    switch (argv.action) {
      case 'create': {
        const opts = Object.keys(storageOpt).length ? { storageOpt } : undefined;
        try {
          if (argv.rw) await d.createReadWrite(id, parentOf(argv), opts);
          else await d.create(id, parentOf(argv), opts);
        } catch (e) {
          // the id was checked above: a bad parameter now is a storage option the driver refuses
          if (opts && e instanceof InvalidParameterError) {
            throw new UsageError(e.message.startsWith('--storage-opt') ? e.message : `--storage-opt ${argv['storage-opt']!.join(' ')}: ${e.message}`);
          }
          throw e;
        }
        emit(argv.json, { id, parent: parentOf(argv) }, () => process.stdout.write(`${id}\n`));
        break;
      }
      case 'apply': {
        if (argv.file && !fs.existsSync(argv.file)) throw new UsageError(`--file ${argv.file}: no such file`);
        const input = argv.file ? fs.createReadStream(argv.file, { highWaterMark: 1 << 20 }) : process.stdin;
        const size = await d.applyDiff(id, parentOf(argv), input);
        emit(argv.json, { id, size }, () => process.stdout.write(`${size}\n`));
        break;
      }
      case 'diff':
        await pipeline(d.diff(id, parentOf(argv)), process.stdout);
        break;
      case 'changes': {
        const changes = await d.changes(id, parentOf(argv));
        emit(argv.json, changes.map((c) => ({ path: displayPath(c.path), kind: changeLetter[c.kind] })), () => {
          process.stdout.write(changes.map((c) => `${changeLetter[c.kind]} ${displayPath(c.path)}\n`).join(''));
        });
        break;
      }
      case 'size': {
        const size = await d.diffSize(id, parentOf(argv));
        emit(argv.json, { id, size }, () => process.stdout.write(`${size}\n`));
        break;
      }
      case 'mount': {
        const p = await d.get(id);
        await d.persist?.(id); // held beyond this process, for a later `strata layer umount`
        emit(argv.json, { id, path: p }, () => process.stdout.write(`${p}\n`));
        break;
      }
      case 'umount':
        await d.put(id);
        emit(argv.json, { id }, () => {});
        break;
      case 'rm':
        await d.remove(id);
        emit(argv.json, { id }, () => {});
        break;
      case 'ls': {
        if (!d.layers) throw new Error(`${d.name}: this driver cannot list its layers`);
        const layers = d.layers();
        emit(argv.json, layers, () => {
          process.stdout.write(table(['ID', 'PARENT'], layers.map((l) => [l.id, l.parent === undefined ? '?' : l.parent === null ? '-' : l.parent])));
        });
        break;
      }
    }
  },
};
