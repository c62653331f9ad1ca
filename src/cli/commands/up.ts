import type { Command } from 'commander';
import { createReadStream, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { IonClient } from '../../api/client.js';
import type { IonApp } from '../../app/ion-app.js';
import { errorMessage } from '../../core/errors.js';
import { loadPipelineDocument, readYamlFile } from '../../core/pipeline-file.js';
import { parseOrThrow } from '../../core/validation.js';
import { type CliContext } from '../context.js';
import {
  addExecutorOption,
  addRunOptions,
  describeBackends,
  runIon,
  type RunOptions,
} from '../run-ion.js';
import { renderTrace, summariseJobs, table } from '../render.js';
import { waitForTrace } from './trace.js';

const sampleEventSchema = z
  .object({
    type: z.string(),
    data: z.record(z.string(), z.string()).default({}),
    files: z.array(z.object({ path: z.string(), from: z.string() }).strict()).default([]),
  })
  .strict();

/** Submits a sample event file (type, data, files with local `from` paths) through the app. */
async function submitSample(
  app: IonApp,
  file: string,
): Promise<{ eventId: string; correlationId: string }> {
  const sample = parseOrThrow(
    sampleEventSchema,
    readYamlFile(file, 'sample event file'),
    `sample event file ${file}`,
  );
  const files = [];
  for (const f of sample.files) {
    const ref = await app.control.putBlob(createReadStream(resolve(dirname(file), f.from)));
    files.push({ path: f.path, sha256: ref.sha256 });
  }
  const { event } = await app.control.publish({ type: sample.type, data: sample.data, files });
  return event;
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

interface UpOptions extends RunOptions {
  file?: string;
  submit?: string;
}

export function registerUp(program: Command, ctx: CliContext): void {
  addExecutorOption(
    addRunOptions(
      program
        .command('up')
        .description(
          'run all of Ion in this process on the embedded defaults (SQLite, local files, local processes)',
        ),
      true,
    ),
  )
    .option('-f, --file <path>', 'apply this pipeline file at start')
    .option(
      '--submit <path>',
      'publish this sample event file once started, follow its jobs and print the trace',
    )
    .action(async (options: UpOptions) => {
      const { app, url, config, logFile } = await runIon(
        options,
        { api: true, relay: true, workers: true },
        'file',
        'off', // a local, single-process Ion: convenient unless configured otherwise
      );
      ctx.print(`Ion is up at ${url}`);
      ctx.print(`  dashboard: ${url}/ui`);
      ctx.print(`  ${describeBackends(config)}`);
      ctx.print(
        config.api.auth === 'on'
          ? `  auth: on (requests need a token: ion token create --name NAME --scope admin); logs: ${logFile}`
          : `  auth: off (the API listens on ${config.api.host} only${isLoopback(config.api.host) ? '' : ' - NOT a loopback address: anyone who reaches it has full access; set ION_AUTH=on'}); logs: ${logFile}`,
      );
      if (options.file !== undefined) {
        const result = await app.control.applyPipeline(loadPipelineDocument(options.file));
        ctx.print(`applied ${options.file}:`);
        ctx.print(
          table(
            ['MODULE', 'VERSION', 'CHANGE'],
            result.modules.map((m) => [m.name, String(m.version), m.change]),
          ),
        );
      }
      if (options.submit !== undefined) {
        const event = await submitSample(app, options.submit);
        ctx.print(`submitted ${options.submit} as event ${event.eventId}; following its jobs...`);
        // With TLS on, the certificate Ion serves is the one to trust (it may be self-signed).
        const client = new IonClient(
          url!,
          process.env.ION_TOKEN,
          config.api.tlsCertFile === undefined ? {} : { ca: readFileSync(config.api.tlsCertFile) },
        );
        try {
          const trace = await waitForTrace(
            client,
            event.correlationId,
            10 * 60_000,
            (t, changed) => {
              for (const job of t.jobs.filter((j) => changed.includes(j.jobId))) {
                ctx.print(
                  `  ${new Date().toISOString().slice(11, 23)}  ${job.module.padEnd(12)} ${job.state.padEnd(13)} attempt ${job.attempts}  event ${job.eventId.slice(0, 8)}`,
                );
              }
            },
          );
          ctx.print(`\n${renderTrace(trace)}\n`);
          ctx.print(
            `${trace.events.length} events, ${summariseJobs(trace.jobs)}. See it again with: ion trace ${event.correlationId}`,
          );
        } catch (err) {
          ctx.print(`could not follow the sample: ${errorMessage(err)}`);
        }
      }
      ctx.print('serving; press Ctrl-C to stop');
    });
}
