// Printing helpers shared by the commands: tables for people, JSON for programs,
// and one place that turns an error into a message and an exit code.

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Print `value` as JSON, or call `human` to print it for people. */
export function emit(json: boolean, value: unknown, human: () => void): void {
  if (json) process.stdout.write(JSON.stringify(value, null, 2) + '\n');
  else human();
}

/** Left-aligned columns separated by three spaces, like the docker CLI's tables. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join('   ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

/** Message on stderr, exit code back: 2 for usage errors, 1 for everything else. */
export function reportError(err: unknown): number {
  if (err instanceof UsageError) {
    // one line: some yargs messages come on several ('Invalid values:\n  Argument: ...')
    process.stderr.write(`strata: ${err.message.replace(/\s*\n\s*/g, ' ')} (strata --help lists commands and options)\n`);
    return 2;
  }
  let msg = err instanceof Error ? err.message : String(err);
  // the drivers' refusals keep moby's message and say why in `detail`
  const detail = (err as { detail?: unknown } | null)?.detail;
  if (typeof detail === 'string' && detail) msg += ` (${detail})`;
  process.stderr.write(`strata: ${msg.replace(/\n/g, ' ')}\n`);
  if (process.env.STRATA_DEBUG && err instanceof Error && err.stack) process.stderr.write(err.stack + '\n');
  return 1;
}
