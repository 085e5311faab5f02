// Go's text/tabwriter, as the docker CLI uses it: cells end at '\t', a
// column is as wide as its widest cell plus `padding` (at least `minwidth`),
// columns are aligned per block of consecutive lines that have that column,
// and the last cell of a line is written as is. Padding is spaces, cells are
// left-aligned, widths count characters (runes).
//
//   docker ≤ 1.9   tabwriter.NewWriter(out, 20, 1, 3, ' ', 0)
//   docker ≥ 1.13  tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)  (cli/command/formatter)

export interface TabwriterOptions {
  minwidth: number;
  padding: number;
}

export const LEGACY_TABLE: TabwriterOptions = { minwidth: 20, padding: 3 };
export const MODERN_TABLE: TabwriterOptions = { minwidth: 10, padding: 3 };

function runeWidth(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/** Format tab-separated lines (no trailing newline in the items) the way Go's tabwriter would. */
export function tabwrite(lines: string[], opts: TabwriterOptions): string {
  const cells = lines.map((l) => l.split('\t'));
  const widths: number[] = [];
  let out = '';

  const write = (from: number, to: number) => {
    for (let i = from; i < to; i++) {
      const line = cells[i];
      let s = '';
      for (let j = 0; j < line.length; j++) {
        const c = line[j];
        if (j < widths.length && j < line.length - 1) s += c + ' '.repeat(Math.max(0, widths[j] - runeWidth(c)));
        else s += c;
      }
      out += s + '\n';
    }
  };

  const format = (line0: number, line1: number) => {
    const column = widths.length;
    for (let t = line0; t < line1; t++) {
      if (column >= cells[t].length - 1) continue;
      write(line0, t);
      line0 = t;
      let width = opts.minwidth;
      for (; t < line1; t++) {
        const line = cells[t];
        if (column >= line.length - 1) break;
        width = Math.max(width, runeWidth(line[column]) + opts.padding);
      }
      widths.push(width);
      format(line0, t);
      widths.pop();
      line0 = t;
      t--; // the loop's t++ brings us back to the line that ended the block
    }
    write(line0, line1);
  };

  format(0, cells.length);
  return out;
}

/** Rows of cells → tabwriter output (header first). */
export function tabTable(header: string[], rows: string[][], opts: TabwriterOptions): string {
  return tabwrite([header, ...rows].map((r) => r.join('\t')), opts);
}
