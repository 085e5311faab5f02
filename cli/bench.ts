// strata bench: every driver this host supports on the layer apply and diff
// paths, side by side with GNU tar and containers-storage (bench/suite).
import { writeFileSync } from 'node:fs';
import type { CommandModule } from 'yargs';
import { emit, UsageError } from './output.ts';

interface BenchArgs {
  json: boolean;
  quick: boolean;
  drivers?: string;
  workloads?: string;
  peer: string[];
  html?: string;
  tmpdir: string;
}

const list = (s: string | undefined) => (s ? s.split(',').map((x) => x.trim()).filter(Boolean) : undefined);

export const benchCommand: CommandModule<{ json: boolean }, BenchArgs> = {
  command: 'bench',
  describe: 'benchmark every driver here against GNU tar and containers-storage (table, --json, --html)',
  builder: (y) =>
    y
      .option('quick', { type: 'boolean', default: false, describe: 'small data, 3 rounds (about a minute)' })
      .option('drivers', { type: 'string', describe: 'comma-separated drivers (default: every usable one; devicemapper only when named)' })
      .option('workloads', { type: 'string', describe: 'comma-separated workloads (default: all)' })
      .option('peer', { type: 'array', string: true, default: [] as string[], choices: ['containers-storage'], describe: 'extra peers (GNU tar always runs)' })
      .option('html', { type: 'string', describe: 'also write a self-contained HTML report to this file' })
      .option('tmpdir', { type: 'string', default: '/dev/shm', describe: 'where the work dir is made (strata-bench-XXXXXX, removed at the end)' }),
  handler: async (argv) => {
    const { runBench, workloadNames } = await import('../bench/suite/run.ts');
    const workloads = list(argv.workloads);
    for (const w of workloads ?? []) if (!workloadNames().includes(w)) throw new UsageError(`--workloads: no workload named ${w} (${workloadNames().join(', ')})`);
    const tty = process.stderr.isTTY;
    const report = await runBench({
      quick: argv.quick, drivers: list(argv.drivers), workloads, peers: argv.peer, tmpdir: argv.tmpdir,
      log: (m) => { if (tty) process.stderr.write(`[bench] ${m}\n`); },
      warn: (m) => process.stderr.write(`strata bench: ${m}\n`),
    });
    if (argv.html) {
      const { reportHtml } = await import('../bench/report/html.ts');
      writeFileSync(argv.html, reportHtml(report));
    }
    const { reportTable } = await import('../bench/report/table.ts');
    emit(argv.json, report, () => process.stdout.write(reportTable(report)));
  },
};
