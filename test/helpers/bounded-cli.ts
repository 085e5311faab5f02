// The strata CLI in a child with a time bound and its peak memory: for stores
// that could hang or exhaust a reader. A run killed at the bound reports
// timedOut instead of hanging the test.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const preload = path.join(repo, 'test', 'helpers', 'peak-rss.mjs');

export interface BoundedResult {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  /** peak RSS of the child in bytes (VmHWM), null when it did not exit by itself */
  peakRss: number | null;
  ms: number;
}

export function strataBounded(args: string[], timeoutMs: number): Promise<BoundedResult> {
  const hwm = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'strata-hwm-')), 'hwm');
  const t0 = Date.now();
  const child = spawn(process.execPath, ['--import', 'tsx', '--import', preload, path.join(repo, 'cli', 'main.ts'), ...args], {
    cwd: repo, env: { ...process.env, STRATA_DEBUG: '', STRATA_PEAK_RSS_FILE: hwm }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => { if (stdout.length < 1 << 20) stdout += d; });
  child.stderr.setEncoding('utf8').on('data', (d: string) => { if (stderr.length < 1 << 20) stderr += d; });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, timeoutMs);
  return new Promise((resolve) => {
    child.on('close', (code) => {
      clearTimeout(timer);
      let peakRss: number | null = null;
      try {
        const kb = fs.readFileSync(hwm, 'utf8');
        if (kb) peakRss = Number(kb) * 1024;
      } catch {
        // killed before exit
      }
      fs.rmSync(path.dirname(hwm), { recursive: true, force: true });
      resolve({ code, stdout, stderr, timedOut, peakRss, ms: Date.now() - t0 });
    });
  });
}
