// The --html page: self-contained (no network, no script needed to see it),
// inline SVG bar charts per workload (one bar per variant) and per driver (one
// bar per workload, as × reference), with the machine, kernel and file system.
// Every bar's label carries its number exactly as the JSON has it (data-value).
import type { BenchReport, VariantResult } from '../suite/result.ts';

const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 1 ? x.toFixed(1) : x.toFixed(3));
export const STRATA_COLOUR = '#1f77b4';
export const PEER_COLOUR = '#ff7f0e';

interface Bar { label: string; value: number; text: string; colour: string }

function barChart(id: string, title: string, bars: Bar[]): string {
  const rowH = 22;
  const w = 720;
  const labelW = 220;
  const max = Math.max(...bars.map((b) => b.value), 1e-9);
  const h = bars.length * rowH + 30;
  const rows = bars.map((b, i) => {
    const y = 24 + i * rowH;
    const bw = Math.max(1, ((w - labelW - 110) * b.value) / max);
    return `<text x="${labelW - 6}" y="${y + 14}" text-anchor="end">${esc(b.label)}</text>` +
      `<rect x="${labelW}" y="${y + 2}" width="${bw.toFixed(1)}" height="${rowH - 6}" fill="${b.colour}"/>` +
      `<text class="value" data-value="${b.value}" x="${(labelW + bw + 4).toFixed(1)}" y="${y + 14}">${esc(b.text)}</text>`;
  }).join('');
  return `<svg id="${esc(id)}" class="chart" xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif" font-size="12">` +
    `<text x="0" y="14" font-weight="bold">${esc(title)}</text>${rows}</svg>`;
}

const colour = (v: VariantResult) => (v.kind === 'peer' ? PEER_COLOUR : STRATA_COLOUR);

export function reportHtml(r: BenchReport): string {
  const perWorkload = r.workloads.map((w) => `<section><h2>${esc(w.name)}</h2><p>${esc(w.description)}</p>` +
    barChart(`workload-${w.name}`, `${w.name}: median wall ms (min–max)`, w.variants.map((v) => ({
      label: v.name, value: v.wallMs, text: `${fmt(v.wallMs)} ms (${fmt(v.spread.min)}–${fmt(v.spread.max)}), cpu ${fmt(v.cpuMs)}, ${(v.rssKB / 1024).toFixed(0)} MB`, colour: colour(v),
    }))) + '</section>').join('\n');
  const driverNames = r.drivers.filter((d) => d.ran).map((d) => d.name);
  const perDriver = driverNames.map((d) => {
    const bars = r.workloads.flatMap((w) => w.variants.filter((v) => v.name === d && v.ratio !== null).map((v) => ({
      label: w.name, value: v.ratio!, text: `× ${v.ratio!.toFixed(2)} of ${w.reference}`, colour: STRATA_COLOUR,
    })));
    return bars.length ? `<section><h2>driver ${esc(d)}</h2>${barChart(`driver-${d}`, `${d}: wall ÷ reference peer (< 1 = faster)`, bars)}</section>` : '';
  }).join('\n');
  const m = r.machine;
  return `<!doctype html><html><head><meta charset="utf-8"><title>strata bench ${esc(r.date)}</title>
<style>body{font-family:sans-serif;margin:2em;max-width:60em}svg text.value{fill:#333}</style></head><body>
<h1>strata bench</h1>
<p id="machine">${esc(`${m.cores} × ${m.cpu}, ${(m.memoryBytes / 2 ** 30).toFixed(1)} GiB, node ${m.node}`)}; kernel <span id="kernel">${esc(r.kernel)}</span>;
work dir on <span id="fs">${esc(r.fs.type)}</span>${r.fs.btrfs ? `, btrfs on ${esc(r.fs.btrfs)}` : ''}; ${r.quick ? 'quick run' : 'full run'}, ${r.rounds.measured} rounds, ${esc(r.date)}</p>
<p>Bars: <span style="color:${STRATA_COLOUR}">strata</span>, <span style="color:${PEER_COLOUR}">peers</span> (${esc(r.peers.join(', '))}).</p>
<h1>per workload</h1>
${perWorkload}
<h1>per driver</h1>
${perDriver}
</body></html>
`;
}
