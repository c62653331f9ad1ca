import type { Command } from 'commander';
import type { IonClient } from '../../api/client.js';
import { TimeoutError } from '../../core/errors.js';
import { sleep } from '../../core/time.js';
import {
  JOB_STATES,
  jobHasEnded,
  type Replay,
  type ReplaySelector,
  type ReplayStatus,
} from '../../core/types.js';
import { UsageError, positiveInt, type ApiOptions, type CliContext } from '../context.js';
import { table } from '../render.js';

const ENDED = JOB_STATES.filter(jobHasEnded);

/** Jobs of a replay that have not ended yet. */
function unfinished(replay: ReplayStatus): number {
  return JOB_STATES.filter((k) => !jobHasEnded(k)).reduce((n, k) => n + replay.states[k], 0);
}

/** `12/40 done (10 succeeded, 2 dead_lettered); 3 running, 25 waiting`. */
export function replayProgress(replay: ReplayStatus): string {
  const s = replay.states;
  const done = ENDED.reduce((n, k) => n + s[k], 0);
  const ended = ENDED.filter((k) => s[k] > 0).map((k) => `${s[k]} ${k}`);
  return (
    `${done}/${replay.jobs} done${ended.length > 0 ? ` (${ended.join(', ')})` : ''}; ` +
    `${s.running} running, ${s.pending + s.failed} waiting`
  );
}

function describeSelector(replay: Replay | ReplaySelector): string {
  const selector = 'selector' in replay ? replay.selector : replay;
  if ('eventId' in selector) return `event ${selector.eventId}`;
  const range = [
    selector.since === undefined ? '' : `since ${selector.since}`,
    selector.until === undefined ? '' : `until ${selector.until}`,
  ].filter(Boolean);
  return `${selector.type} events${range.length > 0 ? ` ${range.join(' ')}` : ''}`;
}

/**
 * Polls a replay until all its jobs ended, printing progress to stderr: redrawn in place on a
 * terminal, a line every few seconds otherwise. Throws a TimeoutError past `timeoutMs`.
 */
async function waitForReplay(
  ctx: CliContext,
  client: IonClient,
  replayId: string,
  timeoutMs: number,
): Promise<ReplayStatus> {
  const deadline = Date.now() + timeoutMs;
  const tty = ctx.stderr.isTTY === true;
  let lastLine = '';
  let lastPrintedAt = 0;
  for (;;) {
    const replay = await client.getReplay(replayId);
    const line = replayProgress(replay);
    if (tty) ctx.stderr.write(`\r${line}\x1b[K`);
    else if (line !== lastLine && Date.now() - lastPrintedAt >= 2000) {
      ctx.stderr.write(`${line}\n`);
      lastPrintedAt = Date.now();
    }
    lastLine = line;
    if (unfinished(replay) === 0) {
      if (tty) ctx.stderr.write('\n');
      return replay;
    }
    if (Date.now() > deadline) {
      if (tty) ctx.stderr.write('\n');
      throw new TimeoutError(
        `replay ${replayId} still has ${unfinished(replay)} unfinished job(s) after ${timeoutMs} ms (${line})`,
      );
    }
    await sleep(500);
  }
}

