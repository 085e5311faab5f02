// The stdout table of a bench report: one row per workload × variant.
import { table } from '../../cli/output.ts';
import type { BenchReport } from '../suite/result.ts';

const ms = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 1 ? x.toFixed(1) : x.toFixed(3));
// two significant digits below 0.01, so a 1000× win does not print as 0.00
const ratio = (x: number) => (x >= 0.01 ? x.toFixed(2) : x.toPrecision(2));

export function reportTable(r: BenchReport): string {
  const head = `${r.machine.cores} × ${r.machine.cpu}, kernel ${r.kernel}, work dir on ${r.fs.type}${r.fs.btrfs ? `, btrfs on ${r.fs.btrfs}` : ''}; ` +
    `${r.rounds.measured} rounds after ${r.rounds.warmup} warmup, variants interleaved\n`;
  const rows = r.workloads.flatMap((w) => w.variants.map((v) => [
    w.name, v.name, ms(v.wallMs), `${ms(v.spread.min)}–${ms(v.spread.max)}`, ms(v.cpuMs), (v.rssKB / 1024).toFixed(0),
    v.ratio !== null ? ratio(v.ratio) : w.reference === null ? 'no peer' : '-',
  ]));
  const skipped = r.drivers.filter((d) => !d.ran).map((d) => `not run: ${d.name}: ${d.reason}`).join('\n');
  return head + table(['WORKLOAD', 'VARIANT', 'WALL ms', 'MIN–MAX', 'CPU ms', 'RSS MB', '× REF'], rows) +
    '× REF = wall median ÷ the workload\'s reference peer (containers-storage overlay, GNU tar; in a sweep its point at the same depth; < 1 = faster)\n' +
    `RSS: peers ${r.rss.peer}; strata ${r.rss.strata}\n` + (skipped ? skipped + '\n' : '');
}
