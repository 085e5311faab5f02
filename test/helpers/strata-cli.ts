// Run the strata CLI as a user would: a child process, its stdout, stderr and exit code.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** `timeoutMs`: kill the child (SIGKILL) after that long; the result's code is then -1. */
export function strata(args: string[], opts: { timeoutMs?: number } = {}): CliResult {
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(repo, 'cli', 'main.ts'), ...args], {
    cwd: repo, encoding: 'utf8', maxBuffer: 256 << 20, env: { ...process.env, STRATA_DEBUG: '' },
    timeout: opts.timeoutMs, killSignal: 'SIGKILL',
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Start the strata CLI and leave it running (stdin a pipe): for tests that must act while it works. */
export function strataSpawn(args: string[]): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', path.join(repo, 'cli', 'main.ts'), ...args], {
    cwd: repo, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, STRATA_DEBUG: '' },
  });
}
