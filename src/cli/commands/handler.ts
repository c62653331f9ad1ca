import type { Command } from 'commander';
import { open, readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Readable } from 'node:stream';
import { createBlobStore } from '../../app/backends.js';
import type { BlobStore } from '../../blob/blob-store.js';
import { loadConfig } from '../../config/config.js';
import { IonError, ValidationError, errorMessage } from '../../core/errors.js';
import {
  HANDLER_JOB_ENV,
  RESULT_PREFIX,
  formatResult,
  handlerEvent,
  parseHandlerJob,
  type HandlerJob,
  type HandlerResult,
} from '../../executors/kubernetes/handler-protocol.js';
import { collectJobDir } from '../../handler/collect.js';
import { prepareJobDir } from '../../handler/prepare.js';
import type { CliContext } from '../context.js';

export type HandlerStep = 'prepare' | 'collect';

export interface HandlerOptions {
  /** The job directory (the module's base directory). */
  dir: string;
  /** Read the job description from this file instead of `ION_JOB`. */
  jobFile?: string;
  /** Where the result is also written when the file exists (Kubernetes' termination message). */
  terminationLog?: string;
}

/** Where a handler step writes: its result line (stdout) and its messages (stderr). */
export interface HandlerIo {
  out(text: string): void;
  err(text: string): void;
}

/**
 * Runs one handler step and returns its exit code: 0 when it did its work, 1 when not.
 * `prepare` lays the job directory out (inputs downloaded from the blob store, metadata);
 * `collect` validates and stores the module's outputs, stores their description
 * (`CollectedOutputs` JSON) as a blob and reports that blob's sha256.
 *
 * The result goes to the last stdout line (`ion-handler-result: {...}`) and to the
 * termination log, so the runner reads it from either. The blob store comes from the same
 * `ION_*` variables (or `ION_CONFIG` file) as `ion server`'s, never from arguments: the
 * runner gives them to the handler only, not to the module.
 */
export async function runHandlerStep(
  step: HandlerStep,
  options: HandlerOptions,
  env: NodeJS.ProcessEnv,
  io: HandlerIo,
): Promise<number> {
  const dir = resolve(options.dir);
  let blobs: BlobStore | null = null;
  let result: HandlerResult;
  try {
    const job = await readJob(options.jobFile, env);
    const config = loadConfig({ env });
    blobs = await createBlobStore(config);
    await blobs.start();
    const store = blobs;
    if (step === 'prepare') {
      const event = handlerEvent(job);
      await prepareJobDir(dir, event, (sha, dest) => store.materialize(sha, dest));
      io.err(
        `ion handler prepare: ${event.files.length} input file(s) of event ${event.eventId} in ${dir}\n`,
      );
      result = { ok: true, inputs: event.files.length };
    } else {
      if (job.publishes === undefined)
        throw new ValidationError('the job description has no publishes; collect needs them');
      const collected = await collectJobDir(dir, job.publishes, (path) => store.putFile(path));
      const ref = await store.put(Readable.from([Buffer.from(JSON.stringify(collected))]));
      io.err(
        `ion handler collect: ${collected.outputs.length} output file(s), ${collected.events.length} event(s), ${collected.insights.length} insight(s) stored\n`,
      );
      result = { ok: true, collected: ref.sha256 };
    }
  } catch (err) {
    const code = err instanceof IonError ? err.code : 'internal';
    io.err(`error: ${errorMessage(err)}\n`);
    result = { ok: false, error: { code, message: errorMessage(err) } };
  } finally {
    await blobs?.close().catch(() => undefined);
  }
  const line = formatResult(result);
  io.out(`${RESULT_PREFIX}${line}\n`);
  if (options.terminationLog !== undefined) await writeIfPresent(options.terminationLog, line);
  return result.ok ? 0 : 1;
}

async function readJob(jobFile: string | undefined, env: NodeJS.ProcessEnv): Promise<HandlerJob> {
  if (jobFile !== undefined) {
    const text = await readFile(jobFile, 'utf8').catch((err: unknown) => {
      throw new ValidationError(`cannot read --job-file ${jobFile}: ${errorMessage(err)}`);
    });
    return parseHandlerJob(text, `--job-file ${jobFile}`);
  }
  const text = env[HANDLER_JOB_ENV];
  if (text === undefined || text === '')
    throw new ValidationError(
      `${HANDLER_JOB_ENV} is not set: give the job description in it or with --job-file (see docs/modules.md#ion-handler-prepare-and-collect)`,
    );
  return parseHandlerJob(text, HANDLER_JOB_ENV);
}

/**
 * Writes `text` to `path` only when the file exists: Kubernetes mounts the termination log
 * into every container; anywhere else nothing is created (least of all under /dev).
 */
async function writeIfPresent(path: string, text: string): Promise<void> {
  const handle = await open(path, 'r+').catch(() => null);
  if (handle === null) return;
  try {
    await handle.truncate(0);
    await handle.write(text, 0);
  } catch {
    // The stdout line carries the same result.
  } finally {
    await handle.close();
  }
}

export function registerHandler(program: Command, ctx: CliContext): void {
  const handler = program
    .command('handler')
    .description(
      'the steps around a module on a remote runner (a Kubernetes pod): prepare its directory, collect its outputs; the blob store comes from the ION_* environment',
    );
  for (const step of ['prepare', 'collect'] as const) {
    handler
      .command(step)
      .description(
        step === 'prepare'
          ? 'lay out the job directory: download the event files from the blob store into in/data, write in/eventmeta.json'
          : "validate and store the module's outputs; report the stored description's sha256 (ion-handler-result line and termination log)",
      )
      .option('--dir <path>', 'the job directory', '/ion')
      .option(
        '--job-file <path>',
        `read the job description from this file instead of ${HANDLER_JOB_ENV}`,
      )
      .option(
        '--termination-log <path>',
        'also write the result here when the file exists',
        '/dev/termination-log',
      )
      .action(async (options: HandlerOptions) => {
        ctx.exitCode = await runHandlerStep(step, options, process.env, {
          out: (text) => ctx.stdout.write(text),
          err: (text) => ctx.stderr.write(text),
        });
      });
  }
}
