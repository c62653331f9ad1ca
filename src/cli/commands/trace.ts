import type { Command } from 'commander';
import type { IonClient, TraceView } from '../../api/client.js';
import { sleep } from '../../core/time.js';
import { positiveInt, type ApiOptions, type CliContext } from '../context.js';
import { renderTrace } from '../render.js';
import { TimeoutError } from '../../core/errors.js';
import { jobHasEnded } from '../../core/types.js';

/** True when every job of the trace is settled and every event has had its jobs created. */
export function traceSettled(
  trace: TraceView,
  moduleSubscriptions: Map<string, string[]>,
): boolean {
  if (trace.jobs.some((j) => !jobHasEnded(j.state))) return false;
  for (const event of trace.events) {
    for (const [module, types] of moduleSubscriptions) {
      if (
        types.includes(event.type) &&
        !trace.jobs.some((j) => j.eventId === event.eventId && j.module === module)
      )
        return false;
    }
  }
  return true;
}

/** Polls a trace until it settles, calling `onChange` whenever a job changes state. */
export async function waitForTrace(
  client: IonClient,
  correlationId: string,
  timeoutMs: number,
  onChange?: (trace: TraceView, changed: string[]) => void,
): Promise<TraceView> {
  const modules = new Map((await client.listModules()).map((m) => [m.name, m.subscribes]));
  const deadline = Date.now() + timeoutMs;
  const seen = new Map<string, string>();
  for (;;) {
    const trace = await client.trace(correlationId);
    const changed: string[] = [];
    for (const job of trace.jobs) {
      const key = `${job.state}/${job.attempts}`;
      if (seen.get(job.jobId) !== key) {
        seen.set(job.jobId, key);
        changed.push(job.jobId);
      }
    }
    if (changed.length > 0) onChange?.(trace, changed);
    if (traceSettled(trace, modules)) return trace;
    if (Date.now() > deadline)
      throw new TimeoutError(`trace ${correlationId} did not settle within ${timeoutMs}ms`);
    await sleep(100);
  }
}

export function registerTrace(program: Command, ctx: CliContext): void {
  program
    .command('trace <correlationId>')
    .description('show the lineage tree of a correlation id: events, jobs, files, insights')
    .option('--wait', 'wait until every job of the trace is settled')
    .option('--timeout <seconds>', 'with --wait: give up after this many seconds', '300')
    .option('--json', 'print JSON')
    .action(
      async (
        correlationId: string,
        options: ApiOptions & { json?: boolean; wait?: boolean; timeout: string },
      ) => {
        const client = ctx.clientFor(options);
        const trace =
          options.wait === true
            ? await waitForTrace(
                client,
                correlationId,
                positiveInt('--timeout', options.timeout) * 1000,
              )
            : await client.trace(correlationId);
        if (options.json === true) return ctx.printJson(trace);
        ctx.print(renderTrace(trace));
      },
    );
}
