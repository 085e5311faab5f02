// strata compare --sample: the embedded sample image through apply → export → re-apply in
// every whiteout format, with tree-digest checks. Exit 1 when a check fails.
import type { CommandModule } from 'yargs';
import type { CompareReport } from '../bench/compare.ts';
import { emit, table, UsageError } from './output.ts';

interface CompareArgs {
  json: boolean;
  sample: boolean;
  keep: boolean;
}

export const compareCommand: CommandModule<{ json: boolean }, CompareArgs> = {
  command: 'compare',
  describe: 'apply, export and re-apply the sample image in every format and check the tree digests',
  builder: (y) =>
    y
      .option('sample', { type: 'boolean', default: false, describe: 'use the embedded sample image (3 layers)' })
      .option('keep', { type: 'boolean', default: false, describe: 'keep the work dir (its path is printed)' }),
  handler: async (argv) => {
    if (!argv.sample) throw new UsageError('compare needs --sample (the embedded sample image is the only source so far)');
    // loaded on use: start-up of every other command should not pay for the engine and drivers
    const { compareSample } = await import('../bench/compare.ts');
    const report = await compareSample({ keep: argv.keep });
    emit(argv.json, report, () => printReport(report));
    if (!report.ok) process.exitCode = 1;
  },
};

const ms = (v: number | undefined) => (v === undefined ? '-' : v.toFixed(1));
const short = (d: string | undefined) => (d === undefined ? '-' : d.replace(/^([a-z0-9]+:)?(.{12}).*$/, '$1$2'));

function printReport(r: CompareReport): void {
  const out = process.stdout;
  out.write('sample image\n');
  out.write(table(['LAYER', 'ENTRIES', 'TAR BYTES', 'DIFFID', 'DESCRIPTION'],
    r.image.map((l) => [l.name, String(l.entries), String(l.bytes), short(l.diffId), l.description])));
  out.write('\napply / export / re-apply (ms)\n');
  out.write(table(['FORMAT', 'LAYER', 'APPLY', 'SIZE', 'EXPORT', 'EXPORT BYTES', 'RE-APPLY', 'DIGEST', 'RE-APPLIED', 'MATCH'],
    r.runs.map((x) => [x.format, x.layer, ms(x.applyMs), String(x.size), ms(x.exportMs), x.exportBytes === undefined ? '-' : String(x.exportBytes),
      ms(x.reapplyMs), short(x.digest), short(x.reapplyDigest), x.match ?? '-'])));
  if (r.drivers.length > 0) {
    out.write('\nstorage drivers: applyDiff / diff per layer (ms), then get + digest of the top layer\n');
    const rows: string[][] = [];
    for (const d of r.drivers) {
      if (!d.usable) {
        rows.push([d.driver, 'not usable here', '-', '-', '-', '-', d.reason ?? '']);
        continue;
      }
      for (const l of d.layers) rows.push([d.driver, l.layer, ms(l.applyMs), String(l.size), ms(l.diffMs), String(l.diffBytes), '']);
      rows.push([d.driver, 'top (get)', ms(d.getMs), '-', '-', '-', d.topDigest ? `digest ${d.topDigest}` : `error: ${d.reason ?? '?'}`]);
    }
    out.write(table(['DRIVER', 'LAYER', 'APPLYDIFF', 'SIZE', 'DIFF', 'DIFF BYTES', 'NOTE'], rows));
  }
  out.write('\nchecks\n');
  for (const c of r.checks) {
    out.write(`${c.ok ? 'ok  ' : 'FAIL'}  ${c.name}\n`);
    if (!c.ok && c.detail) out.write(c.detail.replace(/^/gm, '        ') + '\n');
  }
  const failed = r.checks.filter((c) => !c.ok).length;
  out.write(`\n${r.checks.length - failed} checks passed, ${failed} failed${r.workDir ? ` (work dir kept: ${r.workDir})` : ''}\n`);
}
