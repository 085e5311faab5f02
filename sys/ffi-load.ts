// ffi-rs, loaded on first use and without its libc probe. Its index.js tells
// musl from glibc by process.report.getReport(): a full diagnostic report
// (libuv handles, network interfaces) that costs 20–45 ms of every command's
// start-up that touches a syscall. The answer is cheap to know here: a musl
// system has its loader in /lib (ld-musl-*), and strata binds glibc's
// libc.so.6 by name anyway (syscalls.ts). Where the loader is not glibc's, the
// real probe runs. Lazy so that a module which may list a directory (read-dir.ts)
// costs nothing to import.
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';

export type Ffi = typeof import('ffi-rs');

const muslLoader = () => existsSync('/lib') && readdirSync('/lib').some((n) => n.startsWith('ld-musl-'));

let loaded: Ffi | undefined;

export function loadFfi(): Ffi {
  return (loaded ??= loadUncached());
}

/** The key glibc's libc.so.6 is opened under (loadLibc). */
export const LIBC = 'libc';
let libcOpen = false;

/** ffi-rs with libc.so.6 opened as LIBC, once per process, for every module that calls into it. */
export function loadLibc(): Ffi {
  const ffi = loadFfi();
  if (!libcOpen) {
    ffi.open({ library: LIBC, path: 'libc.so.6' });
    libcOpen = true;
  }
  return ffi;
}

function loadUncached(): Ffi {
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
