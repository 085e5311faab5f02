// strata migrate: move a data root to another storage driver, offline, images
// and containers kept (migrate/migrate.ts does it; this parses and prints).
// Progress: a bar on stderr when it is a terminal; with --json, one JSON event
// a line on stdout and the result last (--dry-run --json: the plan alone).
import type { CommandModule } from 'yargs';
import { UsageError } from './output.ts';

interface MigrateArgs {
  json: boolean;
  root?: string;
  to?: string;
  from: string;
  'dry-run': boolean;
  resume: boolean;
  rollback: boolean;
  'delete-source': boolean;
}

const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;

/** One line of the bar, redrawn in place. */
function bar(done: number, total: number, bytes: number, t0: number): string {
  const width = 30;
  const fill = total ? Math.round((done / total) * width) : width;
  const secs = (performance.now() - t0) / 1000;
  const eta = done ? Math.round((secs / done) * (total - done)) : 0;
  return `\r[${'#'.repeat(fill)}${' '.repeat(width - fill)}] ${done}/${total} layers  ${mb(bytes)}  ETA ${eta}s `;
}

export const migrateCommand: CommandModule<{ json: boolean }, MigrateArgs> = {
  command: 'migrate',
  describe: 'move a Docker data root to another storage driver offline, images and containers kept',
  builder: (y) =>
    y
      .option('root', { type: 'string', describe: 'the Docker data root (no daemon running on it)' })
      .option('to', { type: 'string', describe: 'the target storage driver' })
      .option('from', { type: 'string', default: 'auto', describe: 'the source driver (auto: the one image/<driver> of the root)' })
      .option('dry-run', { type: 'boolean', default: false, describe: 'print the plan and stop' })
      .option('resume', { type: 'boolean', default: false, describe: 'continue a migration that was killed' })
      .option('rollback', { type: 'boolean', default: false, describe: 'undo a started or finished migration' })
      .option('delete-source', { type: 'boolean', default: false, describe: 'remove the source driver home and metadata after a verified run' })
      .check((a) => {
        if (!a.root) throw new UsageError('--root DIR is required');
        if (!a.to && !a.rollback) throw new UsageError('--to DRIVER is required');
        if ([a.resume, a.rollback, a['dry-run']].filter(Boolean).length > 1) throw new UsageError('--dry-run, --resume and --rollback exclude each other');
        if (a.rollback && a['delete-source']) throw new UsageError('--delete-source makes no sense with --rollback');
        return true;
      }),
  handler: async (argv) => {
    const [{ runMigration }, { outOfSpace }] = await Promise.all([import('../migrate/migrate.ts'), import('../migrate/plan.ts')]);
    const tty = !argv.json && process.stderr.isTTY;
    const t0 = performance.now();
    let total = 0;
    const out = (v: unknown): void => void process.stdout.write(JSON.stringify(v) + "\n");
    const result = await runMigration(
      { root: argv.root!, to: argv.to ?? '', from: argv.from, dryRun: argv['dry-run'], resume: argv.resume, rollback: argv.rollback, deleteSource: argv['delete-source'] },
      (e) => {
        if (e.event === 'plan') total = e.layers;
        if (argv.json && !argv['dry-run']) out(e);
        else if (tty && e.event === 'layer') process.stderr.write(bar(e.index, total, e.bytes, t0));
      },
    ).catch((e: unknown) => {
      if (tty) process.stderr.write('\n');
      throw outOfSpace(e) ?? e;
    });
    if (tty) process.stderr.write('\n');
    if (result.action === 'dry-run') {
      const p = result.plan!;
      if (argv.json) return out(p);
      const kinds = (k: string) => p.layers.filter((l) => l.kind === k).length;
      process.stdout.write(`migrate ${p.root}: ${p.from} → ${p.to}\n`
        + `  layers      ${p.layers.length} (${kinds('image')} image, ${kinds('init')} init, ${kinds('rw')} read-write)\n`
        + `  containers  ${p.containers.length}\n`
        + `  to copy     ${mb(p.bytesToCopy)}\n  to link     ${mb(p.bytesToLink)}\n`
        + `  inodes      ${p.inodes} needed, ${p.free.inodes === null ? 'no inode limit on this filesystem' : `${p.free.inodes} free`}\n`
        + `  free        ${mb(p.free.bytes)}\n  estimate    ${p.estimateSeconds} s\n`);
      return;
    }
    if (argv.json) return out({ event: 'result', ...result, plan: undefined });
    if (result.action === 'rolled-back') process.stdout.write(`rolled back ${argv.root}\n`);
    else process.stdout.write(`migrated ${argv.root} to ${argv.to}: ${result.layersMoved} layers, ${mb(result.bytes)} in ${result.seconds.toFixed(1)} s\n`);
  },
};
