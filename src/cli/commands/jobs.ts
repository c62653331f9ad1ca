import type { Command } from 'commander';
import { JOB_STATES, type JobState } from '../../core/types.js';
import {
  UsageError,
  clientFor,
  positiveInt,
  print,
  printJson,
  type ApiOptions,
} from '../context.js';
import { jobDuration, table } from '../render.js';

function parseState(state: string | undefined): JobState | undefined {
  if (state === undefined) return undefined;
  if (!(JOB_STATES as readonly string[]).includes(state))
    throw new UsageError(`--state must be one of ${JOB_STATES.join(', ')}`);
  return state as JobState;
}

export function registerJobs(program: Command): void {
  const job = program.command('job').description('inspect jobs');
  job
    .command('ls')
    .description('list jobs, most recent first')
    .option('--module <name>', 'only this module')
    .option('--state <state>', `only this state (${JOB_STATES.join(', ')})`)
    .option('--correlation-id <id>', 'only this trace')
    .option('--limit <n>', 'at most this many', '50')
    .option('--json', 'print JSON')
    .action(
      async (
        options: ApiOptions & {
          module?: string;
          state?: string;
          correlationId?: string;
          limit: string;
          json?: boolean;
        },
      ) => {
        const state = parseState(options.state);
        const jobs = await clientFor(options).listJobs({
          ...(options.module === undefined ? {} : { module: options.module }),
          ...(state === undefined ? {} : { state }),
          ...(options.correlationId === undefined ? {} : { correlationId: options.correlationId }),
          limit: positiveInt('--limit', options.limit),
        });
        if (options.json === true) return printJson({ jobs });
        print(
          table(
            ['JOB', 'MODULE', 'STATE', 'ATTEMPTS', 'DURATION', 'EVENT'],
            jobs.map((j) => [
              j.jobId,
              j.module,
              j.state,
              String(j.attempts),
              jobDuration(j),
              j.eventId,
            ]),
          ),
        );
      },
    );
  job
    .command('get <jobId>')
    .description('show a job and its attempts')
    .option('--json', 'print JSON')
    .action(async (jobId: string, options: ApiOptions & { json?: boolean }) => {
      const result = await clientFor(options).getJob(jobId);
      if (options.json === true) return printJson(result);
      const { job: j, attempts } = result;
      print(
        `job ${j.jobId}\n  module ${j.module} v${j.moduleVersion}\n  event ${j.eventId}\n  state ${j.state}\n  attempts ${j.attempts}`,
      );
      if (j.lastError !== null) print(`  last error ${j.lastError}`);
      print(
        table(
          ['ATTEMPT', 'OUTCOME', 'EXIT', 'DURATION', 'ERROR'],
          attempts.map((a) => [
            String(a.attempt),
            a.outcome,
            a.exitCode === null ? '-' : String(a.exitCode),
            a.durationMs === null ? '-' : `${a.durationMs}ms`,
            a.error ?? '',
          ]),
        ),
      );
    });
  job
    .command('logs <jobId>')
    .description("print an attempt's stdout and stderr (the last attempt by default)")
    .option('--attempt <n>', 'which attempt')
    .action(async (jobId: string, options: ApiOptions & { attempt?: string }) => {
      const { text } = await clientFor(options).jobLogs(
        jobId,
        options.attempt === undefined ? undefined : positiveInt('--attempt', options.attempt),
      );
      process.stdout.write(text);
    });
}

export function registerDlq(program: Command): void {
  const dlq = program.command('dlq').description('dead letters: jobs that ran out of retries');
  dlq
    .command('ls')
    .description('list dead letters, newest first')
    .option('--module <name>', 'only this module')
    .option('--json', 'print JSON')
    .action(async (options: ApiOptions & { module?: string; json?: boolean }) => {
      const deadLetters = await clientFor(options).listDeadLetters(
        options.module === undefined ? {} : { module: options.module },
      );
      if (options.json === true) return printJson({ deadLetters });
      print(
        table(
          ['ID', 'MODULE', 'EVENT', 'ATTEMPTS', 'REASON'],
          deadLetters.map((d) => [d.id, d.module, d.eventId ?? '-', String(d.attempts), d.reason]),
        ),
      );
    });
  dlq
    .command('redrive <id>')
    .description('send a dead-lettered job back to its module')
    .option('--json', 'print JSON')
    .action(async (id: string, options: ApiOptions & { json?: boolean }) => {
      const result = await clientFor(options).redrive(id);
      if (options.json === true) return printJson(result);
      print(
        result.job === null
          ? `dead letter ${id} removed (it had no job to run again)`
          : `redriven: job ${result.job.jobId} of ${result.job.module} is pending again`,
      );
    });
  dlq
    .command('discard <id>')
    .description('drop a dead letter without running it again')
    .action(async (id: string, options: ApiOptions) => {
      await clientFor(options).discardDeadLetter(id);
      print(`discarded ${id}`);
    });
}

export function registerModules(program: Command): void {
  const module = program.command('module').description('inspect modules');
  module
    .command('ls')
    .description('list modules')
    .option('--json', 'print JSON')
    .action(async (options: ApiOptions & { json?: boolean }) => {
      const modules = await clientFor(options).listModules();
      if (options.json === true) return printJson({ modules });
      print(
        table(
          ['MODULE', 'VERSION', 'SUBSCRIBES', 'PUBLISHES', 'CONCURRENCY', 'RETRIES', 'TIMEOUT'],
          modules.map((m) => [
            m.name,
            String(m.version),
            m.subscribes.join(','),
            m.publishes.join(','),
            String(m.concurrency),
            String(m.retries),
            `${m.timeoutMs}ms`,
          ]),
        ),
      );
    });
}
