// Every strata command, in the order `strata --help` lists them.
import type { CommandModule } from 'yargs';
import { versionCommand } from './version.ts';
import { compareCommand } from './compare.ts';
import { benchCommand } from './bench.ts';
import { driversCommand } from './drivers.ts';
import { layerCommand } from './layer.ts';
import { migrateCommand } from './migrate.ts';
import { dfCommand, diffCommand, historyCommand, imagesCommand, inspectCommand, verifyCommand } from './inspect-commands.ts';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const commands: CommandModule<any, any>[] = [
  versionCommand,
  compareCommand,
  benchCommand,
  driversCommand,
  layerCommand,
  imagesCommand,
  historyCommand,
  inspectCommand,
  diffCommand,
  dfCommand,
  verifyCommand,
  migrateCommand,
];
