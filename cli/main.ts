// The strata command line: a thin shell that parses, calls the library and prints.
// Exit codes: 0 ok, 1 failure, 2 usage.
import type { Argv, CommandModule } from 'yargs';
import { UsageError, reportError } from './output.ts';
import { versionCommand } from './version.ts';

/** The names in a command string's `<a>`, `[b]` and `<c..>`. */
const positionalsOf = (command: string) => new Set([...command.matchAll(/[<[]([^<>[\]]+?)(?:\.\.)?[>\]]/g)].map((m) => m[1]));

/**
 * Every string option a command declares takes a value: `--root` with none
 * (at the end, or followed by another option) is a usage error, never the
 * option's default or an empty string. Done here once for all commands,
 * from what each builder declared.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function valuesRequired(c: CommandModule<any, any>): CommandModule<any, any> {
  const positionals = positionalsOf(String(c.command ?? ''));
  const builder = c.builder;
  return {
    ...c,
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    builder: (y: Argv<any>) => {
      const built = (typeof builder === 'function' ? builder(y) : builder ? y.options(builder) : y) as Argv;
      // getOptions() is yargs API the typings leave out
      const declared = (built as unknown as { getOptions(): { string: string[] } }).getOptions().string;
      const keys = declared.filter((k) => !positionals.has(k));
      if (!keys.length) return built;
      // requiresArg catches a missing value; `--root=` or `--root ''` gives '' (read as the cwd)
      return built.requiresArg(keys).check((argv) => {
        for (const k of keys) {
          const v = argv[k] as unknown;
          if (v === '' || (Array.isArray(v) && v.includes(''))) throw new UsageError(`--${k} needs a value`);
        }
        return true;
      });
    },
  };
}

/** yargs' own usage messages, said the way ours are. */
function usageMessage(msg: string): string {
  const noValue = /^Not enough arguments following: (.+)$/.exec(msg);
  return noValue ? `--${noValue[1]} needs a value` : msg;
}

/**
 * yargs renders the whole help text of every command it runs, in case the
 * handler fails and the help must be shown (command.js cacheHelpMessage): a
 * third of a `layer` command's start-up. Our failures print one line and no
 * help, and `--help` renders it anyway, so the cache is never needed.
 */
function skipHelpCache(cli: Argv): void {
  const internal = (cli as unknown as { getInternalMethods?: () => { getUsageInstance(): { cacheHelpMessage?: () => void } } }).getInternalMethods;
  const usage = internal?.call(cli).getUsageInstance();
  if (usage && typeof usage.cacheHelpMessage === 'function') usage.cacheHelpMessage = () => {};
}

/** The whole command line through yargs (loaded here, without its help renderer: cli/yargs.ts). */
async function parseWithYargs(args: string[]): Promise<void> {
  const [yargs, commands] = await Promise.all([
    import('./yargs.ts').then((m) => m.loadYargs()),
    import('./commands.ts').then((m) => m.commandsFor(args[0])),
  ]);
  const cli = yargs(args)
    .scriptName('strata')
    .usage('$0 <command> [options]\n\nStorage-driver test bench and filesystem toolkit for Docker\'s image store.')
    .option('json', { type: 'boolean', default: false, describe: 'structured output' })
    .strict()
    .demandCommand(1, 'name a command (strata --help lists them)')
    .recommendCommands()
    .help()
    .version(false)
    .fail((msg, err) => {
      // yargs reports some validation failures (a missing option value) as a YError: usage too
      if (err && err.name !== 'YError') throw err;
      throw new UsageError(usageMessage(msg ?? err?.message ?? 'bad usage'));
    });
  for (const c of commands) cli.command(valuesRequired(c));
  skipHelpCache(cli);
  await cli.parseAsync();
}

// `strata version [--json]`, what scripts and probes call in a loop, runs without yargs
// (issue 15: start-up under 80 ms); any other spelling goes through yargs as usual.
const args = process.argv.slice(2);
try {
  if (args[0] === 'version' && args.length <= 2 && (args.length === 1 || args[1] === '--json')) {
    await versionCommand.handler({ json: args[1] === '--json', _: ['version'], $0: 'strata' });
  } else await parseWithYargs(args);
} catch (err) {
  process.exitCode = reportError(err);
}
