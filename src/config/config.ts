import { resolve } from 'node:path';
import { z } from 'zod';
import { EXECUTOR_KINDS } from '../core/types.js';
import { readYamlFile } from '../core/pipeline-file.js';
import { parseOrThrow } from '../core/validation.js';
import { ValidationError } from '../core/errors.js';

/**
 * Ion's one configuration schema. Loaded once at start: defaults < config file < `ION_*`
 * environment < flags; unknown keys are rejected and the result is frozen. Backends are
 * discriminated unions on `kind` so later adapters slot in beside the embedded ones.
 */
const busSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('sqlite'), path: z.string().optional() }).strict(),
  z
    .object({
      kind: z.literal('nats'),
      /** Comma-separated server URLs. */
      servers: z.string().min(1).default('nats://127.0.0.1:4222'),
      stream: z
        .string()
        .regex(/^[A-Za-z0-9_-]+$/)
        .default('ION'),
    })
    .strict(),
  z
    .object({
      kind: z.literal('rabbitmq'),
      url: z.string().min(1).default('amqp://guest:guest@127.0.0.1:5672'),
      exchange: z.string().min(1).default('ion'),
    })
    .strict(),
]);
const storeSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('sqlite'), path: z.string().optional() }).strict(),
  z
    .object({
      kind: z.literal('postgres'),
      url: z.string().min(1).default('postgres://postgres@127.0.0.1:5432/postgres'),
      schema: z
        .string()
        .regex(/^[a-z_][a-z0-9_]*$/)
        .default('ion'),
      poolSize: z.number().int().min(1).max(1000).default(10),
    })
    .strict(),
]);
const blobSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('fs'), dir: z.string().optional() }).strict(),
  z
    .object({
      kind: z.literal('s3'),
      bucket: z.string().min(3),
      prefix: z.string().default(''),
      region: z.string().default('us-east-1'),
      endpoint: z.string().optional(),
      forcePathStyle: z.boolean().default(false),
      accessKeyId: z.string().optional(),
      secretAccessKey: z.string().optional(),
      /** `when_required` for S3-compatible servers without aws-chunked uploads (s3rver, old MinIO). */
      checksums: z.enum(['when_supported', 'when_required']).default('when_supported'),
    })
    .strict(),
  z
    .object({
      kind: z.literal('azure'),
      connectionString: z.string().min(1),
      container: z.string().min(3),
      prefix: z.string().default(''),
    })
    .strict(),
]);
const executorSchema = z
  .object({
    /** The executor of modules that do not name one (`ion up --executor docker`). */
    kind: z.enum(EXECUTOR_KINDS).default('local'),
    /**
     * Where local module processes are forked: `inline` on the main thread, `thread` on a
     * worker thread (off the event loop), `process` from a small launcher process.
     */
    spawnOn: z.enum(['inline', 'thread', 'process']).default('process'),
    docker: z
      .object({
        /**
         * The Docker Engine API: `unix:///var/run/docker.sock` (the default), a podman
         * socket, or `tcp://host:port`. `DOCKER_HOST` when unset.
         */
        host: z.string().min(1).optional(),
        /** The image that runs modules declared with a command and no image. */
        runtimeImage: z.string().min(1).default('ion/runtime:local'),
        /** Time between the stop signal and the kill of a container on timeout or cancel. */
        stopGraceMs: z.number().int().min(0).default(2000),
        /** Failures to pull or find an image are retried no sooner than this. */
        imageRetryDelayMs: z.number().int().min(0).default(60_000),
      })
      .strict()
      .prefault({}),
    kubernetes: z
      .object({
        namespace: z.string().min(1).default('default'),
        /** Path of a kubeconfig file; in-cluster credentials when unset and in a pod. */
        kubeconfig: z.string().min(1).optional(),
        /** The image that holds `ion handler` (prepare and collect containers). */
        handlerImage: z.string().min(1).default('ion/ion:local'),
        /** The image that runs modules declared with a command and no image. */
        runtimeImage: z.string().min(1).default('ion/runtime:local'),
        serviceAccount: z.string().min(1).optional(),
        imagePullSecrets: z.array(z.string().min(1)).default([]),
        nodeSelector: z.record(z.string(), z.string()).default({}),
        tolerations: z.array(z.record(z.string(), z.unknown())).default([]),
        /**
         * A Secret whose keys become the handler containers' environment: the blob store's
         * credentials (`ION_S3_*` or `ION_AZURE_*`), never shown to the module container.
         */
        blobSecret: z.string().min(1).optional(),
        /** A pod still pending after this fails its attempt, with the reason from its events. */
        pendingTimeoutMs: z
          .number()
          .int()
          .min(1000)
          .default(5 * 60_000),
        ttlSecondsAfterFinished: z.number().int().min(0).default(300),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export const configSchema = z
  .object({
    dataDir: z.string().default('.ion'),
    logLevel: z
      .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
      .default('info'),
    api: z
      .object({
        host: z.string().default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(7411),
        bodyLimitBytes: z
          .number()
          .int()
          .positive()
          .default(1024 * 1024),
        /**
         * `on`: every route but the health checks needs a bearer token with the right scope
         * (docs/auth.md). Off when nothing says otherwise; `ion server` defaults to `on`.
         */
        auth: z.enum(['on', 'off']).default('off'),
        /**
         * PEM certificate (chain) and private key files: with both, the API serves HTTPS
         * (docs/auth.md, "TLS"). Paths only: the files are read at start, never logged.
         */
        tlsCertFile: z.string().min(1).optional(),
        tlsKeyFile: z.string().min(1).optional(),
        /** A request's headers must all arrive within this (Node's `headersTimeout`); else 408. */
        headersTimeoutMs: z.number().int().min(100).default(30_000),
        /**
         * A whole request (headers and body) must arrive within this, else 408; 0 turns it off.
         * Streamed uploads (PUT /v1/blobs, the gateway) are exempt: a multi-GB upload can take
         * longer, so they are held to `uploadMinBytesPerSecond` instead.
         */
        requestTimeoutMs: z.number().int().min(0).default(60_000),
        /**
         * A connection on which nothing moves either way for this long is closed (the socket
         * idle timeout); a response that streams on purpose (live stream, followed log) is not.
         */
        idleTimeoutMs: z.number().int().min(100).default(60_000),
        /** How long an idle keep-alive connection stays open between requests. */
        keepAliveTimeoutMs: z.number().int().min(100).default(5_000),
        /**
         * A streamed upload slower than this, averaged over each `idleTimeoutMs`, is cut off
         * with 408 (a client that trickles bytes); 0 turns the check off.
         */
        uploadMinBytesPerSecond: z.number().int().min(0).default(1024),
      })
      .strict()
      .superRefine((api, ctx) => {
        // One without the other would silently serve plain HTTP: refuse it instead.
        if (api.tlsCertFile !== undefined && api.tlsKeyFile === undefined)
          ctx.addIssue({
            code: 'custom',
            path: ['tlsKeyFile'],
            message:
              'required when api.tlsCertFile is set (TLS needs both the certificate and the key; env ION_API_TLS_KEY_FILE)',
          });
        if (api.tlsKeyFile !== undefined && api.tlsCertFile === undefined)
          ctx.addIssue({
            code: 'custom',
            path: ['tlsCertFile'],
            message:
              'required when api.tlsKeyFile is set (TLS needs both the certificate and the key; env ION_API_TLS_CERT_FILE)',
          });
      })
      .prefault({}),
    bus: busSchema.default({ kind: 'sqlite' }),
    store: storeSchema.default({ kind: 'sqlite' }),
    blob: blobSchema.default({ kind: 'fs' }),
    executor: executorSchema.prefault({}),
    dispatcher: z
      .object({
        /** How long a delivery stays leased without an extension. */
        leaseMs: z.number().int().min(100).default(30_000),
        /** First retry delay; doubles per failure, with full jitter. */
        retryBaseDelayMs: z.number().int().min(0).default(1000),
        retryMaxDelayMs: z
          .number()
          .int()
          .min(0)
          .default(5 * 60_000),
        /** How long running jobs may finish after SIGINT/SIGTERM before they are released. */
        shutdownGraceMs: z.number().int().min(0).default(10_000),
        /** How often a worker looks for pipeline changes made by other processes. */
        moduleRefreshMs: z.number().int().min(50).default(1000),
        /** Keep job directories after the attempt (debugging). */
        keepJobDirs: z.boolean().default(false),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type IonConfig = Readonly<z.output<typeof configSchema>>;

/** Environment variables that map onto config keys, with how to parse them. */
const ENV_KEYS: Record<string, { path: string[]; type: 'string' | 'int' | 'bool' }> = {
  ION_DATA_DIR: { path: ['dataDir'], type: 'string' },
  ION_LOG_LEVEL: { path: ['logLevel'], type: 'string' },
  ION_HOST: { path: ['api', 'host'], type: 'string' },
  ION_PORT: { path: ['api', 'port'], type: 'int' },
  ION_AUTH: { path: ['api', 'auth'], type: 'string' },
  ION_API_TLS_CERT_FILE: { path: ['api', 'tlsCertFile'], type: 'string' },
  ION_API_TLS_KEY_FILE: { path: ['api', 'tlsKeyFile'], type: 'string' },
  ION_API_HEADERS_TIMEOUT_MS: { path: ['api', 'headersTimeoutMs'], type: 'int' },
  ION_API_REQUEST_TIMEOUT_MS: { path: ['api', 'requestTimeoutMs'], type: 'int' },
  ION_API_IDLE_TIMEOUT_MS: { path: ['api', 'idleTimeoutMs'], type: 'int' },
  ION_API_KEEP_ALIVE_TIMEOUT_MS: { path: ['api', 'keepAliveTimeoutMs'], type: 'int' },
  ION_API_UPLOAD_MIN_BYTES_PER_SECOND: { path: ['api', 'uploadMinBytesPerSecond'], type: 'int' },
  ION_LEASE_MS: { path: ['dispatcher', 'leaseMs'], type: 'int' },
  ION_RETRY_BASE_DELAY_MS: { path: ['dispatcher', 'retryBaseDelayMs'], type: 'int' },
  ION_RETRY_MAX_DELAY_MS: { path: ['dispatcher', 'retryMaxDelayMs'], type: 'int' },
  ION_SHUTDOWN_GRACE_MS: { path: ['dispatcher', 'shutdownGraceMs'], type: 'int' },
  ION_KEEP_JOB_DIRS: { path: ['dispatcher', 'keepJobDirs'], type: 'bool' },
  ION_MODULE_REFRESH_MS: { path: ['dispatcher', 'moduleRefreshMs'], type: 'int' },
  ION_BUS: { path: ['bus', 'kind'], type: 'string' },
  ION_SQLITE_BUS_PATH: { path: ['bus', 'path'], type: 'string' },
  ION_NATS_SERVERS: { path: ['bus', 'servers'], type: 'string' },
  ION_NATS_STREAM: { path: ['bus', 'stream'], type: 'string' },
  ION_AMQP_URL: { path: ['bus', 'url'], type: 'string' },
  ION_AMQP_EXCHANGE: { path: ['bus', 'exchange'], type: 'string' },
  ION_STORE: { path: ['store', 'kind'], type: 'string' },
  ION_POSTGRES_URL: { path: ['store', 'url'], type: 'string' },
  ION_POSTGRES_SCHEMA: { path: ['store', 'schema'], type: 'string' },
  ION_POSTGRES_POOL_SIZE: { path: ['store', 'poolSize'], type: 'int' },
  ION_BLOB: { path: ['blob', 'kind'], type: 'string' },
  ION_S3_BUCKET: { path: ['blob', 'bucket'], type: 'string' },
  ION_S3_PREFIX: { path: ['blob', 'prefix'], type: 'string' },
  ION_S3_REGION: { path: ['blob', 'region'], type: 'string' },
  ION_S3_ENDPOINT: { path: ['blob', 'endpoint'], type: 'string' },
  ION_S3_FORCE_PATH_STYLE: { path: ['blob', 'forcePathStyle'], type: 'bool' },
  ION_S3_ACCESS_KEY_ID: { path: ['blob', 'accessKeyId'], type: 'string' },
  ION_S3_SECRET_ACCESS_KEY: { path: ['blob', 'secretAccessKey'], type: 'string' },
  ION_S3_CHECKSUMS: { path: ['blob', 'checksums'], type: 'string' },
  ION_AZURE_CONNECTION_STRING: { path: ['blob', 'connectionString'], type: 'string' },
  ION_AZURE_CONTAINER: { path: ['blob', 'container'], type: 'string' },
  ION_AZURE_PREFIX: { path: ['blob', 'prefix'], type: 'string' },
  ION_EXECUTOR: { path: ['executor', 'kind'], type: 'string' },
  ION_EXECUTOR_SPAWN_ON: { path: ['executor', 'spawnOn'], type: 'string' },
  DOCKER_HOST: { path: ['executor', 'docker', 'host'], type: 'string' },
  ION_DOCKER_HOST: { path: ['executor', 'docker', 'host'], type: 'string' },
  ION_DOCKER_RUNTIME_IMAGE: { path: ['executor', 'docker', 'runtimeImage'], type: 'string' },
  ION_KUBERNETES_NAMESPACE: { path: ['executor', 'kubernetes', 'namespace'], type: 'string' },
  ION_KUBECONFIG: { path: ['executor', 'kubernetes', 'kubeconfig'], type: 'string' },
  ION_KUBERNETES_HANDLER_IMAGE: {
    path: ['executor', 'kubernetes', 'handlerImage'],
    type: 'string',
  },
  ION_KUBERNETES_BLOB_SECRET: { path: ['executor', 'kubernetes', 'blobSecret'], type: 'string' },
};

type Tree = Record<string, unknown>;

function setPath(target: Tree, path: string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (typeof next !== 'object' || next === null) node[key] = {};
    node = node[key] as Tree;
  }
  node[path[path.length - 1]!] = value;
}

function deepMerge(base: Tree, over: Tree): Tree {
  const out: Tree = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const prev = out[k];
    if (
      typeof v === 'object' &&
      v !== null &&
      !Array.isArray(v) &&
      typeof prev === 'object' &&
      prev !== null &&
      !Array.isArray(prev) &&
      // A backend of another kind replaces the whole section; the same kind merges into it.
      // The executor's `kind` is only the default of modules: its sections always merge.
      (k === 'executor' || !('kind' in v) || (v as Tree).kind === (prev as Tree).kind)
    ) {
      out[k] = deepMerge(prev as Tree, v as Tree);
    } else {
      out[k] = v;
    }
  }
  return out;
}

function envLayer(env: NodeJS.ProcessEnv): Tree {
  const layer: Tree = {};
  for (const [name, spec] of Object.entries(ENV_KEYS)) {
    const raw = env[name];
    if (raw === undefined || raw === '') continue;
    let value: unknown = raw;
    if (spec.type === 'int') {
      if (!/^\d+$/.test(raw))
        throw new ValidationError(`invalid config: ${name} must be a whole number, got "${raw}"`, [
          { path: name, message: 'must be a whole number' },
        ]);
      value = Number(raw);
    } else if (spec.type === 'bool') {
      if (!/^(true|false|1|0)$/.test(raw))
        throw new ValidationError(`invalid config: ${name} must be true or false`, [
          { path: name, message: 'must be true or false' },
        ]);
      value = raw === 'true' || raw === '1';
    }
    setPath(layer, spec.path, value);
  }
  return layer;
}

export interface LoadConfigInput {
  /** Path of a YAML/JSON config file (flag `--config` or `ION_CONFIG`). */
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Values from command-line flags, as a partial config tree. */
  flags?: Tree;
  /** The command's own defaults (`ion server` turns auth on), below the file. */
  defaults?: Tree;
}

/** Loads, validates and freezes the configuration. `dataDir` comes back absolute. */
export function loadConfig(input: LoadConfigInput = {}): IonConfig {
  const env = input.env ?? {};
  const file = input.file ?? env.ION_CONFIG;
  let merged: Tree = { ...input.defaults };
  if (file !== undefined && file !== '') {
    const doc = readYamlFile(file, 'config file');
    if (doc !== null && doc !== undefined) {
      if (typeof doc !== 'object' || Array.isArray(doc))
        throw new ValidationError(`config file ${file} must hold a mapping`);
      merged = deepMerge(merged, doc as Tree);
    }
  }
  merged = deepMerge(merged, envLayer(env));
  merged = deepMerge(merged, input.flags ?? {});
  const config = parseOrThrow(configSchema, merged, 'config');
  return deepFreeze({ ...config, dataDir: resolve(config.dataDir) });
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

const SECRET_KEY = /(password|secret|token|key|credential|connectionstring)/i;
/** `scheme://user:password@host`: the password part of a URL. */
const URL_PASSWORD = /(\/\/[^/:@\s]*:)[^@/\s]+@/g;

/** A copy of the config safe to print or log: values under secret-looking keys are masked. */
export function redactConfig(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redactConfig);
  if (typeof value !== 'object' || value === null) return value;
  const out: Tree = {};
  for (const [k, v] of Object.entries(value)) {
    // `tlsKeyFile` and the like hold a path, not the secret itself: print it.
    const secret = SECRET_KEY.test(k) && !/File$/.test(k) && v !== null && typeof v !== 'object';
    if (secret) out[k] = '[redacted]';
    else if (typeof v === 'string') out[k] = v.replace(URL_PASSWORD, '$1[redacted]@');
    else out[k] = redactConfig(v);
  }
  return out;
}
