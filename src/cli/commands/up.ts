import type { Command } from 'commander';
import { createReadStream, mkdirSync, createWriteStream } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { z } from 'zod';
import { IonClient } from '../../api/client.js';
import { IonApp } from '../../app/ion-app.js';
import { createLogger } from '../../app/logger.js';
import { loadConfig } from '../../config/config.js';
import { errorMessage } from '../../core/errors.js';
import { loadPipelineDocument, readYamlFile } from '../../core/pipeline-file.js';
import { parseOrThrow } from '../../core/validation.js';
import { UsageError, print } from '../context.js';
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

function flags(options: UpOptions): Record<string, unknown> {
  const api: Record<string, unknown> = {};
  if (options.port !== undefined) {
    if (!/^\d+$/.test(options.port))
      throw new UsageError(`--port must be a port number, got "${options.port}"`);
    api.port = Number(options.port);
  }
  if (options.host !== undefined) api.host = options.host;
  return {
    ...(options.dataDir === undefined ? {} : { dataDir: options.dataDir }),
    ...(Object.keys(api).length > 0 ? { api } : {}),
  };
}

interface UpOptions {
  dataDir?: string;
  port?: string;
  host?: string;
  file?: string;
  submit?: string;
  config?: string;
}

export function registerUp(program: Command): void {
  program
    .command('up')
    .description(
      'run all of Ion in this process on the embedded defaults (SQLite, local files, local processes)',
    )
    .option('--data-dir <dir>', 'where Ion keeps its data (env ION_DATA_DIR; default ./.ion)')
    .option('--port <n>', 'API port (env ION_PORT; default 7411; 0 picks a free one)')
    .option('--host <host>', 'API address (env ION_HOST; default 127.0.0.1)')
    .option('-f, --file <path>', 'apply this pipeline file at start')
    .option(
      '--submit <path>',
      'publish this sample event file once started, follow its jobs and print the trace',
    )
    .option('--config <path>', 'config file (env ION_CONFIG)')
    .action(async (options: UpOptions) => {
      const config = loadConfig({
        ...(options.config === undefined ? {} : { file: options.config }),
        env: process.env,
        flags: flags(options),
      });
      mkdirSync(config.dataDir, { recursive: true });
      const logFile = join(config.dataDir, 'ion.log');
      const logger = createLogger(config.logLevel, createWriteStream(logFile, { flags: 'a' }));
      const app = new IonApp(
        config,
        logger,
        { api: true, relay: true, workers: true },
        process.env,
      );
      let stopping = false;
      const shutdown = (signal: string): void => {
        if (stopping) {
          print('second signal: exiting now');
          process.exit(1);
        }
        stopping = true;
        print(
          `\n${signal}: stopping (running jobs get ${config.dispatcher.shutdownGraceMs}ms to finish)...`,
        );
        app.stop().then(
          () => process.exit(0),
          (err: unknown) => {
            process.stderr.write(`error while stopping: ${errorMessage(err)}\n`);
            process.exit(1);
          },
        );
      };
      process.on('SIGINT', () => shutdown('SIGINT'));
      process.on('SIGTERM', () => shutdown('SIGTERM'));

      let url: string;
      try {
        url = (await app.start())!;
      } catch (err) {
        await app.stop();
        throw err;
      }
      print(`Ion is up at ${url}`);
      print(
        `  embedded defaults: SQLite bus and store, files and blobs under ${config.dataDir}, local processes`,
      );
      print(`  auth: off (the API listens on ${config.api.host} only); logs: ${logFile}`);
      if (options.file !== undefined) {
        const result = await app.control.applyPipeline(loadPipelineDocument(options.file));
        print(`applied ${options.file}:`);
        print(
          table(
            ['MODULE', 'VERSION', 'CHANGE'],
            result.modules.map((m) => [m.name, String(m.version), m.change]),
          ),
        );
      }
      if (options.submit !== undefined) {
        const event = await submitSample(app, options.submit);
        print(`submitted ${options.submit} as event ${event.eventId}; following its jobs...`);
        const client = new IonClient(url);
        try {
          const trace = await waitForTrace(
            client,
            event.correlationId,
            10 * 60_000,
            (t, changed) => {
              for (const job of t.jobs.filter((j) => changed.includes(j.jobId))) {
                print(
                  `  ${new Date().toISOString().slice(11, 23)}  ${job.module.padEnd(12)} ${job.state.padEnd(13)} attempt ${job.attempts}  event ${job.eventId.slice(0, 8)}`,
                );
              }
            },
          );
          print(`\n${renderTrace(trace)}\n`);
          print(
            `${trace.events.length} events, ${summariseJobs(trace.jobs)}. See it again with: ion trace ${event.correlationId}`,
          );
        } catch (err) {
          print(`could not follow the sample: ${errorMessage(err)}`);
        }
      }
      print('serving; press Ctrl-C to stop');
    });
}