export function registerReplay(program: Command, ctx: CliContext): void {
  const replay = program
    .command('replay')
    .description('run a module again on past events (replay and backfill)');
  replay
    .command('start <module>')
    .description(
      'replay one event (--event) or every event of a type in a time range (--type, --since, --until)',
    )
    .option('--event <eventId>', 'the one event to run the module on')
    .option('--type <type>', 'every event of this type (a type the module subscribes to)')
    .option('--since <time>', 'with --type: events created at or after this time (ISO 8601)')
    .option('--until <time>', 'with --type: events created before this time (ISO 8601)')
    .option(
      '--module-version <n>',
      'run this stored version of the module (default: the current one)',
    )
    .option('--dry-run', 'only count the events it would replay')
    .option('--wait', 'wait until every replayed job has ended, showing progress')
    .option('--timeout <ms>', 'with --wait: give up after this long', '600000')
    .option('--json', 'print JSON')
    .action(
      async (
        module: string,
        options: ApiOptions & {
          event?: string;
          type?: string;
          since?: string;
          until?: string;
          moduleVersion?: string;
          dryRun?: boolean;
          wait?: boolean;
          timeout: string;
          json?: boolean;
        },
      ) => {
        if ((options.event === undefined) === (options.type === undefined))
          throw new UsageError('give exactly one of --event and --type');
        if (options.event !== undefined && (options.since ?? options.until) !== undefined)
          throw new UsageError('--since and --until go with --type');
        const client = ctx.clientFor(options);
        const result = await client.replay({
          module,
          ...(options.moduleVersion === undefined
            ? {}
            : { version: positiveInt('--module-version', options.moduleVersion) }),
          ...(options.event === undefined ? {} : { eventId: options.event }),
          ...(options.type === undefined ? {} : { type: options.type }),
          ...(options.since === undefined ? {} : { since: options.since }),
          ...(options.until === undefined ? {} : { until: options.until }),
          ...(options.dryRun === true ? { dryRun: true } : {}),
        });
        const timeoutMs = positiveInt('--timeout', options.timeout);
        if (result.dryRun) {
          if (options.json === true) return ctx.printJson(result);
          ctx.print(
            `would replay ${module} on ${result.matched} event(s): ${describeSelector(result.replay)}`,
          );
          return;
        }
        const final =
          options.wait === true
            ? await waitForReplay(ctx, client, result.replay.replayId, timeoutMs)
            : result.replay;
        if (options.json === true) return ctx.printJson({ ...result, replay: final });
        ctx.print(
          `replay ${final.replayId}: ${module}${final.moduleVersion === null ? '' : ` v${final.moduleVersion}`} on ${final.jobs} event(s) (${describeSelector(final)})`,
        );
        if (options.wait === true) {
          ctx.print(replayProgress(final));
          if (final.states.dead_lettered > 0 || final.states.cancelled > 0) ctx.exitCode = 1;
        } else {
          ctx.print(`follow it with: ion replay get ${final.replayId}`);
        }
      },
    );
  replay
    .command('get <replayId>')
    .description('show a replay and its jobs counted by state')
    .option('--wait', 'wait until every job of the replay has ended, showing progress')
    .option('--timeout <ms>', 'with --wait: give up after this long', '600000')
    .option('--json', 'print JSON')
    .action(
      async (
        replayId: string,
        options: ApiOptions & { wait?: boolean; timeout: string; json?: boolean },
      ) => {
        const client = ctx.clientFor(options);
        const found =
          options.wait === true
            ? await waitForReplay(ctx, client, replayId, positiveInt('--timeout', options.timeout))
            : await client.getReplay(replayId);
        if (options.json === true) return ctx.printJson(found);
        ctx.print(
          `replay ${found.replayId}\n  module ${found.module}${found.moduleVersion === null ? ' (current version)' : ` v${found.moduleVersion}`}\n  selects ${describeSelector(found)}\n  created ${found.createdAt}\n  jobs ${found.jobs}: ${replayProgress(found)}`,
        );
        ctx.print(`list its jobs with: ion job ls --replay ${found.replayId}`);
      },
    );
  replay
    .command('ls')
    .description('list replays, newest first')
    .option('--module <name>', 'only this module')
    .option('--limit <n>', 'at most this many', '50')
    .option('--json', 'print JSON')
    .action(async (options: ApiOptions & { module?: string; limit: string; json?: boolean }) => {
      const replays = await ctx.clientFor(options).listReplays({
        ...(options.module === undefined ? {} : { module: options.module }),
        limit: positiveInt('--limit', options.limit),
      });
      if (options.json === true) return ctx.printJson({ replays });
      ctx.print(
        table(
          ['REPLAY', 'MODULE', 'VERSION', 'SELECTS', 'JOBS', 'CREATED'],
          replays.map((r) => [
            r.replayId,
            r.module,
            r.moduleVersion === null ? 'current' : String(r.moduleVersion),
            describeSelector(r.selector),
            String(r.jobs),
            r.createdAt,
          ]),
        ),
      );
    });
}
