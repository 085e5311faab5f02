// ffi-rs, loaded without its libc probe. Its index.js tells musl from glibc by
// process.report.getReport(): a full diagnostic report (libuv handles, network
// interfaces) that costs 20–45 ms of every command's start-up that touches a
// syscall. The answer is cheap to know here: a musl system has its loader in
// /lib (ld-musl-*), and strata binds glibc's libc.so.6 by name anyway
// (syscalls.ts). Where the loader is not glibc's, the real probe runs.
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';

type Ffi = typeof import('ffi-rs');

const muslLoader = () => existsSync('/lib') && readdirSync('/lib').some((n) => n.startsWith('ld-musl-'));

function loadFfi(): Ffi {
  const require = createRequire(import.meta.url);
  const report = process.report;
  if (!report || muslLoader()) return require('ffi-rs') as Ffi;
  const real = report.getReport;
  report.getReport = (() => ({ header: { glibcVersionRuntime: 'glibc' } })) as unknown as typeof report.getReport;
  try {
    return require('ffi-rs') as Ffi;
  } finally {
    report.getReport = real;
  }
}

const ffi = loadFfi();
export const { open, load, define, DataType } = ffi;
export type DataType = import('ffi-rs').DataType;
