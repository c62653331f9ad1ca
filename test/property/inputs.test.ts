import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import { ValidationError } from '../../src/core/errors.js';
import { parsePipeline } from '../../src/core/pipeline.js';
import { parseNotice } from '../../src/bus/message-format.js';

/**
 * Property-based bad-input campaign (issue 12) for the inputs that are not HTTP requests
 * (the API has its own fuzz test): pipeline documents, configuration variables and bus
 * messages. Each is accepted or refused with a ValidationError (or a reason) that names
 * where the problem is; nothing else is ever thrown. Fixed seeds, bounded runs.
 */
const SEED = 1204;

/** Values near the edges of what the schemas accept. */
const edgy = fc.oneof(
  fc.constantFrom(
    '',
    ' ',
    '0',
    '-1',
    '1e309',
    'NaN',
    '10m',
    '5Gi',
    'ion/runtime:local',
    '..',
    '/etc',
  ),
  fc.string({ maxLength: 20 }),
  fc.integer({ min: -5, max: 2000 }),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.string({ maxLength: 8 }), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 6 }), fc.string({ maxLength: 6 }), { maxKeys: 3 }),
);

const moduleDoc = fc.record(
  {
    name: fc.oneof(fc.stringMatching(/^[a-z][a-z0-9_-]{0,8}$/), edgy),
    subscribes: fc.oneof(
      fc.array(fc.constantFrom('a', 'b.c', 'ion.trace.settled', 'x y', ''), { maxLength: 3 }),
      edgy,
    ),
    publishes: fc.oneof(fc.array(fc.constantFrom('a', 'b.c', '*', ''), { maxLength: 3 }), edgy),
    executor: fc.oneof(fc.constantFrom('local', 'docker', 'kubernetes', 'batch'), edgy),
    run: fc.oneof(
      fc.record(
        {
          command: fc.oneof(
            fc.array(fc.constantFrom('sh', '-c', 'true', ''), { maxLength: 3 }),
            edgy,
          ),
          image: edgy,
          args: edgy,
          pull: fc.oneof(fc.constantFrom('always', 'never', 'if-not-present'), edgy),
          network: edgy,
          user: edgy,
        },
        { requiredKeys: [] },
      ),
      edgy,
    ),
    retries: edgy,
    timeout: edgy,
    concurrency: edgy,
    env: fc.oneof(
      fc.dictionary(fc.constantFrom('OK', 'A_1', '1BAD', 'with space', ''), edgy, { maxKeys: 3 }),
      edgy,
    ),
    resources: fc.oneof(
      fc.record({ cpu: edgy, memory: edgy, gpu: edgy }, { requiredKeys: [] }),
      edgy,
    ),
    warm: fc.oneof(
      fc.boolean(),
      fc.record({ maxJobs: edgy, idleTimeout: edgy }, { requiredKeys: [] }),
      edgy,
    ),
    surprise: edgy,
  },
  { requiredKeys: [] },
);

/** A valid module with up to two fields replaced by random ones: most runs near the edge. */
const nearlyValid = fc
  .tuple(
    moduleDoc,
    fc.subarray(
      ['run', 'retries', 'timeout', 'concurrency', 'env', 'resources', 'warm', 'executor'],
      { maxLength: 2 },
    ),
  )
  .map(([random, keys]) => ({
    name: 'm',
    subscribes: ['a'],
    run: { command: ['true'] },
    ...Object.fromEntries(
      keys.filter((k) => k in random).map((k) => [k, (random as Record<string, unknown>)[k]]),
    ),
  }));

describe('random pipeline documents', () => {
  it('parse, or fail with a ValidationError naming each bad field under modules[i]', () => {
    let accepted = 0;
    let refused = 0;
    fc.assert(
      fc.property(
        fc.oneof(
          {
            weight: 4,
            arbitrary: fc.record({
              modules: fc.array(nearlyValid, { minLength: 1, maxLength: 2 }),
            }),
          },
          { weight: 3, arbitrary: fc.record({ modules: fc.array(moduleDoc, { maxLength: 3 }) }) },
          { weight: 1, arbitrary: fc.anything() },
        ),
        (doc) => {
          try {
            const pipeline = parsePipeline(doc);
            accepted += 1;
            for (const m of pipeline.modules) {
              expect(m.run.command ?? m.run.image).toBeDefined();
              if (m.executor === 'local') expect(m.run.image).toBeUndefined();
            }
          } catch (err) {
            expect(err, String(err)).toBeInstanceOf(ValidationError);
            const { issues, message } = err as ValidationError;
            expect(message).toMatch(/^invalid pipeline/);
            expect(issues.length).toBeGreaterThan(0);
            const structured = Array.isArray((doc as { modules?: unknown } | null)?.modules);
            for (const issue of issues) {
              if (structured) expect(issue.path).toMatch(/^modules(\[\d+\](\.|$)|$)/);
              expect(issue.message.length).toBeGreaterThan(3);
            }
            refused += 1;
          }
        },
      ),
      { seed: SEED, numRuns: 400 },
    );
    expect(accepted).toBeGreaterThan(0);
    expect(refused).toBeGreaterThan(0);
  });
});

describe('random configuration variables', () => {
  const names = [
    'ION_PORT',
    'ION_AUTH',
    'ION_BUS',
    'ION_STORE',
    'ION_BLOB',
    'ION_LEASE_MS',
    'ION_EXECUTOR',
    'ION_EXECUTOR_SPAWN_ON',
    'ION_KEEP_JOB_DIRS',
    'ION_S3_FORCE_PATH_STYLE',
    'ION_LOG_LEVEL',
    'ION_POSTGRES_POOL_SIZE',
    'DOCKER_HOST',
    'ION_KUBERNETES_NAMESPACE',
  ] as const;
  it('load, or fail with a ValidationError that names the variable or the config key', () => {
    fc.assert(
      fc.property(
        fc.dictionary(
          fc.constantFrom(...names),
          fc.oneof(
            fc.constantFrom(
              '1',
              '0',
              'true',
              'on',
              'off',
              'nats',
              'docker',
              'debug',
              '99999999',
              '-3',
            ),
            fc.string({ maxLength: 12 }),
          ),
          { maxKeys: 4 },
        ),
        (env) => {
          try {
            const config = loadConfig({ env });
            expect(Object.isFrozen(config)).toBe(true);
          } catch (err) {
            expect(err, String(err)).toBeInstanceOf(ValidationError);
            const message = (err as Error).message;
            const named =
              Object.keys(env).some((n) => message.includes(n)) ||
              /^invalid config:\n {2}\w/.test(message);
            expect(named, message).toBe(true);
          }
        },
      ),
      { seed: SEED, numRuns: 300 },
    );
  });
});

describe('random bus messages', () => {
  it('parse as a notice or give a reason; never throw', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.anything().map((v) => JSON.stringify(v) ?? ''),
          fc
            .record(
              { eventId: edgy, type: edgy, correlationId: edgy, jobId: edgy },
              { requiredKeys: [] },
            )
            .map((v) => JSON.stringify(v)),
        ),
        (body) => {
          const parsed = parseNotice({ id: 'm', topic: 't', body });
          if (typeof parsed === 'string') expect(parsed).toMatch(/^body /);
          else {
            expect(typeof parsed.eventId).toBe('string');
            expect(parsed.eventId).not.toBe('');
          }
        },
      ),
      { seed: SEED, numRuns: 500 },
    );
  });
});
