// What is wrong with a store, as a list: every reader and view records a
// problem (with the file it is about) and goes on with what it can read, so a
// damaged store still gets a report. Nothing here throws at the user.

/** `error`: the store is damaged or inconsistent (verify exits 1); `warning`: worth knowing, not damage. */
export type Severity = 'error' | 'warning';

export interface Problem {
  /** the file or directory the problem is about (absolute) */
  path: string;
  message: string;
  severity: Severity;
}

/** An ordered, de-duplicated collection of problems. */
export class Problems {
  readonly list: Problem[] = [];
  private readonly seen = new Set<string>();

  add(path: string, message: string, severity: Severity = 'error'): void {
    const key = `${severity}\0${path}\0${message}`;
    if (this.seen.has(key)) return;
    this.seen.add(key);
    this.list.push({ path, message, severity });
  }

  warn(path: string, message: string): void {
    this.add(path, message, 'warning');
  }

  get errors(): Problem[] {
    return this.list.filter((p) => p.severity === 'error');
  }

  get size(): number {
    return this.list.length;
  }
}

/** A failure of an inspect operation that has no sensible partial answer (unknown image name, no store at the root). */
export class InspectError extends Error {
  /** the file or directory concerned, when there is one */
  readonly path: string | undefined;
  constructor(message: string, path?: string) {
    super(message);
    this.name = 'InspectError';
    this.path = path;
  }
}

/** Problems as text lines, `error: <path>: <message>`. */
export function formatProblems(problems: readonly Problem[]): string {
  return problems.map((p) => `${p.severity}: ${p.path}: ${p.message}\n`).join('');
}
