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
import { UsageError } from './context.js';

/** Exit codes: 0 success, 1 failure, 2 usage error. */
export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

export function buildProgram(): Command {
  const program = new Command('ion')
    .description('Ion: event-driven data processing. Modules in any language, chained by events.')
    .version('0.1.0')
    .showHelpAfterError()
    .exitOverride();
  registerUp(program);
  registerServer(program);
  registerApply(program);
  registerEvent(program);
  registerTrace(program);
  registerJobs(program);
  registerDlq(program);
  registerModules(program);
  registerReplay(program);
  registerDev(program);
  registerConfig(program);
  registerQueryCommands(program);
  registerWatch(program);
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
  registerToken(program);
  // The handler steps run in pods and read the ION_* environment; no API options.
  registerHandler(program);
  program.commands.forEach(function override(cmd: Command): void {
    cmd.exitOverride();
    cmd.commands.forEach(override);
  });
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
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
      process.stderr.write(`error: ${err.message}\n`);
      return err instanceof UsageError ? EXIT.usage : EXIT.failure;
    }
    process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
    return EXIT.failure;
  }
}

// Long-running commands (up) keep the process alive through their servers and timers.
const code = await main(process.argv);
if (code !== EXIT.ok) process.exit(code);
else process.exitCode = 0;
