import { z } from 'zod';
import { parseDuration } from './duration.js';
import { ValidationError } from './errors.js';
import { EXECUTOR_KINDS, type ModuleSpec } from './types.js';
import { parseOrThrow } from './validation.js';
import { isReservedEventType, reservedTypeMessage, subscribeProblem } from './trace-settled.js';

/** Module names become subscription names, directory names and env values: keep them plain. */
export const MODULE_NAME = /^[a-z][a-z0-9_-]{0,62}$/;
/** Event types are topics on every bus (NATS subjects, AMQP routing keys): no spaces or wildcards. */
export const EVENT_TYPE = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

export const DEFAULT_RETRIES = 3;
export const DEFAULT_TIMEOUT_MS = 10 * 60_000;
export const DEFAULT_CONCURRENCY = 1;
export const DEFAULT_WARM_MAX_JOBS = 100;
export const DEFAULT_WARM_IDLE_MS = 5 * 60_000;

const eventType = z
  .string()
  .max(200)
  .regex(EVENT_TYPE, 'must be dot-separated words of letters, digits, "_" or "-"');

/** `ion.*` types are Ion's: a module may subscribe to its system events, never publish one. */
const subscribedType = eventType.superRefine((type, ctx) => {
  const problem = subscribeProblem(type);
  if (problem !== null) ctx.addIssue({ code: 'custom', message: problem });
});
const publishedType = eventType.superRefine((type, ctx) => {
  if (isReservedEventType(type))
    ctx.addIssue({ code: 'custom', message: reservedTypeMessage(type) });
});

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

const BYTES_HINT = 'must be a size like "512Mi", "2Gi", "256M" or a number of bytes';
const BYTE_UNITS: Record<string, number> = {
  '': 1,
  k: 1e3,
  m: 1e6,
  g: 1e9,
  t: 1e12,
  ki: 2 ** 10,
  mi: 2 ** 20,
  gi: 2 ** 30,
  ti: 2 ** 40,
};

/** `512Mi` (Kubernetes), `512m` / `1g` (Docker: binary), or a number of bytes. */
export function parseByteSize(value: string | number): number | null {
  if (typeof value === 'number') return Number.isInteger(value) && value > 0 ? value : null;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?)?b?\s*$/i.exec(value);
  if (m === null) return null;
  const unit = (m[2] ?? '').toLowerCase();
  // Docker's `512m` means MiB; Kubernetes' `512M` means 10^6: honour the case as each does.
  const factor =
    unit.length === 1 && m[2] === unit ? 2 ** (10 * ('kmgt'.indexOf(unit) + 1)) : BYTE_UNITS[unit];
  const bytes = Math.round(Number(m[1]) * (factor ?? NaN));
  return Number.isFinite(bytes) && bytes > 0 ? bytes : null;
}

const byteSize = z
  .union([z.string(), z.number()], { error: BYTES_HINT })
  .transform((value, ctx) => {
    const bytes = parseByteSize(value);
    if (bytes === null) {
      ctx.addIssue({ code: 'custom', message: BYTES_HINT });
      return z.NEVER;
    }
    return bytes;
  });

const CPU_HINT = 'must be a number of cores like 0.5 or 2, or millicores like "500m"';
const cpu = z.union([z.string(), z.number()], { error: CPU_HINT }).transform((value, ctx) => {
  const cores =
    typeof value === 'number'
      ? value
      : /^\d+m$/.test(value)
        ? Number(value.slice(0, -1)) / 1000
        : /^\d+(\.\d+)?$/.test(value)
          ? Number(value)
          : NaN;
  if (!Number.isFinite(cores) || cores <= 0 || cores > 1024) {
    ctx.addIssue({ code: 'custom', message: CPU_HINT });
    return z.NEVER;
  }
  return cores;
});

