// The CLI contract: --help lists the commands, usage errors exit 2, failures
// exit 1 with a message on stderr, and read-only commands never create state.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tempDir } from './helpers/tar.ts';

const cli = path.join(import.meta.dirname, '..', 'cli', 'main.ts');
const strata = (args: string[]) => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', cli, ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

test('--help lists every command', (t) => {
  const r = strata(['--help']);
  t.is(r.code, 0);
  for (const c of ['version', 'compare', 'drivers', 'layer']) t.regex(r.out, new RegExp(`strata ${c}`));
});

test('usage errors exit 2 with the reason on stderr', (t) => {
  const unknown = strata(['bogus']);
  t.is(unknown.code, 2);
  t.regex(unknown.err, /Unknown argument: bogus/);
  t.is(unknown.out, '');
  const missing = strata(['layer', 'ls']);
  t.is(missing.code, 2);
  t.regex(missing.err, /--driver NAME is required/);
});

test('failures exit 1, and a read-only command on a missing home creates nothing', (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const home = path.join(dir, 'nothing-here', 'vfs');
  const r = strata(['layer', 'ls', '--driver', 'vfs', '--home', home]);
  t.is(r.code, 1);
  t.regex(r.err, /no such driver home/);
  t.false(fs.existsSync(path.join(dir, 'nothing-here')));
});

test('version --json is structured', (t) => {
  const r = strata(['version', '--json']);
  t.is(r.code, 0);
  t.is(JSON.parse(r.out).version, JSON.parse(fs.readFileSync(path.join(import.meta.dirname, '..', 'package.json'), 'utf8')).version);
});
