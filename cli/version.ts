import type { CommandModule } from 'yargs';
import { existsSync, readFileSync } from 'node:fs';
import { emit } from './output.ts';

// cli/ in the sources, dist/cli/ when compiled: the package root is one or two levels up
const pkgUrl = [new URL('../package.json', import.meta.url), new URL('../../package.json', import.meta.url)]
  .find((u) => existsSync(u))!;
const pkg = JSON.parse(readFileSync(pkgUrl, 'utf8')) as { version: string };

export const versionCommand: CommandModule<{ json: boolean }, { json: boolean }> = {
  command: 'version',
  describe: 'print the strata version',
  handler: (argv) => {
    const info = { version: pkg.version, node: process.version, platform: `${process.platform}/${process.arch}` };
    emit(argv.json, info, () => process.stdout.write(`strata ${info.version} (node ${info.node}, ${info.platform})\n`));
  },
};
