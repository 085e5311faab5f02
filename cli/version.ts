import type { CommandModule } from 'yargs';
import { readFileSync } from 'node:fs';
import { emit } from './output.ts';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

export const versionCommand: CommandModule<{ json: boolean }, { json: boolean }> = {
  command: 'version',
  describe: 'print the strata version',
  handler: (argv) => {
    const info = { version: pkg.version, node: process.version, platform: `${process.platform}/${process.arch}` };
    emit(argv.json, info, () => process.stdout.write(`strata ${info.version} (node ${info.node}, ${info.platform})\n`));
  },
};
