import type { Command } from 'commander';
import { type CliContext } from '../context.js';
import {
  addExecutorOption,
  addRunOptions,
  describeBackends,
  runIon,
  type RunOptions,
} from '../run-ion.js';

export function registerServer(program: Command, ctx: CliContext): void {
  addRunOptions(
    program
      .command('server')
      .description(
        'run the API and the outbox relay (stateless: run several behind a load balancer)',
      ),
    true,
  ).action(async (options: RunOptions) => {
    const { url, config } = await runIon(
      options,
      { api: true, relay: true, workers: false },
      'stderr',
    );
    ctx.print(`Ion server is up at ${url ?? '-'} (${describeBackends(config)})`);
    if (url !== null) ctx.print(`  dashboard: ${url}/ui`);
  });

  addExecutorOption(
    addRunOptions(
      program
        .command('worker')
        .description('run dispatchers (and an outbox relay): consume events and run module jobs')
        .option('--modules <names>', 'only these modules (comma-separated); all by default'),
      false,
    ),
  ).action(async (options: RunOptions & { modules?: string }) => {
    const modules = options.modules
      ?.split(',')
      .map((m) => m.trim())
      .filter((m) => m !== '');
    const { config } = await runIon(
      options,
      { api: false, relay: true, workers: true, ...(modules === undefined ? {} : { modules }) },
      'stderr',
    );
    ctx.print(
      `Ion worker is up (${modules === undefined ? 'all modules' : `modules ${modules.join(', ')}`}; ${describeBackends(config)})`,
    );
  });
}
