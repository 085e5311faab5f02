#!/usr/bin/env node
// The strata command. It runs the compiled CLI in dist/ (built by `npm run build`,
// which `npm ci` runs as the prepare step) when that build is newer than every
// TypeScript source, and otherwise the sources through tsx: an edited checkout
// never runs stale code, a fresh install starts twice as fast.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as path from 'node:path';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const SOURCES = ['cli', 'sys', 'archive', 'drivers', 'layerstore', 'inspect', 'migrate', 'bench', 'fixtures'];

// Run on every start: names are joined by hand (path.join per entry made this
// walk several times slower; readdir's names need no normalising).
function newestSource(dir) {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory()) newest = Math.max(newest, newestSource(p));
    else if (e.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

const built = path.join(root, 'dist', 'cli', 'main.js');
const current = existsSync(built) &&
  statSync(built).mtimeMs >= Math.max(...SOURCES.map((d) => newestSource(path.join(root, d))));
if (process.env.STRATA_TRACE_ENTRY) process.stderr.write(`strata: running ${current ? 'dist/cli/main.js' : 'cli/main.ts through tsx'}\n`);
if (current) {
  await import(pathToFileURL(built).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import(pathToFileURL(path.join(root, 'cli', 'main.ts')).href);
}
