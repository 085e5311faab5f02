// Every strata command, in the order `strata --help` lists them, under the
// name a command line starts with. A command's module is cheap, what it
// imports at the top is not always (layer.ts: the driver contract and the
// syscall layer under it), so main.ts loads only the command argv names, and
// every one for anything else (--help, a typo yargs suggests a name for).
import type { CommandModule } from 'yargs';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Command = CommandModule<any, any>;

const inspect = () => import('./inspect-commands.ts');

const COMMANDS: [name: string, load: () => Promise<Command>][] = [
  ['version', async () => (await import('./version.ts')).versionCommand],
  ['compare', async () => (await import('./compare.ts')).compareCommand],
  ['bench', async () => (await import('./bench.ts')).benchCommand],
  ['drivers', async () => (await import('./drivers.ts')).driversCommand],
  ['layer', async () => (await import('./layer.ts')).layerCommand],
  ['images', async () => (await inspect()).imagesCommand],
  ['history', async () => (await inspect()).historyCommand],
  ['inspect', async () => (await inspect()).inspectCommand],
  ['diff', async () => (await inspect()).diffCommand],
  ['df', async () => (await inspect()).dfCommand],
  ['verify', async () => (await inspect()).verifyCommand],
  ['migrate', async () => (await import('./migrate.ts')).migrateCommand],
];

/** The command `first` names (argv's first word), or every command when it names none. */
export function commandsFor(first: string | undefined): Promise<Command[]> {
  const named = COMMANDS.filter(([name]) => name === first);
  return Promise.all((named.length ? named : COMMANDS).map(([, load]) => load()));
}
