// The --html page: self-contained (no network, no script needed to see it),
// inline SVG bar charts per workload (one bar per variant) and per driver (one
// bar per workload, as × reference), with the machine, kernel and file system.
// Every bar's label carries its number exactly as the JSON has it (data-value).
// A sweep (deep chains) also gets a line chart: time vs depth, one line per driver and peer.
import type { BenchReport, VariantResult, WorkloadResult } from '../suite/result.ts';

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

// one colour per line of a sweep chart (strata's drivers and the peers alike; the legend names them)
const LINE_COLOURS = ['#1f77b4', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf', '#ff7f0e'];

/** A sweep as lines: x = `at` on a log2 axis, y = median wall ms on a log10 axis, one polyline per series, each point labelled. */
function lineChart(w: WorkloadResult): string {
  const pts = w.variants.filter((v) => v.series !== undefined && v.at !== undefined);
  const series = [...new Set(pts.map((v) => v.series!))];
  const xs = [...new Set(pts.map((v) => v.at!))].sort((a, b) => a - b);
  const [W, H, L, R, T, B] = [720, 300, 60, 200, 24, 36];
  const lx = (x: number) => Math.log2(Math.max(x, 1));
  const [x0, x1] = [lx(xs[0]), lx(xs[xs.length - 1])];
  // y on a log10 axis of whole decades: the points span µs (a plain read) to 100s of ms (a process)
  const ly = (y: number) => Math.log10(Math.max(y, 1e-4));
  const d0 = Math.floor(Math.min(...pts.map((v) => ly(v.wallMs))));
  const d1 = Math.max(d0 + 1, Math.ceil(Math.max(...pts.map((v) => ly(v.wallMs)))));
  const px = (x: number) => L + (x1 > x0 ? ((lx(x) - x0) / (x1 - x0)) * (W - L - R) : (W - L - R) / 2);
  const py = (y: number) => H - B - ((ly(y) - d0) / (d1 - d0)) * (H - T - B);
  const decades = Array.from({ length: d1 - d0 + 1 }, (_, i) => 10 ** (d0 + i));
  const axes = `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#333"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#333"/>` +
    xs.map((x) => `<text x="${px(x).toFixed(1)}" y="${H - B + 14}" text-anchor="middle">${x}</text>`).join('') +
    `<text x="${((L + W - R) / 2).toFixed(1)}" y="${H - 4}" text-anchor="middle">${esc(w.sweep ?? '')}</text>` +
    decades.map((d) => `<line x1="${L}" y1="${py(d).toFixed(1)}" x2="${W - R}" y2="${py(d).toFixed(1)}" stroke="#ddd"/><text x="${L - 6}" y="${(py(d) + 4).toFixed(1)}" text-anchor="end">${d >= 1 ? d : d.toPrecision(1)} ms</text>`).join('');
  const lines = series.map((name, i) => {
    const c = LINE_COLOURS[i % LINE_COLOURS.length];
    const own = pts.filter((v) => v.series === name).sort((a, b) => a.at! - b.at!);
    const path = own.map((v) => `${px(v.at!).toFixed(1)},${py(v.wallMs).toFixed(1)}`).join(' ');
    const dots = own.map((v) => `<circle class="point" data-series="${esc(name)}" data-at="${v.at}" data-value="${v.wallMs}" cx="${px(v.at!).toFixed(1)}" cy="${py(v.wallMs).toFixed(1)}" r="3" fill="${c}"><title>${esc(`${name} @${v.at}: ${fmt(v.wallMs)} ms`)}</title></circle>`).join('');
    const legend = `<rect x="${W - R + 10}" y="${T + i * 16}" width="10" height="10" fill="${c}"/><text x="${W - R + 24}" y="${T + i * 16 + 9}">${esc(name)}</text>`;
    return `<polyline fill="none" stroke="${c}" stroke-width="2" points="${path}"/>${dots}${legend}`;
  }).join('');
  return `<svg id="sweep-${esc(w.name)}" class="chart" xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">` +
    `<text x="0" y="14" font-weight="bold">${esc(`${w.name}: median wall ms (log scale) vs ${w.sweep}`)}</text>${axes}${lines}</svg>`;
}

export function reportHtml(r: BenchReport): string {
  const perWorkload = r.workloads.map((w) => `<section><h2>${esc(w.name)}</h2><p>${esc(w.description)}</p>` +
    barChart(`workload-${w.name}`, `${w.name}: median wall ms (min–max)`, w.variants.map((v) => ({
      label: v.name, value: v.wallMs, text: `${fmt(v.wallMs)} ms (${fmt(v.spread.min)}–${fmt(v.spread.max)}), cpu ${fmt(v.cpuMs)}, ${(v.rssKB / 1024).toFixed(0)} MB`, colour: colour(v),
    }))) + (w.sweep ? lineChart(w) : '') + '</section>').join('\n');
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
<p>Bars: <span style="color:${STRATA_COLOUR}">strata</span>, <span style="color:${PEER_COLOUR}">peers</span> (${esc(r.peers.join(', '))}).
RSS: peers ${esc(r.rss.peer)}; strata ${esc(r.rss.strata)}.</p>
<h1>per workload</h1>
${perWorkload}
<h1>per driver</h1>
${perDriver}
</body></html>
`;
}
