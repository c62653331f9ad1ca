import { z } from 'zod';
import { parseDuration } from './duration.js';
import { ValidationError } from './errors.js';
import type { ModuleSpec } from './types.js';
import { parseOrThrow } from './validation.js';

/** Module names become subscription names, directory names and env values: keep them plain. */
export const MODULE_NAME = /^[a-z][a-z0-9_-]{0,62}$/;
/** Event types are topics on every bus (NATS subjects, AMQP routing keys): no spaces or wildcards. */
export const EVENT_TYPE = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

export const DEFAULT_RETRIES = 3;
export const DEFAULT_TIMEOUT_MS = 10 * 60_000;
export const DEFAULT_CONCURRENCY = 1;

const eventType = z
  .string()
  .max(200)
  .regex(EVENT_TYPE, 'must be dot-separated words of letters, digits, "_" or "-"');

const DURATION_HINT =
  'must be a duration like "500ms", "30s", "10m" or "1h", or a number of seconds, at least 1ms';

/** `30s`, `1m30s`, or a number of seconds; one clear message whatever is wrong. */
const duration = z
  .union([z.string(), z.number()], { error: DURATION_HINT })
  .transform((value, ctx) => {
    const ms = typeof value === 'number' ? Math.round(value * 1000) : parseDuration(value);
    if (ms === null || !Number.isFinite(ms) || ms < 1) {
      ctx.addIssue({ code: 'custom', message: DURATION_HINT });
      return z.NEVER;
    }
    return ms;
  });

const envValue = z.union([z.string(), z.number(), z.boolean()]).transform(String);

const moduleSchema = z
  .object({
    name: z.string().regex(MODULE_NAME, 'must match ^[a-z][a-z0-9_-]{0,62}$'),
    subscribes: z.array(eventType).min(1, 'must name at least one event type'),
    publishes: z.array(eventType).default([]),
    executor: z.literal('local').default('local'),
    run: z
      .object({
        command: z
          .array(z.string().min(1, 'must not be empty'))
          .min(1, 'must hold the program and its arguments'),
      })
      .strict(),
    retries: z.number().int().min(0).max(100).default(DEFAULT_RETRIES),
    timeout: duration.default(DEFAULT_TIMEOUT_MS),
    concurrency: z.number().int().min(1).max(1000).default(DEFAULT_CONCURRENCY),
    env: z
      .record(z.string(), envValue)
      .superRefine((env, ctx) => {
        for (const key of Object.keys(env)) {
          if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) {
            ctx.addIssue({ code: 'custom', path: [key], message: 'is not a valid variable name' });
          }
        }
      })
      .default({}),
  })
  .strict();

const pipelineSchema = z
  .object({
    name: z.string().optional(),
    modules: z.array(moduleSchema).min(1, 'must declare at least one module'),
  })
  .strict();

/** A validated pipeline: the module specs it declares. */
export interface Pipeline {
  name?: string;
  modules: ModuleSpec[];
}

/**
 * Validates a parsed pipeline document. Errors name the field (`modules[1].timeout`) and the
 * problem.
 */
export function parsePipeline(doc: unknown): Pipeline {
  const parsed = parseOrThrow(pipelineSchema, doc, 'pipeline');
  const seen = new Map<string, number>();
  parsed.modules.forEach((m, i) => {
    const first = seen.get(m.name);
    if (first !== undefined) {
      throw new ValidationError(
        `invalid pipeline:\n  modules[${i}].name: "${m.name}" is already declared by modules[${first}]`,
        [{ path: `modules[${i}].name`, message: `"${m.name}" is already declared` }],
      );
    }
    seen.set(m.name, i);
  });
  return {
    ...(parsed.name === undefined ? {} : { name: parsed.name }),
    modules: parsed.modules.map(toSpec),
  };
}

function toSpec(m: z.output<typeof moduleSchema>): ModuleSpec {
  return {
    name: m.name,
    subscribes: m.subscribes,
    publishes: m.publishes,
    executor: m.executor,
    run: { command: m.run.command },
    retries: m.retries,
    timeoutMs: m.timeout,
    concurrency: m.concurrency,
    env: m.env,
  };
}

/**
 * Validates one module as a pipeline file declares it (same fields and defaults), for the
 * single-module API. `name` comes from the URL; a `name` in the document must agree with it.
 */
export function parseModule(name: string, doc: unknown): ModuleSpec {
  if (typeof doc === 'object' && doc !== null && !Array.isArray(doc)) {
    const given = (doc as Record<string, unknown>).name;
    if (given !== undefined && given !== name) {
      throw new ValidationError(
        `invalid module:\n  name: ${JSON.stringify(given)} differs from the module named in the URL ("${name}")`,
        [{ path: 'name', message: 'differs from the name in the URL' }],
      );
    }
    return toSpec(parseOrThrow(moduleSchema, { ...doc, name }, 'module'));
  }
  return toSpec(parseOrThrow(moduleSchema, doc, 'module'));
}

/** Schema of one module spec as stored and sent over the API (already normalised). */
export const moduleSpecSchema = z
  .object({
    name: z.string().regex(MODULE_NAME),
    subscribes: z.array(eventType).min(1),
    publishes: z.array(eventType),
    executor: z.literal('local'),
    run: z
      .object({ command: z.array(z.string().min(1)).min(1), cwd: z.string().optional() })
      .strict(),
    retries: z.number().int().min(0).max(100),
    timeoutMs: z.number().int().positive(),
    concurrency: z.number().int().min(1).max(1000),
    env: z.record(z.string(), z.string()),
  })
  .strict();
