import { Command, CommanderError, Option } from 'commander';
import { IonError } from '../core/errors.js';
import { registerApply } from './commands/apply.js';
import { registerConfig } from './commands/config.js';
import { registerDev } from './commands/dev.js';
import { registerEvent } from './commands/event.js';
import { registerHandler } from './commands/handler.js';
import { registerQueryCommands } from './commands/queries.js';
import { registerDlq, registerJobs, registerModules } from './commands/jobs.js';
import { registerReplay } from './commands/replay.js';
import { registerTrace } from './commands/trace.js';
import { registerUp } from './commands/up.js';
import { registerServer } from './commands/server.js';
import { registerToken } from './commands/token.js';
import { registerWatch } from './commands/watch.js';
import { CliContext, UsageError, type CliIo } from './context.js';

/** Exit codes: 0 success, 1 failure, 2 usage error. */
export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

/**
 * The `ion` command line, its commands bound to `ctx` (output streams, environment, API
 * client). Tests build it with their own context and run commands in process.
 */
export function buildProgram(ctx: CliContext = new CliContext()): Command {
  const program = new Command('ion')
    .description('Ion: event-driven data processing. Modules in any language, chained by events.')
    .version('0.1.0')
    .showHelpAfterError()
    .exitOverride();
  registerUp(program, ctx);
  registerServer(program, ctx);
  registerApply(program, ctx);
  registerEvent(program, ctx);
  registerTrace(program, ctx);
  registerJobs(program, ctx);
  registerDlq(program, ctx);
  registerModules(program, ctx);
  registerReplay(program, ctx);
  registerDev(program, ctx);
  registerConfig(program, ctx);
  registerQueryCommands(program, ctx);
  registerWatch(program, ctx);
  // Every command that talks to a running Ion takes --api-url and --profile.
  const addApiUrl = (cmd: Command): void => {
    if (!['up', 'server', 'worker'].includes(cmd.name()) && cmd.commands.length === 0) {
      cmd.addOption(
        new Option(
          '--api-url <url>',
          'URL of a running Ion (env ION_API_URL; else the profile; default http://127.0.0.1:7411)',
        ),
      );
      cmd.addOption(
        new Option('--profile <name>', 'profile of the CLI config file to use (env ION_PROFILE)'),
      );
      cmd.addOption(
        new Option(
          '--ca-file <path>',
          'PEM CA file to trust for an HTTPS API (env ION_CA_FILE; else the profile)',
        ),
      );
    }
    cmd.commands.forEach(addApiUrl);
  };
  program.commands.forEach(addApiUrl);
  // Token commands open the configured store directly (bootstrap with auth on), or call the
  // API with --remote: they add --api-url, --profile and --ca-file themselves (token.ts).
  registerToken(program, ctx);
  // The handler steps run in pods and read the ION_* environment; no API options.
  registerHandler(program, ctx);
  program.commands.forEach(function override(cmd: Command): void {
    cmd.exitOverride();
    cmd.commands.forEach(override);
  });
  return program;
}

/**
 * Runs one command line (`argv` as `process.argv`: node, script, then the arguments) and
 * returns its exit code; nothing is written but through `ctx`, and the process is not exited.
 */
export async function main(argv: string[], ctx: CliContext = new CliContext()): Promise<number> {
  const program = buildProgram(ctx);
  // Commander's own messages (usage errors, help) go to the context's streams too.
  const output = {
    writeOut: (text: string) => void ctx.stdout.write(text),
    writeErr: (text: string) => void ctx.stderr.write(text),
  };
  (function configure(cmd: Command): void {
    cmd.configureOutput(output);
    cmd.commands.forEach(configure);
  })(program);
  try {
    await program.parseAsync(argv);
    return ctx.exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (
        err.code === 'commander.helpDisplayed' ||
        err.code === 'commander.version' ||
        err.code === 'commander.help'
      )
        return EXIT.ok;
      return EXIT.usage;
    }
    if (err instanceof IonError) {
      ctx.stderr.write(`error: ${err.message}\n`);
      return err instanceof UsageError ? EXIT.usage : EXIT.failure;
    }
    ctx.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
    return EXIT.failure;
  }
}

/** Runs `ion <args>` in process with the given streams and environment (tests, embedding). */
export function runCli(
  args: string[],
  io: CliIo,
  makeClient?: ConstructorParameters<typeof CliContext>[1],
): Promise<number> {
  return main(['node', 'ion', ...args], new CliContext(io, makeClient));
}
