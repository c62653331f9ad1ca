import type { Command } from 'commander';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { EventView } from '../../api/client.js';
import { moduleBaseEnv } from '../../app/ion-app.js';
import { errorMessage } from '../../core/errors.js';
import type { IonEvent } from '../../core/types.js';
import { moduleEnv } from '../../executors/job-host.js';
import { LocalExecutor } from '../../executors/local/local-executor.js';
import { readJobOutputs } from '../../handler/commit.js';
import { prepareJobDir } from '../../handler/prepare.js';
import { UsageError, type ApiOptions, type CliContext } from '../context.js';

function toEvent(view: EventView): IonEvent {
  return { ...view, data: view.metadata };
}

export function registerDev(program: Command, ctx: CliContext): void {
  const dev = program.command('dev').description('tools for module authors');
  dev
    .command('run <module>')
    .description(
      'run one module locally on a stored event, with the exact file contract, without committing anything',
    )
    .requiredOption('--event <eventId>', 'the event to run the module on')
    .option(
      '--out <dir>',
      'job directory to use (must be empty or absent); a temporary one by default',
    )
    .option('--json', 'print the outcome as JSON')
    .action(
      async (
        moduleName: string,
        options: ApiOptions & { event: string; out?: string; json?: boolean },
      ) => {
        const client = ctx.clientFor(options);
        const module = await client.getModule(moduleName);
        if (module.run.command === undefined)
          throw new UsageError(
            `module ${module.name} runs its image's entrypoint (run.image ${module.run.image ?? ''}); ion dev run runs commands on this machine only`,
          );
        const event = toEvent(await client.getEvent(options.event));
        let dir: string;
        if (options.out === undefined) {
          dir = await mkdtemp(join(tmpdir(), `ion-dev-${module.name}-`));
        } else {
          dir = resolve(options.out);
          const entries = await readdir(dir).catch(() => []);
          if (entries.length > 0)
            throw new UsageError(
              `--out ${options.out} is not empty; give an empty or new directory`,
            );
        }
        await prepareJobDir(dir, event, async (sha, dest) =>
          pipeline(await client.downloadBlob(sha), createWriteStream(dest)),
        );
        const executor = new LocalExecutor();
        const logFile = `${dir}.log`;
        const result = await executor.run({
          jobId: 'dev',
          attempt: 1,
          workDir: dir,
          command: module.run.command,
          args: module.run.args ?? [],
          env: moduleEnv(moduleBaseEnv(process.env), module, event, dir, 1),
          timeoutMs: module.timeoutMs,
          logFile,
          signal: new AbortController().signal,
        });
        await executor.close();
        let outputs: Awaited<ReturnType<typeof readJobOutputs>> | null = null;
        let outputError: string | null = null;
        if (result.exitCode === 0) {
          try {
            outputs = await readJobOutputs(dir, module.publishes);
          } catch (err) {
            outputError = errorMessage(err);
          }
        }
        const ok = result.exitCode === 0 && outputError === null;
        if (options.json === true) {
          ctx.printJson({
            ok,
            dir,
            logFile,
            exitCode: result.exitCode,
            timedOut: result.timedOut,
            durationMs: result.durationMs,
            outputError,
            outputs:
              outputs === null
                ? null
                : {
                    files: outputs.files.map((f) => f.path),
                    insights: outputs.insights,
                    events: outputs.events,
                  },
          });
        } else {
          ctx.print(`ran ${module.name} v${module.version} on ${event.type} ${event.eventId}`);
          ctx.print(`  job dir  ${dir}`);
          ctx.print(`  log      ${logFile}`);
          ctx.print(
            `  exit     ${result.timedOut ? `timed out after ${module.timeoutMs}ms` : String(result.exitCode ?? result.signal)} in ${result.durationMs}ms`,
          );
          if (result.logTail !== '')
            ctx.print(`--- output (tail) ---\n${result.logTail.trimEnd()}\n---`);
          if (outputError !== null) ctx.print(`output is INVALID: ${outputError}`);
          if (outputs !== null) {
            ctx.print(
              `files (${outputs.files.length}): ${outputs.files.map((f) => f.path).join(', ') || '-'}`,
            );
            ctx.print(
              `insights: ${outputs.insights.map((i) => `${i.key}=${i.value}`).join(', ') || '-'}`,
            );
            for (const e of outputs.events)
              ctx.print(
                `event ${e.type} from ${e.fileName}: files=[${e.files.join(', ')}] data={${e.data.map((d) => `${d.key}=${d.value}`).join(', ')}}`,
              );
            ctx.print('nothing was committed (dev run)');
          }
        }
        if (!ok) ctx.exitCode = 1;
      },
    );
}
