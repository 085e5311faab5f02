// strata images | history | inspect | diff | df | verify: read a Docker data
// root offline (no daemon, nothing written) and print what docker would, plus
// what docker cannot tell. All take --root (default /var/lib/docker), --json
// and --driver (which image/<driver> store, when a root holds several); a
// containerd root is detected under --root, or given with --containerd-root.
//
// Problems found while reading (a truncated JSON, a missing file) are printed
// on stderr, one per line with the file they are about, after the output;
// they make `verify` exit 1, the other commands still exit 0 with what could
// be read.
import type { Argv, CommandModule } from 'yargs';
import type { StoreModel } from '../layerstore/model.ts';
import type { Problem } from '../layerstore/problems.ts';
import { emit, UsageError } from './output.ts';

// The inspect modules are loaded by the command that needs them, not at
// start-up: every strata command pays for what the CLI imports eagerly.
const lib = {
  store: () => import('../layerstore/store.ts'),
  images: () => import('../inspect/images.ts'),
  history: () => import('../inspect/history.ts'),
  describe: () => import('../inspect/describe.ts'),
  diff: () => import('../inspect/diff.ts'),
  df: () => import('../inspect/df.ts'),
  verify: () => import('../inspect/verify.ts'),
  problems: () => import('../layerstore/problems.ts'),
  containerd: () => import('../layerstore/containerd/store.ts'),
  containerdDf: () => import('../inspect/containerd-df.ts'),
  containerdVerify: () => import('../inspect/containerd-verify.ts'),
};

interface StoreArgs {
  json: boolean;
  root: string;
  driver?: string;
  now?: string;
  'containerd-root'?: string;
  namespace?: string;
}

function storeOptions<T>(y: Argv<T>) {
  return y
    .option('root', { type: 'string', default: '/var/lib/docker', describe: 'Docker data root (or registry v1 storage root) to read' })
    .option('driver', { type: 'string', describe: 'storage driver whose metadata to read, when the root holds several' })
    .option('containerd-root', { type: 'string', describe: "containerd's root holding the images (Docker 29's containerd image store; --root is then Docker's, for its containers)" })
    .option('namespace', { type: 'string', describe: 'containerd namespace to read (default: moby, else the only one)' })
    .option('now', { type: 'string', describe: 'show CREATED relative to this time (RFC 3339) instead of the clock' });
}

function nowOf(argv: StoreArgs): Date {
  if (argv.now === undefined) return new Date();
  const d = new Date(argv.now);
  if (Number.isNaN(d.getTime())) throw new UsageError(`--now: not a time: ${JSON.stringify(argv.now)}`);
  return d;
}

async function open(argv: StoreArgs): Promise<StoreModel> {
  const { openStore } = await lib.store();
  // a Docker 29 host: images in containerd's root, containers' configs in Docker's
  const ctrRoot = argv['containerd-root'];
  if (ctrRoot !== undefined) return openStore(ctrRoot, { namespace: argv.namespace, dockerRoot: argv.root });
  return openStore(argv.root, { driver: argv.driver, namespace: argv.namespace });
}

/** Problems on stderr (both output modes: stdout stays parseable). */
async function reportProblems(problems: readonly Problem[]): Promise<void> {
  if (problems.length) process.stderr.write((await lib.problems()).formatProblems(problems).replace(/^(?=.)/gm, 'strata: '));
}

interface ImagesArgs extends StoreArgs {
  all: boolean;
  tree: boolean;
  trunc: boolean;
}

export const imagesCommand: CommandModule<{ json: boolean }, ImagesArgs> = {
  command: 'images',
  describe: 'list the images of a Docker data root like `docker images` of its era (--tree: the layer-sharing tree)',
  builder: (y) => storeOptions(y)
    .option('all', { alias: 'a', type: 'boolean', default: false, describe: 'show intermediate images too' })
    .option('tree', { type: 'boolean', default: false, describe: 'draw the layer-sharing tree (docker images --tree)' })
    .option('trunc', { type: 'boolean', default: true, describe: 'truncate ids to 12 characters (--no-trunc: full ids)' }) as unknown as Argv<ImagesArgs>,
  handler: async (argv) => {
    const model = await open(argv);
    const { imageRows, imageTree, renderImageTree, renderImages } = await lib.images();
    const opts = { all: argv.all, noTrunc: !argv.trunc, now: nowOf(argv) };
    if (argv.tree) {
      const roots = imageTree(model);
      emit(argv.json, roots, () => process.stdout.write(renderImageTree(model, roots, opts)));
    } else {
      const rows = imageRows(model, opts);
      emit(argv.json, rows, () => process.stdout.write(renderImages(model, rows, opts)));
    }
    await reportProblems(model.problems.list);
  },
};

interface HistoryArgs extends StoreArgs {
  image?: string;
  trunc: boolean;
}

export const historyCommand: CommandModule<{ json: boolean }, HistoryArgs> = {
  command: 'history <image>',
  describe: 'show the history of an image (docker history), read offline',
  builder: (y) => storeOptions(y)
    .positional('image', { type: 'string', describe: 'image id (or unique prefix), repo:tag or repo@digest' })
    .option('trunc', { type: 'boolean', default: true, describe: 'truncate ids and commands (--no-trunc: in full)' }) as unknown as Argv<HistoryArgs>,
  handler: async (argv) => {
    if (!argv.image) throw new UsageError('strata history needs an IMAGE');
    const model = await open(argv);
    const { imageHistory, renderHistory } = await lib.history();
    const rows = imageHistory(model, (await lib.store()).findImage(model, argv.image));
    emit(argv.json, rows, () => process.stdout.write(renderHistory(model, rows, { noTrunc: !argv.trunc, now: nowOf(argv) })));
    await reportProblems(model.problems.list);
  },
};

