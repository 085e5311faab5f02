// The CLI contract: --help lists the commands, usage errors exit 2, failures
// exit 1 with a message on stderr, and read-only commands never create state.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tempDir } from './helpers/tar.ts';
import { strata as run, type CliResult } from './helpers/strata-cli.ts';

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

test.serial('bin/strata.js runs the compiled CLI only while it is newer than every source', (t) => {
  const repoDir = path.join(import.meta.dirname, '..');
  const build = spawnSync('npm', ['run', 'build'], { cwd: repoDir, encoding: 'utf8' });
  t.is(build.status, 0, build.stderr);
  const entry = () => {
    const r = spawnSync(process.execPath, [path.join(repoDir, 'bin', 'strata.js'), 'version'], {
      encoding: 'utf8', env: { ...process.env, STRATA_TRACE_ENTRY: '1' },
    });
    t.is(r.status, 0, r.stderr);
    t.regex(r.stdout, /^strata \d+\.\d+\.\d+/);
    return r.stderr;
  };
  t.regex(entry(), /running dist\/cli\/main\.js/);
  const built = path.join(repoDir, 'dist', 'cli', 'main.js');
  fs.utimesSync(built, 0, 0); // older than the sources: stale
  t.regex(entry(), /running cli\/main\.ts through tsx/);
  t.is(spawnSync('npm', ['run', 'build'], { cwd: repoDir }).status, 0); // leave a current build behind
});

/** exit 2, nothing on stdout, exactly one stderr line matching `re` */
function usageLine(t: { is: (a: unknown, b: unknown, m?: string) => void; regex: (s: string, re: RegExp, m?: string) => void }, r: CliResult, re: RegExp, what: string): void {
  t.is(r.code, 2, `${what}: ${r.stderr}`);
  t.is(r.stdout, '', what);
  t.is(r.stderr.split('\n').length, 2, `${what}: one line: ${JSON.stringify(r.stderr)}`);
  t.regex(r.stderr, re, what);
}

test('a string option given without its value is a usage error, never its default (every command, every such option)', (t) => {
  const cases: [string[], string][] = [
    [['images', '--root'], 'root'],
    [['images', '--root', '--json'], 'root'], // followed by another option: still no value
    [['images', '--driver'], 'driver'],
    [['history', 'img', '--root'], 'root'],
    [['inspect', 'x', '--now'], 'now'],
    [['diff', 'a', '--root'], 'root'],
    [['df', '--root'], 'root'],
    [['verify', '--driver', '--root', '/x'], 'driver'],
    [['drivers', '--root'], 'root'],
    [['layer', 'ls', '--driver', 'vfs', '--home'], 'home'],
    [['layer', 'ls', '--driver'], 'driver'],
    [['layer', 'create', 'x', '--driver', 'vfs', '--home', '/nonexistent/vfs', '--parent'], 'parent'],
    [['layer', 'create', 'x', '--driver', 'vfs', '--home', '/nonexistent/vfs', '--storage-opt'], 'storage-opt'],
    [['layer', 'apply', 'x', '--driver', 'vfs', '--home', '/nonexistent/vfs', '--file'], 'file'],
  ];
  for (const [args, opt] of cases) usageLine(t, run(args), new RegExp(`^strata: --${opt} needs a value`), args.join(' '));
});

test('an empty option value (--root= or --root "") is a usage error, never the current directory', (t) => {
  const cases: [string[], string][] = [
    [['images', '--root='], 'root'],
    [['images', '--root', ''], 'root'],
    [['verify', '--root', '', '--json'], 'root'],
    [['df', '-v', '--root='], 'root'],
    [['layer', 'ls', '--driver', 'vfs', '--home='], 'home'],
    [['layer', 'ls', '--driver=', '--home', '/nonexistent/vfs'], 'driver'],
    [['layer', 'create', 'x', '--driver', 'vfs', '--home', '/nonexistent/vfs', '--storage-opt='], 'storage-opt'],
  ];
  for (const [args, opt] of cases) usageLine(t, run(args), new RegExp(`^strata: --${opt} needs a value`), JSON.stringify(args));
});

test('a usage error yargs words on several lines is still one line', (t) => {
  usageLine(t, run(['layer', 'bogus', 'x', '--driver', 'vfs', '--home', '/nonexistent/vfs']), /^strata: Invalid values: +Argument: action, Given: "bogus"/, 'bad action');
});

test('--storage-opt that is not key=value, or that the driver does not know, is a usage error naming the option', (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const home = path.join(dir, 'vfs');
  const on = ['--driver', 'vfs', '--home', home];
  usageLine(t, run(['layer', 'create', 'x', ...on, '--storage-opt', 'junk']), /^strata: --storage-opt "junk": not key=value/, 'junk');
  t.false(fs.existsSync(home), 'refused before the driver is touched');
  usageLine(t, run(['layer', 'create', 'x', '--rw', ...on, '--storage-opt', 'bogus=1']), /^strata: --storage-opt bogus=1: Storage opt bogus not supported/, 'unknown key');
  usageLine(t, run(['layer', 'create', 'y', ...on, '--storage-opt', 'size=1G']), /^strata: --storage-opt is not supported for vfs on read-only layers/, 'read-only layer');
  usageLine(t, run(['layer', 'ls', ...on, '--storage-opt', 'size=1G']), /^strata: --storage-opt is for strata layer create only, not ls/, 'not create');
  t.is(run(['layer', 'ls', ...on]).stdout, 'ID   PARENT\n', 'nothing was created');
});
