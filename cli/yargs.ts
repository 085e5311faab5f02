// yargs without its help renderer at start-up. yargs' own entry (index.mjs,
// lib/platform-shims/esm.mjs) imports cliui and string-width eagerly, and
// string-width builds an Intl.Segmenter and compiles its Unicode-property
// regexes as it loads: more than half of what importing yargs costs, for
// output only `--help` prints (usage.js help() is their one user; our failures
// print one line, no help). This builds the same yargs from the same factory
// with the same platform shim, except that those two are required on first
// use (require of an ES module: node ≥ 20.19, package.json engines).
//
// It reaches past yargs' exports map into build/lib (resolved from the
// package's own entry), so it is tied to yargs' layout: test/cli.test.ts runs
// `--help` and usage errors through it.
import type { Argv } from 'yargs';
import { notStrictEqual, strictEqual } from 'node:assert';
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { inspect } from 'node:util';
import { fileURLToPath, pathToFileURL } from 'node:url';

const require = createRequire(import.meta.url);

type Factory = (args: string[], cwd?: string) => Argv;

/** A yargs instance maker, as `import yargs from 'yargs'` gives, with the help renderer loaded on use. */
export async function loadYargs(): Promise<Factory> {
  // …/node_modules/yargs/index.mjs; its dependencies resolved from there, as its own imports are
  const entry = require.resolve('yargs');
  const dir = path.dirname(entry);
  const dep = createRequire(entry);
  const [{ YargsFactory }, { getProcessArgvBin }] = await Promise.all([
    import(pathToFileURL(path.join(dir, 'build/lib/yargs-factory.js')).href),
    import(pathToFileURL(path.join(dir, 'build/lib/utils/process-argv.js')).href),
  ]);
  const getCallerFile = dep('get-caller-file') as (depth: number) => string;
  const y18n = dep('y18n') as (o: { directory: string; updateFiles: boolean }) => unknown;
  const mainFilename = entry.substring(0, entry.lastIndexOf('node_modules'));
  // lib/platform-shims/esm.mjs, field for field
  return YargsFactory({
    assert: { notStrictEqual, strictEqual },
    cliui: (opts: unknown) => (dep('cliui') as (o: unknown) => unknown)(opts),
    findUp: dep('escalade/sync'),
    getEnv: (key: string) => process.env[key],
    inspect,
    getProcessArgvBin,
    mainFilename: mainFilename || process.cwd(),
    Parser: dep('yargs-parser'),
    path: { basename: path.basename, dirname: path.dirname, extname: path.extname, relative: path.relative, resolve: path.resolve, join: path.join },
    process: {
      argv: () => process.argv,
      cwd: process.cwd,
      emitWarning: (warning: string, type: string) => process.emitWarning(warning, type),
      execPath: () => process.execPath,
      exit: (code: number) => process.exit(code),
      nextTick: process.nextTick,
      stdColumns: typeof process.stdout.columns !== 'undefined' ? process.stdout.columns : null,
    },
    readFileSync,
    readdirSync,
    require: dep,
    getCallerFile: () => {
      const callerFile = getCallerFile(3);
      return callerFile.match(/^file:\/\//) ? fileURLToPath(callerFile) : callerFile;
    },
    stringWidth: (s: string) => (dep('string-width') as { default: (s: string) => number }).default(s),
    y18n: y18n({ directory: path.join(dir, 'locales'), updateFiles: false }),
  }) as Factory;
}