interface InspectArgs extends StoreArgs {
  ref?: string[];
}

export const inspectCommand: CommandModule<{ json: boolean }, InspectArgs> = {
  command: 'inspect <ref..>',
  describe: 'everything the store records about images, layers or containers (config, chain/diff/cache ids, driver dirs, sizes), as JSON',
  builder: (y) => storeOptions(y)
    .positional('ref', { type: 'string', array: true, describe: 'image (id, prefix, repo:tag), container (id, prefix, name) or layer (chain id, diff id, cache id, prefix)' }) as unknown as Argv<InspectArgs>,
  handler: async (argv) => {
    const refs = argv.ref ?? [];
    if (!refs.length) throw new UsageError('strata inspect needs an IMAGE, CONTAINER or LAYER');
    const model = await open(argv);
    const { describe } = await lib.describe();
    const out = refs.map((r) => describe(model, r));
    process.stdout.write(JSON.stringify(out, null, 2) + '\n');
    await reportProblems(model.problems.list);
  },
};

interface DiffArgs extends StoreArgs {
  a?: string;
  b?: string;
}

export const diffCommand: CommandModule<{ json: boolean }, DiffArgs> = {
  command: 'diff <a> [b]',
  describe: 'changes of a container against its image (docker diff), or files added/changed/removed between two images',
  builder: (y) => storeOptions(y)
    .positional('a', { type: 'string', describe: 'CONTAINER, or the first IMAGE' })
    .positional('b', { type: 'string', describe: 'the second IMAGE' }) as unknown as Argv<DiffArgs>,
  handler: async (argv) => {
    if (!argv.a) throw new UsageError('strata diff needs a CONTAINER or two IMAGEs');
    const model = await open(argv);
    const { changesJson, containerChanges, diffImages, renderChanges, renderImageDiff } = await lib.diff();
    if (argv.b === undefined) {
      const changes = await containerChanges(model, argv.a);
      emit(argv.json, changesJson(changes), () => process.stdout.write(renderChanges(changes)));
    } else {
      const { findImage } = await lib.store();
      const d = await diffImages(model, findImage(model, argv.a), findImage(model, argv.b));
      emit(argv.json, d, () => process.stdout.write(renderImageDiff(d)));
    }
    await reportProblems(model.problems.list);
  },
};

interface DfArgs extends StoreArgs {
  verbose: boolean;
}

export const dfCommand: CommandModule<{ json: boolean }, DfArgs> = {
  command: 'df',
  describe: 'disk usage like `docker system df [-v]`, plus every directory under the root accounted for (orphans, -removing, -init, dangling links)',
  builder: (y) => storeOptions(y)
    .option('verbose', { alias: 'v', type: 'boolean', default: false, describe: 'per image, container, volume and driver directory' }) as unknown as Argv<DfArgs>,
  handler: async (argv) => {
    const model = await open(argv);
    if ((await lib.containerd()).isContainerdModel(model)) {
      const { containerdDiskUsage, renderContainerdDf } = await lib.containerdDf();
      const report = containerdDiskUsage(model);
      emit(argv.json, report, () => process.stdout.write(renderContainerdDf(report, argv.verbose, nowOf(argv))));
      await reportProblems(model.problems.list);
      return;
    }
    const { diskUsage, renderDf } = await lib.df();
    const report = await diskUsage(model);
    emit(argv.json, report, () => process.stdout.write(renderDf(report, argv.verbose, nowOf(argv))));
    await reportProblems(model.problems.list);
  },
};

interface VerifyArgs extends StoreArgs {
  'metadata-only': boolean;
}

export const verifyCommand: CommandModule<{ json: boolean }, VerifyArgs> = {
  command: 'verify',
  describe: 'recompute image ids, chain ids, DiffIDs (tar-split reassembly, CRC-64 per file), sizes and links; exit 1 on any problem, each naming its file',
  builder: (y) => storeOptions(y)
    .option('metadata-only', { type: 'boolean', default: false, describe: 'skip rebuilding layer tars (no layer file is read)' }) as unknown as Argv<VerifyArgs>,
  handler: async (argv) => {
    const model = await open(argv);
    const opts = { content: !argv['metadata-only'] };
    if ((await lib.containerd()).isContainerdModel(model)) {
      const { verifyContainerdStore, renderContainerdVerify } = await lib.containerdVerify();
      const report = await verifyContainerdStore(model, opts);
      emit(argv.json, report, () => process.stdout.write(renderContainerdVerify(report)));
      await reportProblems(report.problems);
      if (!report.ok) process.exitCode = 1;
      return;
    }
    const { verifyStore, renderVerify } = await lib.verify();
    const report = await verifyStore(model, opts);
    emit(argv.json, report, () => process.stdout.write(renderVerify(report)));
    await reportProblems(report.problems);
    if (!report.ok) process.exitCode = 1;
  },
};
