// The strata command line: a thin shell that parses, calls the library and prints.
// Exit codes: 0 ok, 1 failure, 2 usage.
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { commands } from './commands.ts';
import { UsageError, reportError } from './output.ts';

const cli = yargs(hideBin(process.argv))
  .scriptName('strata')
  .usage('$0 <command> [options]\n\nStorage-driver test bench and filesystem toolkit for Docker\'s image store.')
  .option('json', { type: 'boolean', default: false, describe: 'structured output' })
  .strict()
  .demandCommand(1, 'name a command (strata --help lists them)')
  .recommendCommands()
  .help()
  .version(false)
  .fail((msg, err) => {
    throw err ?? new UsageError(msg);
  });

for (const c of commands) cli.command(c);

try {
  await cli.parseAsync();
} catch (err) {
  process.exitCode = reportError(err);
}
