// A second node process driven line by line: tests that need two real
// processes (cross-process ref counts, two strata processes on one driver
// home) send it commands and read its `ok …` / `error …` answers.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export class LineChild {
  private readonly proc: ChildProcessWithoutNullStreams;
  private readonly lines: string[] = [];
  private waiter: ((l: string) => void) | undefined;

  /** Run `script` (an ES module source, loaded through tsx) with `env` added. */
  constructor(script: string, env: Record<string, string>) {
    this.proc = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: repo, env: { ...process.env, ...env }, stdio: 'pipe',
    });
    this.proc.stderr.on('data', (b: Buffer) => process.stderr.write(`[child ${this.proc.pid}] ${b}`));
    createInterface({ input: this.proc.stdout }).on('line', (l) => {
      if (this.waiter) {
        const w = this.waiter;
        this.waiter = undefined;
        w(l);
      } else this.lines.push(l);
    });
  }

  get pid(): number {
    return this.proc.pid!;
  }

  /** The next line the child prints. */
  line(): Promise<string> {
    const l = this.lines.shift();
    return l !== undefined ? Promise.resolve(l) : new Promise<string>((r) => (this.waiter = r));
  }

  /** Send a command; the answer after `ok ` comes back, an `error …` answer throws. */
  async send(cmd: string): Promise<string> {
    this.proc.stdin.write(cmd + '\n');
    const l = await this.line();
    if (!l.startsWith('ok')) throw new Error(`child ${this.pid}: ${cmd}: ${l}`);
    return l.slice(3);
  }

  kill9(): Promise<void> {
    return new Promise((r) => {
      this.proc.once('exit', () => r());
      this.proc.kill('SIGKILL');
    });
  }

  /** End its input and wait for it to exit. */
  close(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return Promise.resolve();
    return new Promise((r) => {
      this.proc.once('exit', () => r());
      this.proc.stdin.end();
    });
  }
}
