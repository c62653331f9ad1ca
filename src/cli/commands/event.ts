import type { Command } from 'commander';
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import type { IonClient } from '../../api/client.js';
import { UsageError, collect, type ApiOptions, type CliContext } from '../context.js';
import { progressLine, type ProgressLine } from '../render.js';

/** `--file PATH` carries the file as its base name; `--file EVENT_PATH=LOCAL_PATH` names it. */
export function parseFileOption(spec: string): { path: string; from: string } {
  const eq = spec.indexOf('=');
  if (eq > 0) return { path: spec.slice(0, eq), from: spec.slice(eq + 1) };
  return { path: basename(spec), from: spec };
}

export function parseDataOption(spec: string): { key: string; value: string } {
  const eq = spec.indexOf('=');
  if (eq <= 0) throw new UsageError(`--data "${spec}" must be KEY=VALUE`);
  return { key: spec.slice(0, eq), value: spec.slice(eq + 1) };
}

/** A progress line on stderr for each upload, when stderr is a terminal (else nothing). */
export function stderrProgress(
  ctx: CliContext,
): ((label: string, total: number) => ProgressLine) | undefined {
  if (ctx.stderr.isTTY !== true) return undefined;
  return (label, total) =>
    progressLine({ label, total, write: (text) => void ctx.stderr.write(text) });
}

/**
 * Uploads local files and publishes a root event carrying them. `progress`, when given, makes
 * a progress line per file (its label and size) that follows the bytes read from the file.
 */
export async function publishWithFiles(
  client: IonClient,
  input: {
    type: string;
    data: { key: string; value: string }[];
    files: { path: string; from: string }[];
    idempotencyKey?: string;
  },
  progress?: (label: string, total: number) => ProgressLine,
): Promise<{ eventId: string; correlationId: string; created: boolean }> {
  const files = [];
  for (const file of input.files) {
    // Checked here: a stream error inside the upload would read as "Ion unreachable".
    const info = await stat(file.from).catch(() => null);
    if (info === null) throw new UsageError(`--file ${file.from}: no such file`);
    if (!info.isFile()) throw new UsageError(`--file ${file.from}: not a regular file`);
    const line = progress?.(`uploading ${file.from}`, info.size);
    let ref;
    try {
      ref = await client.uploadFile(
        file.from,
        line === undefined ? {} : { onProgress: (sent, total) => line.update(sent, total) },
      );
    } finally {
      // Ends the line on failure too, so an error message starts on a line of its own.
      line?.done();
    }
    files.push({ path: file.path, sha256: ref.sha256 });
  }
  return client.publish({
    type: input.type,
    data: input.data,
    files,
    ...(input.idempotencyKey === undefined ? {} : { idempotencyKey: input.idempotencyKey }),
  });
}

export function registerEvent(program: Command, ctx: CliContext): void {
  const event = program.command('event').description('publish and inspect events');
  event
    .command('publish <type>')
    .description('publish a root event')
    .option('-d, --data <key=value>', 'metadata (repeatable)', collect)
    .option('--file <path>', 'attach a file: PATH or EVENT_PATH=LOCAL_PATH (repeatable)', collect)
    .option('--idempotency-key <key>', 'publishing again with the same key returns the same event')
    .option('--json', 'print JSON')
    .action(
      async (
        type: string,
        options: ApiOptions & {
          data?: string[];
          file?: string[];
          idempotencyKey?: string;
          json?: boolean;
        },
      ) => {
        const result = await publishWithFiles(
          ctx.clientFor(options),
          {
            type,
            data: (options.data ?? []).map(parseDataOption),
            files: (options.file ?? []).map(parseFileOption),
            ...(options.idempotencyKey === undefined
              ? {}
              : { idempotencyKey: options.idempotencyKey }),
          },
          // Machine-readable output stays clean of progress lines.
          options.json === true ? undefined : stderrProgress(ctx),
        );
        if (options.json === true) return ctx.printJson(result);
        ctx.print(
          `published ${type} ${result.eventId}${result.created ? '' : ' (already published with this idempotency key)'}`,
        );
        ctx.print(`follow it with: ion trace ${result.correlationId}`);
      },
    );
  event
    .command('get <eventId>')
    .description('show one event')
    .action(async (eventId: string, options: ApiOptions) => {
      ctx.printJson(await ctx.clientFor(options).getEvent(eventId));
    });
}
