import { describeRun } from '../../core/pipeline.js';
import type { Command } from 'commander';
import type { IonClient } from '../../api/client.js';
import { JOB_STATES, type Job, type JobState } from '../../core/types.js';
import { UsageError, positiveInt, type ApiOptions, type CliContext } from '../context.js';
import { jobDuration, table } from '../render.js';
import { loadModuleDocument } from '../../core/pipeline-file.js';
import { ValidationError } from '../../core/errors.js';

function parseState(state: string | undefined): JobState | undefined {
  if (state === undefined) return undefined;
  if (!(JOB_STATES as readonly string[]).includes(state))
    throw new UsageError(`--state must be one of ${JOB_STATES.join(', ')}`);
  return state as JobState;
}

export function registerJobs(program: Command, ctx: CliContext): void {
  const job = program.command('job').description('inspect jobs');
  job
    .command('ls')
    .description('list jobs, most recent first')
    .option('--module <name>', 'only this module')
    .option('--state <state>', `only this state (${JOB_STATES.join(', ')})`)
    .option('--correlation-id <id>', 'only this trace')
    .option('--replay <replayId>', 'only the jobs of this replay')
    .option('--since <time>', 'only jobs that changed at or after this time (ISO 8601)')
    .option('--until <time>', 'only jobs that changed before this time (ISO 8601)')
    .option('--limit <n>', 'at most this many', '50')
    .option('--json', 'print JSON')
    .action(
      async (
        options: ApiOptions & {
          module?: string;
          state?: string;
          correlationId?: string;
          replay?: string;
          since?: string;
          until?: string;
          limit: string;
          json?: boolean;
        },
      ) => {
        const state = parseState(options.state);
        const jobs = await ctx.clientFor(options).listJobs({
          ...(options.module === undefined ? {} : { module: options.module }),
          ...(state === undefined ? {} : { state }),
          ...(options.correlationId === undefined ? {} : { correlationId: options.correlationId }),
          ...(options.replay === undefined ? {} : { replayId: options.replay }),
          ...(options.since === undefined ? {} : { since: options.since }),
          ...(options.until === undefined ? {} : { until: options.until }),
          limit: positiveInt('--limit', options.limit),
        });
        if (options.json === true) return ctx.printJson({ jobs });
        ctx.print(
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
      const result = await ctx.clientFor(options).getJob(jobId);
      if (options.json === true) return ctx.printJson(result);
      const { job: j, attempts } = result;
      ctx.print(
        `job ${j.jobId}\n  module ${j.module} v${j.moduleVersion}\n  event ${j.eventId}\n  state ${j.state}\n  attempts ${j.attempts}`,
      );
      if (j.lastError !== null) ctx.print(`  last error ${j.lastError}`);
      ctx.print(
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
    .option(
      '-f, --follow',
      'stream the log while the job runs, until it ends (with --attempt: until that attempt ends)',
    )
    .action(async (jobId: string, options: ApiOptions & { attempt?: string; follow?: boolean }) => {
      const attempt =
        options.attempt === undefined ? undefined : positiveInt('--attempt', options.attempt);
      const client = ctx.clientFor(options);
      if (options.follow === true) {
        const stream = await client.followJobLog(jobId, attempt);
        for await (const chunk of stream) ctx.stdout.write(chunk as Buffer);
        return;
      }
      const { text } = await client.jobLogs(jobId, attempt);
      ctx.stdout.write(text);
    });
  job
    .command('cancel <jobId>')
    .description(
      'cancel a job: a waiting one at once, a running one is stopped within about a second',
    )
    .option('--json', 'print JSON')
    .action(async (jobId: string, options: ApiOptions & { json?: boolean }) => {
      const result = await ctx.clientFor(options).cancelJob(jobId);
      if (options.json === true) return ctx.printJson(result);
      ctx.print(
        result.status === 'cancelled'
          ? `job ${jobId} cancelled`
          : `job ${jobId} is running; its worker is stopping it (see: ion job get ${jobId})`,
      );
    });
}

export function registerDlq(program: Command, ctx: CliContext): void {
  const dlq = program.command('dlq').description('dead letters: jobs that ran out of retries');
  dlq
    .command('ls')
    .description('list dead letters, newest first')
    .option('--module <name>', 'only this module')
    .option('--json', 'print JSON')
    .action(async (options: ApiOptions & { module?: string; json?: boolean }) => {
      const deadLetters = await ctx
        .clientFor(options)
        .listDeadLetters(options.module === undefined ? {} : { module: options.module });
      if (options.json === true) return ctx.printJson({ deadLetters });
      ctx.print(
        table(
          ['ID', 'MODULE', 'EVENT', 'ATTEMPTS', 'REASON'],
          deadLetters.map((d) => [d.id, d.module, d.eventId ?? '-', String(d.attempts), d.reason]),
        ),
      );
    });
  dlq
    .command('redrive [id]')
    .description('send dead-lettered jobs back to their module: one by id, or --all')
    .option('--all', 'every dead letter (of --module only, when given)')
    .option('--module <name>', 'with --all: only this module')
    .option('--json', 'print JSON')
    .action(
      async (
        id: string | undefined,
        options: ApiOptions & { all?: boolean; module?: string; json?: boolean },
      ) => {
        const client = ctx.clientFor(options);
        if (bulk(id, options)) {
          const jobs: Job[] = [];
          const redriven = await inBatches(ctx, client, options, 'redriven', async (ids) => {
            const result = await client.redriveMany({ ids });
            jobs.push(...result.jobs);
            return result.redriven;
          });
          if (options.json === true) return ctx.printJson({ redriven, jobs });
          return ctx.print(`redriven ${redriven} dead letter${redriven === 1 ? '' : 's'}`);
        }
        const result = await client.redrive(id!);
        if (options.json === true) return ctx.printJson(result);
        ctx.print(
          result.job === null
            ? `dead letter ${id} removed (it had no job to run again)`
            : `redriven: job ${result.job.jobId} of ${result.job.module} is pending again`,
        );
      },
    );
  dlq
    .command('discard [id]')
    .description('drop dead letters without running them again: one by id, or --all')
    .option('--all', 'every dead letter (of --module only, when given)')
    .option('--module <name>', 'with --all: only this module')
    .option('--json', 'print JSON')
    .action(
      async (
        id: string | undefined,
        options: ApiOptions & { all?: boolean; module?: string; json?: boolean },
      ) => {
        const client = ctx.clientFor(options);
        if (bulk(id, options)) {
          const discarded = await inBatches(ctx, client, options, 'discarded', async (ids) => {
            return (await client.discardMany({ ids })).discarded;
          });
          if (options.json === true) return ctx.printJson({ discarded });
          return ctx.print(`discarded ${discarded} dead letter${discarded === 1 ? '' : 's'}`);
        }
        await client.discardDeadLetter(id!);
        if (options.json === true) return ctx.printJson({ discarded: 1 });
        ctx.print(`discarded ${id}`);
      },
    );
}

/** Whether a dlq command acts on many (`--all`) or on one id; refuses both and neither. */
function bulk(id: string | undefined, options: { all?: boolean; module?: string }): boolean {
  if (options.all === true) {
    if (id !== undefined) throw new UsageError('give either an id or --all, not both');
    return true;
  }
  if (options.module !== undefined) throw new UsageError('--module needs --all');
  if (id === undefined) throw new UsageError('give a dead letter id, or --all [--module M]');
  return false;
}

const BATCH = 100;

/**
 * Acts on every dead letter (of `options.module`) in batches of ids, printing progress to
 * stderr when there is more than one batch. Pages until a listing brings no new id, so a job
 * dead-lettered again meanwhile is not handled twice. Returns the total acted on.
 */
async function inBatches(
  ctx: CliContext,
  client: IonClient,
  options: { module?: string },
  verb: string,
  act: (ids: string[]) => Promise<number>,
): Promise<number> {
  const seen = new Set<string>();
  let done = 0;
  for (;;) {
    const page = await client.listDeadLetters({
      ...(options.module === undefined ? {} : { module: options.module }),
      limit: 1000,
    });
    const fresh = page.map((d) => d.id).filter((i) => !seen.has(i));
    if (fresh.length === 0) return done;
    // Every id listed so far, acted on or not yet: the "of" of the progress lines.
    const listed = seen.size + fresh.length;
    const many = listed > BATCH;
    for (let i = 0; i < fresh.length; i += BATCH) {
      const ids = fresh.slice(i, i + BATCH);
      ids.forEach((x) => seen.add(x));
      done += await act(ids);
      if (many) ctx.stderr.write(`${verb} ${done} of ${listed} so far\n`);
    }
  }
}

export function registerModules(program: Command, ctx: CliContext): void {
  const module = program.command('module').description('inspect modules');
  module
    .command('ls')
    .description('list modules')
    .option('--json', 'print JSON')
    .action(async (options: ApiOptions & { json?: boolean }) => {
      const modules = await ctx.clientFor(options).listModules();
      if (options.json === true) return ctx.printJson({ modules });
      ctx.print(
        table(
          [
            'MODULE',
            'VERSION',
            'STATE',
            'SUBSCRIBES',
            'PUBLISHES',
            'CONCURRENCY',
            'RETRIES',
            'TIMEOUT',
          ],
          modules.map((m) => [
            m.name,
            String(m.version),
            m.paused ? 'paused' : 'active',
            m.subscribes.join(','),
            m.publishes.join(','),
            String(m.concurrency),
            String(m.retries),
            `${m.timeoutMs}ms`,
          ]),
        ),
      );
    });
  module
    .command('get <name>')
    .description('show one module')
    .option('--json', 'print JSON')
    .action(async (name: string, options: ApiOptions & { json?: boolean }) => {
      const m = await ctx.clientFor(options).getModule(name);
      if (options.json === true) return ctx.printJson(m);
      ctx.print(
        [
          `module ${m.name} v${m.version}${m.paused ? ' (paused)' : ''}`,
          `  subscribes ${m.subscribes.join(', ') || '-'}`,
          `  publishes ${m.publishes.join(', ') || '-'}`,
          `  run ${describeRun(m.run)}${m.executor === undefined ? '' : ` (${m.executor})`}`,
          `  concurrency ${m.concurrency}, retries ${m.retries}, timeout ${m.timeoutMs}ms`,
          `  updated ${m.updatedAt}`,
        ].join('\n'),
      );
    });
  module
    .command('put <name>')
    .description(
      'create or update one module from a file holding one pipeline-file entry (YAML or JSON)',
    )
    .requiredOption('-f, --file <path>', 'the module file')
    .option('--json', 'print JSON')
    .action(async (name: string, options: ApiOptions & { file: string; json?: boolean }) => {
      const doc = loadModuleDocument(options.file);
      if (typeof doc !== 'object' || doc === null || Array.isArray(doc))
        throw new ValidationError(`module file ${options.file} must hold one module (a mapping)`);
      const result = await ctx.clientFor(options).putModule(name, doc as Record<string, unknown>);
      if (options.json === true) return ctx.printJson(result);
      ctx.print(`module ${result.module.name} v${result.module.version}: ${result.change}`);
    });
  module
    .command('rm <name>')
    .description('delete a module: its dispatching stops, its history is kept')
    .option('--json', 'print JSON')
    .action(async (name: string, options: ApiOptions & { json?: boolean }) => {
      await ctx.clientFor(options).deleteModule(name);
      if (options.json === true) return ctx.printJson({ deleted: name });
      ctx.print(`deleted module ${name}`);
    });
  for (const [action, paused] of [
    ['pause', true],
    ['resume', false],
  ] as const) {
    module
      .command(`${action} <name>`)
      .description(
        paused
          ? 'stop starting jobs of a module; its events wait until it is resumed'
          : 'start running jobs of a paused module again',
      )
      .option('--json', 'print JSON')
      .action(async (name: string, options: ApiOptions & { json?: boolean }) => {
        const client = ctx.clientFor(options);
        const m = paused ? await client.pauseModule(name) : await client.resumeModule(name);
        if (options.json === true) return ctx.printJson(m);
        ctx.print(`${paused ? 'paused' : 'resumed'} module ${m.name}`);
      });
  }
  module
    .command('versions <name>')
    .description("list a module's versions, oldest first")
    .option('--json', 'print JSON')
    .action(async (name: string, options: ApiOptions & { json?: boolean }) => {
      const versions = await ctx.clientFor(options).moduleVersions(name);
      if (options.json === true) return ctx.printJson({ versions });
      ctx.print(
        table(
          ['VERSION', 'CREATED', 'RUN', 'RETRIES', 'TIMEOUT'],
          versions.map((v) => [
            String(v.version),
            v.createdAt,
            describeRun(v.spec.run),
            String(v.spec.retries),
            `${v.spec.timeoutMs}ms`,
          ]),
        ),
      );
    });
}