const runSchema = z
  .object({
    command: z
      .array(z.string().min(1, 'must not be empty'))
      .min(1, 'must hold the program and its arguments')
      .optional(),
    args: z.array(z.string()).optional(),
    image: z
      .string()
      .min(1, 'must not be empty')
      .max(500)
      .regex(/^[^\s]+$/, 'must be an image reference without spaces')
      .optional(),
    pull: z.enum(['always', 'if-not-present', 'never']).optional(),
    network: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/, 'must be none, bridge, host or a network name')
      .optional(),
    user: z
      .string()
      .regex(
        /^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$/,
        'must be a user like "1000", "1000:1000" or "nobody"',
      )
      .optional(),
  })
  .strict()
  .superRefine((run, ctx) => {
    if (run.command === undefined && run.image === undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['command'],
        message:
          'is required unless run.image names a container image (whose entrypoint then runs)',
      });
  });

const warmSchema = z
  .union([
    z.boolean(),
    z
      .object({
        maxJobs: z.number().int().min(1).max(1_000_000).default(DEFAULT_WARM_MAX_JOBS),
        idleTimeout: duration.default(DEFAULT_WARM_IDLE_MS),
      })
      .strict(),
  ])
  .optional();

const moduleSchema = z
  .object({
    name: z.string().regex(MODULE_NAME, 'must match ^[a-z][a-z0-9_-]{0,62}$'),
    subscribes: z.array(subscribedType).min(1, 'must name at least one event type'),
    publishes: z.array(publishedType).default([]),
    executor: z.enum(EXECUTOR_KINDS).optional(),
    run: runSchema,
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
    resources: z
      .object({
        cpu: cpu.optional(),
        memory: byteSize.optional(),
        gpu: z.number().int().min(0).max(64).optional(),
      })
      .strict()
      .optional(),
    warm: warmSchema,
  })
  .strict()
  .superRefine((m, ctx) => {
    if (m.executor === 'local' && m.run.image !== undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['run', 'image'],
        message:
          "a module with an image cannot run on the local executor; set executor to docker or kubernetes, or drop executor to use the worker's default",
      });
  });

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
  const spec: ModuleSpec = {
    name: m.name,
    subscribes: m.subscribes,
    publishes: m.publishes,
    run: dropUndefined({ ...m.run }),
    retries: m.retries,
    timeoutMs: m.timeout,
    concurrency: m.concurrency,
    env: m.env,
  };
  if (m.executor !== undefined) spec.executor = m.executor;
  if (m.resources !== undefined) {
    const { cpu, memory, gpu } = m.resources;
    spec.resources = dropUndefined({ cpu, memoryBytes: memory, gpu });
  }
  if (m.warm === true)
    spec.warm = { maxJobs: DEFAULT_WARM_MAX_JOBS, idleTimeoutMs: DEFAULT_WARM_IDLE_MS };
  else if (typeof m.warm === 'object')
    spec.warm = { maxJobs: m.warm.maxJobs, idleTimeoutMs: m.warm.idleTimeout };
  return spec;
}

/** The object without its undefined fields, so specs compare and store the same. */
function dropUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
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
    executor: z.enum(EXECUTOR_KINDS).optional(),
    run: z
      .object({
        command: z.array(z.string().min(1)).min(1).optional(),
        args: z.array(z.string()).optional(),
        cwd: z.string().optional(),
        image: z.string().min(1).optional(),
        pull: z.enum(['always', 'if-not-present', 'never']).optional(),
        network: z.string().min(1).optional(),
        user: z.string().min(1).optional(),
      })
      .strict(),
    retries: z.number().int().min(0).max(100),
    timeoutMs: z.number().int().positive(),
    concurrency: z.number().int().min(1).max(1000),
    env: z.record(z.string(), z.string()),
    resources: z
      .object({
        cpu: z.number().positive().optional(),
        memoryBytes: z.number().int().positive().optional(),
        gpu: z.number().int().min(0).optional(),
      })
      .strict()
      .optional(),
    warm: z
      .object({ maxJobs: z.number().int().min(1), idleTimeoutMs: z.number().int().positive() })
      .strict()
      .optional(),
  })
  .strict();

/** How a module runs, in one line for people: its image and/or its command and arguments. */
export function describeRun(run: ModuleSpec['run']): string {
  const argv = [...(run.command ?? []), ...(run.args ?? [])].join(' ');
  if (run.image === undefined) return argv;
  return argv === '' ? `image ${run.image}` : `image ${run.image}: ${argv}`;
}
