// vm/run.sh from node: run one command as root in the VM (a kernel with
// device-mapper and friends, the host's root read-only, chosen dirs
// writable) and get its output and exit code. For tests and benches that
// need what this host's kernel lacks.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { findTool } from '../sys/find-tool.ts';

export const RUN_SH = path.join(path.dirname(fileURLToPath(import.meta.url)), 'run.sh');

/** Why no VM can be booted here (null: it can): qemu, a Debian kernel and its modules, root. */
export function vmMissing(): string | null {
  if (process.getuid?.() !== 0) return 'root (the VM shares / and runs its command as root)';
  if (!findTool('qemu-system-x86_64')) return 'qemu-system-x86_64 (apt-get install qemu-system-x86)';
  const kernels = fs.existsSync('/boot') ? fs.readdirSync('/boot').filter((n) => /^vmlinuz-.*-amd64$/.test(n)) : [];
  if (kernels.length === 0) return 'a /boot/vmlinuz-*-amd64 kernel (apt-get install linux-image-amd64)';
  if (!kernels.some((k) => fs.existsSync(`/lib/modules/${k.slice('vmlinuz-'.length)}`))) return 'the modules of a /boot/vmlinuz-*-amd64 kernel in /lib/modules';
  return null;
}

export interface VmRun {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface VmOptions {
  /** host dirs shared writable at their own paths (default: the cwd) */
  shares?: string[];
  /** names of host environment variables passed to the command */
  env?: string[];
  timeoutSec?: number;
  cwd?: string;
  /** each stderr chunk as it comes (progress) */
  onStderr?: (s: string) => void;
}

/** A started VM run: its result, and stop() (TERM to vm/run.sh, which ends qemu by pid) for teardowns. */
export function startVm(argv: string[], opts: VmOptions = {}): { done: Promise<VmRun>; stop: () => void } {
  // -l: the stdin pipe, never written, is the VM's lifeline: if this process dies (even SIGKILLed, an
  // ava worker ended on a timeout) its EOF makes vm/run.sh end qemu instead of leaving it to its -t timeout
  const args = ['-l', ...(opts.shares ?? []).flatMap((s) => ['-s', s]), ...(opts.env ?? []).flatMap((e) => ['-e', e])];
  if (opts.timeoutSec) args.push('-t', String(opts.timeoutSec));
  const t0 = performance.now();
  const child = spawn(RUN_SH, [...args, '--', ...argv], { cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
    opts.onStderr?.(d);
  });
  let exited = false;
  const done = new Promise<VmRun>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      exited = true;
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr, ms: Math.round(performance.now() - t0) });
    });
  });
  return { done, stop: () => { if (!exited) child.kill('SIGTERM'); } };
}

export function runInVm(argv: string[], opts: VmOptions = {}): Promise<VmRun> {
  return startVm(argv, opts).done;
}

/** One TAP result line of an ava run (`--tap`), with the YAML block that follows a failure. */
export interface TapResult {
  title: string;
  ok: boolean;
  skip: boolean;
  detail: string;
}

export function parseTap(out: string): TapResult[] {
  const results: TapResult[] = [];
  const lines = out.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /^(not )?ok \d+ - (.*?)(?: # (SKIP|TODO).*)?$/.exec(lines[i]!);
    if (!m) continue;
    const r: TapResult = { title: m[2]!, ok: !m[1], skip: m[3] !== undefined, detail: '' };
    if (lines[i + 1] === '  ---') {
      const end = lines.indexOf('  ...', i + 1);
      r.detail = lines.slice(i + 2, end < 0 ? undefined : end).join('\n');
      if (end > 0) i = end;
    }
    results.push(r);
  }
  return results;
}
