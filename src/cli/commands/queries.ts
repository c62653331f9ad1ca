import type { Command } from 'commander';
import { createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import type { EventView, InsightHitView } from '../../api/client.js';
import { UsageError, positiveInt, type ApiOptions, type CliContext } from '../context.js';
import { table } from '../render.js';
import { stderrProgress } from './event.js';

/** Keeps only the options that were given, so the client sends no empty filters. */
function given<T extends Record<string, unknown>>(options: T): Partial<T> {
  return Object.fromEntries(
    Object.entries(options).filter(([, v]) => v !== undefined),
  ) as Partial<T>;
}

function eventRows(events: EventView[]): string[][] {
  return events.map((e) => [e.eventId, e.type, e.source, e.correlationId, e.createdAt]);
}

/**
 * `ion event ls`, `ion event lineage`, `ion insight ls`, `ion blob put` and `ion blob get`. Call after
 * `registerEvent`, whose `event` command gains the two sub-commands.
 */
export function registerQueryCommands(program: Command, ctx: CliContext): void {
  const event =
    program.commands.find((c) => c.name() === 'event') ??
    program.command('event').description('publish and inspect events');

  event
    .command('ls')
    .description('list events, newest first, one page at a time')
    .option('--type <type>', 'only this event type')
    .option('--source <source>', 'only events raised by this module (or api, gateway)')
    .option('--correlation-id <id>', 'only this trace')
    .option('--since <time>', 'created at or after this ISO 8601 time')
    .option('--until <time>', 'created before this ISO 8601 time')
    .option('--limit <n>', 'page size (1-1000)', '50')
    .option('--cursor <cursor>', 'the next-page cursor printed by a previous call')
    .option('--json', 'print JSON')
    .action(
      async (
        options: ApiOptions & {
          type?: string;
          source?: string;
          correlationId?: string;
          since?: string;
          until?: string;
          limit: string;
          cursor?: string;
          json?: boolean;
        },
      ) => {
        const page = await ctx.clientFor(options).listEvents({
          ...given({
            type: options.type,
            source: options.source,
            correlationId: options.correlationId,
            since: options.since,
            until: options.until,
            cursor: options.cursor,
          }),
          limit: positiveInt('--limit', options.limit),
        });
        if (options.json === true) return ctx.printJson(page);
        ctx.print(
          table(['EVENT', 'TYPE', 'SOURCE', 'CORRELATION', 'CREATED'], eventRows(page.events)),
        );
        if (page.nextCursor !== null) ctx.print(`next page: --cursor ${page.nextCursor}`);
      },
    );

  event
    .command('lineage <eventId>')
    .description("show an event's ancestry (root first) and its descendants")
    .option('--json', 'print JSON')
    .action(async (eventId: string, options: ApiOptions & { json?: boolean }) => {
      const lineage = await ctx.clientFor(options).eventLineage(eventId);
      if (options.json === true) return ctx.printJson(lineage);
      const headers = ['EVENT', 'TYPE', 'SOURCE', 'PARENT', 'CREATED'];
      const rows = (events: EventView[]) =>
        events.map((e) => [e.eventId, e.type, e.source, e.parentEventId ?? '-', e.createdAt]);
      ctx.print(`ancestors (${lineage.ancestors.length}):`);
      if (lineage.ancestors.length > 0) ctx.print(table(headers, rows(lineage.ancestors)));
      ctx.print(`event:`);
      ctx.print(table(headers, rows([lineage.event])));
      ctx.print(`descendants (${lineage.descendants.length}):`);
      if (lineage.descendants.length > 0) ctx.print(table(headers, rows(lineage.descendants)));
    });

  const insight = program.command('insight').description('query insights recorded by modules');
  insight
    .command('ls')
    .description('list insights, oldest first')
    .option('--module <name>', 'only this module')
    .option('--key <key>', 'only this key')
    .option('--value <value>', 'only this exact value')
    .option('--value-prefix <prefix>', 'only values starting with this (literally)')
    .option(
      '--has <key=value>',
      'only insights of jobs that also recorded this exact pair (repeatable, all must hold: --has label=car --has colour=red); prints one row per job',
      (term: string, all: string[] = []) => [...all, term],
    )
    .option('--correlation-id <id>', 'only this trace')
    .option('--since <time>', 'recorded at or after this ISO 8601 time')
    .option('--until <time>', 'recorded before this ISO 8601 time')
    .option('--limit <n>', 'at most this many (1-1000)', '100')
    .option('--json', 'print JSON')
    .action(
      async (
        options: ApiOptions & {
          module?: string;
          key?: string;
          value?: string;
          valuePrefix?: string;
          has?: string[];
          correlationId?: string;
          since?: string;
          until?: string;
          limit: string;
          json?: boolean;
        },
      ) => {
        if (options.value !== undefined && options.valuePrefix !== undefined)
          throw new UsageError('give --value or --value-prefix, not both');
        for (const term of options.has ?? [])
          if (term.indexOf('=') < 1)
            throw new UsageError(`--has ${term}: expected key=value, for example label=car`);
        const hits = await ctx.clientFor(options).queryInsights({
          ...given({
            module: options.module,
            key: options.key,
            value: options.value,
            valuePrefix: options.valuePrefix,
            correlationId: options.correlationId,
            since: options.since,
            until: options.until,
          }),
          ...(options.has === undefined ? {} : { has: options.has }),
          limit: positiveInt('--limit', options.limit),
        });
        if (options.json === true) return ctx.printJson({ insights: hits });
        if (options.has !== undefined) return ctx.print(jobTable(hits));
        ctx.print(
          table(
            ['MODULE', 'KEY', 'VALUE', 'EVENT', 'TYPE', 'CORRELATION', 'FILES'],
            hits.map((h) => [
              h.module,
              h.key,
              h.value,
              h.eventId,
              h.event?.type ?? '-',
              h.correlationId,
              (h.event?.files ?? []).map((f) => `${f.path}=${f.sha256.slice(0, 12)}`).join(' '),
            ]),
          ),
        );
      },
    );

  const blob = program.command('blob').description('upload and download stored files');
  blob
    .command('put <file>')
    .description('upload a file to the blob store and print its sha256 and size')
    .option('--json', 'print JSON')
    .action(async (file: string, options: ApiOptions & { json?: boolean }) => {
      // Checked here: a stream error inside the upload would read as "Ion unreachable".
      const info = await stat(file).catch(() => null);
      if (info === null) throw new UsageError(`${file}: no such file`);
      if (!info.isFile()) throw new UsageError(`${file}: not a regular file`);
      const client = ctx.clientFor(options);
      // Machine-readable output stays clean of progress lines.
      const line =
        options.json === true ? undefined : stderrProgress(ctx)?.(`uploading ${file}`, info.size);
      let ref;
      try {
        ref = await client.uploadFile(
          file,
          line === undefined ? {} : { onProgress: (sent, total) => line.update(sent, total) },
        );
      } finally {
        // Ends the line on failure too, so an error message starts on a line of its own.
        line?.done();
      }
      if (options.json === true) return ctx.printJson(ref);
      ctx.print(`${ref.sha256} ${ref.size}`);
    });
  blob
    .command('get <sha256>')
    .description('download a blob to a file (-o) or to stdout')
    .option('-o, --output <file>', 'write to this file instead of stdout')
    .action(async (sha256: string, options: ApiOptions & { output?: string }) => {
      if (!/^[0-9a-f]{64}$/.test(sha256))
        throw new UsageError('SHA256 must be 64 lower-case hex digits');
      const { stream } = await ctx.clientFor(options).getBlob(sha256);
      if (options.output === undefined) {
        await pipeline(stream, ctx.stdout, { end: false });
        return;
      }
      await pipeline(stream, createWriteStream(options.output));
    });
}

/**
 * One row per job (the insights of one job describe one thing, e.g. one detected object):
 * its module, its insights as key=value in recorded order, its event and the event's files.
 */
function jobTable(hits: InsightHitView[]): string {
  const jobs = new Map<string, InsightHitView[]>();
  for (const hit of hits) jobs.set(hit.jobId, [...(jobs.get(hit.jobId) ?? []), hit]);
  return table(
    ['JOB', 'MODULE', 'INSIGHTS', 'EVENT', 'FILES'],
    [...jobs].map(([jobId, rows]) => [
      jobId,
      rows[0]!.module,
      rows.map((h) => `${h.key}=${h.value}`).join(' '),
      rows[0]!.eventId,
      (rows[0]!.event?.files ?? []).map((f) => `${f.path}=${f.sha256.slice(0, 12)}`).join(' '),
    ]),
  );
}
