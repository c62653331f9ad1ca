/** JSON schemas of the v1 API: request validation, response serialisation, OpenAPI later. */
import { JOB_STATES } from '../core/types.js';

const keyValue = {
  type: 'object',
  required: ['key', 'value'],
  properties: { key: { type: 'string' }, value: { type: 'string' } },
} as const;
const fileRef = {
  type: 'object',
  required: ['path', 'sha256', 'size'],
  properties: { path: { type: 'string' }, sha256: { type: 'string' }, size: { type: 'integer' } },
} as const;

export const eventSchema = {
  type: 'object',
  required: [
    'eventId',
    'type',
    'correlationId',
    'parentEventId',
    'source',
    'data',
    'files',
    'createdAt',
  ],
  properties: {
    eventId: { type: 'string' },
    type: { type: 'string' },
    correlationId: { type: 'string' },
    parentEventId: { type: ['string', 'null'] },
    source: { type: 'string' },
    sourceJobId: { type: ['string', 'null'] },
    data: { type: 'object', additionalProperties: { type: 'string' } },
    metadata: { type: 'array', items: keyValue },
    files: { type: 'array', items: fileRef },
    createdAt: { type: 'string' },
  },
} as const;

export const jobSchema = {
  type: 'object',
  properties: {
    jobId: { type: 'string' },
    module: { type: 'string' },
    moduleVersion: { type: 'integer' },
    eventId: { type: 'string' },
    correlationId: { type: 'string' },
    state: { type: 'string', enum: [...JOB_STATES] },
    attempts: { type: 'integer' },
    createdAt: { type: 'string' },
    updatedAt: { type: 'string' },
    finishedAt: { type: ['string', 'null'] },
    lastError: { type: ['string', 'null'] },
    outputs: { type: 'array', items: fileRef },
    replayId: { type: ['string', 'null'] },
    replayOf: { type: ['string', 'null'] },
    pinnedVersion: { type: ['integer', 'null'] },
    cancelRequestedAt: { type: ['string', 'null'] },
  },
} as const;

export const attemptSchema = {
  type: 'object',
  properties: {
    attempt: { type: 'integer' },
    moduleVersion: { type: 'integer' },
    workerId: { type: 'string' },
    outcome: { type: 'string' },
    startedAt: { type: 'string' },
    finishedAt: { type: ['string', 'null'] },
    durationMs: { type: ['integer', 'null'] },
    exitCode: { type: ['integer', 'null'] },
    errorCode: { type: ['string', 'null'] },
    errorKind: { type: ['string', 'null'] },
    error: { type: ['string', 'null'] },
    logTail: { type: 'string' },
    logSize: { type: ['integer', 'null'] },
  },
} as const;

export const insightSchema = {
  type: 'object',
  properties: {
    jobId: { type: 'string' },
    module: { type: 'string' },
    eventId: { type: 'string' },
    correlationId: { type: 'string' },
    key: { type: 'string' },
    value: { type: 'string' },
    createdAt: { type: 'string' },
  },
} as const;

/** A module spec's fields as the API returns them (stored modules and their versions). */
export const moduleSpecProperties = {
  name: { type: 'string' },
  subscribes: { type: 'array', items: { type: 'string' } },
  publishes: { type: 'array', items: { type: 'string' } },
  executor: { type: 'string' },
  run: {
    type: 'object',
    properties: {
      command: { type: 'array', items: { type: 'string' } },
      args: { type: 'array', items: { type: 'string' } },
      cwd: { type: 'string' },
      image: { type: 'string' },
      pull: { type: 'string' },
      network: { type: 'string' },
      user: { type: 'string' },
    },
  },
  retries: { type: 'integer' },
  timeoutMs: { type: 'integer' },
  concurrency: { type: 'integer' },
  env: { type: 'object', additionalProperties: { type: 'string' } },
  resources: {
    type: 'object',
    properties: {
      cpu: { type: 'number' },
      memoryBytes: { type: 'integer' },
      gpu: { type: 'integer' },
    },
  },
  warm: {
    type: 'object',
    properties: { maxJobs: { type: 'integer' }, idleTimeoutMs: { type: 'integer' } },
  },
} as const;

export const moduleSchema = {
  type: 'object',
  properties: {
    ...moduleSpecProperties,
    version: { type: 'integer' },
    paused: { type: 'boolean' },
    createdAt: { type: 'string' },
    updatedAt: { type: 'string' },
  },
} as const;

export const deadLetterSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    jobId: { type: 'string' },
    module: { type: 'string' },
    eventId: { type: ['string', 'null'] },
    reason: { type: 'string' },
    attempts: { type: 'integer' },
    logTail: { type: 'string' },
    createdAt: { type: 'string' },
  },
} as const;

export const publishBodySchema = {
  type: 'object',
  required: ['type'],
  additionalProperties: false,
  properties: {
    type: { type: 'string', minLength: 1, maxLength: 200 },
    data: {
      oneOf: [
        { type: 'object', additionalProperties: { type: 'string' } },
        {
          type: 'array',
          maxItems: 10000,
          items: {
            type: 'object',
            required: ['key', 'value'],
            additionalProperties: false,
            properties: { key: { type: 'string', minLength: 1 }, value: { type: 'string' } },
          },
        },
      ],
    },
    files: {
      type: 'array',
      maxItems: 10000,
      items: {
        type: 'object',
        required: ['path', 'sha256'],
        additionalProperties: false,
        properties: {
          path: { type: 'string', minLength: 1, maxLength: 4096 },
          sha256: { type: 'string', pattern: '^[0-9a-f]{64}$' },
        },
      },
    },
    idempotencyKey: { type: 'string', minLength: 1, maxLength: 256 },
  },
} as const;

export const traceSchema = {
  type: 'object',
  properties: {
    correlationId: { type: 'string' },
    events: { type: 'array', items: eventSchema },
    jobs: { type: 'array', items: jobSchema },
    insights: { type: 'array', items: insightSchema },
  },
} as const;
