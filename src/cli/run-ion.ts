import type { Command } from 'commander';
import { createWriteStream, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { IonApp, type Roles } from '../app/ion-app.js';
import { createLogger } from '../app/logger.js';
import { loadConfig, type IonConfig } from '../config/config.js';
import { errorMessage } from '../core/errors.js';
import { EXECUTOR_KINDS } from '../core/types.js';
import { UsageError } from './context.js';

/** Flags every command that runs Ion in-process accepts. */
export interface RunOptions {
  dataDir?: string;
  port?: string;
  host?: string;
  config?: string;
  tlsCertFile?: string;
  tlsKeyFile?: string;
  /** `ion up` and `ion worker`: the executor of modules that do not name one. */
  executor?: string;
}

/** Adds `--executor` (ion up, ion worker): where modules without their own `executor` run. */
export function addExecutorOption(command: Command): Command {
  return command.option(
    '--executor <kind>',
    `where modules without their own executor run: ${EXECUTOR_KINDS.join(', ')} (env ION_EXECUTOR; default local)`,
  );
}

export function addRunOptions(command: Command, withApi: boolean): Command {
  command
    .option('--data-dir <dir>', 'where Ion keeps local data (env ION_DATA_DIR; default ./.ion)')
    .option('--config <path>', 'config file (env ION_CONFIG)');
  if (withApi) {
    command
      .option('--port <n>', 'API port (env ION_PORT; default 7411; 0 picks a free one)')
      .option('--host <host>', 'API address (env ION_HOST; default 127.0.0.1)')
      .option(
        '--tls-cert-file <path>',
        'serve the API over HTTPS with this PEM certificate (env ION_API_TLS_CERT_FILE; needs --tls-key-file)',
      )
      .option(
        '--tls-key-file <path>',
        'PEM private key of --tls-cert-file (env ION_API_TLS_KEY_FILE)',
      );
  }
  return command;
}

function flags(options: RunOptions): Record<string, unknown> {
  const api: Record<string, unknown> = {};
  if (options.port !== undefined) {
    if (!/^\d+$/.test(options.port))
      throw new UsageError(`--port must be a port number, got "${options.port}"`);
    api.port = Number(options.port);
  }
  if (options.host !== undefined) api.host = options.host;
  if (options.tlsCertFile !== undefined) api.tlsCertFile = options.tlsCertFile;
  if (options.tlsKeyFile !== undefined) api.tlsKeyFile = options.tlsKeyFile;
  const executor = options.executor;
  if (executor !== undefined && !(EXECUTOR_KINDS as readonly string[]).includes(executor))
    throw new UsageError(
      `--executor must be one of ${EXECUTOR_KINDS.join(', ')}, got "${executor}"`,
    );
  return {
    ...(options.dataDir === undefined ? {} : { dataDir: options.dataDir }),
    ...(Object.keys(api).length > 0 ? { api } : {}),
    ...(executor === undefined ? {} : { executor: { kind: executor } }),
  };
}

/** One line that says which backends this process uses. */
export function describeBackends(config: IonConfig): string {
  const bus =
    config.bus.kind === 'sqlite'
      ? 'SQLite bus'
      : config.bus.kind === 'nats'
        ? 'NATS JetStream bus'
        : 'RabbitMQ bus';
  const store = config.store.kind === 'sqlite' ? 'SQLite store' : 'PostgreSQL store';
  const blob =
    config.blob.kind === 'fs'
      ? `blobs under ${config.dataDir}`
      : config.blob.kind === 's3'
        ? `S3 bucket ${config.blob.bucket}`
        : `Azure container ${config.blob.container}`;
  const executor = config.executor.kind;
  const modules =
    executor === 'local'
      ? 'local processes'
      : executor === 'docker'
        ? `containers on ${config.executor.docker.host ?? 'unix:///var/run/docker.sock'}`
        : `Kubernetes pods in namespace ${config.executor.kubernetes.namespace}`;
  return `${bus}, ${store}, ${blob}, ${modules}`;
}

/** The config of a command that works in-process: `--config`, `ION_*` env, then its flags. */
export function loadRunConfig(
  options: RunOptions,
  defaults: Record<string, unknown> = {},
): IonConfig {
  return loadConfig({
    ...(options.config === undefined ? {} : { file: options.config }),
    env: process.env,
    flags: flags(options),
    defaults,
  });
}

/**
 * Loads config, builds and starts an IonApp with the given roles, and stops it gracefully on
 * SIGINT/SIGTERM (a second signal exits at once). Logs go to `logFile` when given (ion up,
 * so the terminal stays readable), else to stderr as JSON lines (server and worker).
 */
export async function runIon(
  options: RunOptions,
  roles: Roles,
  logTo: 'file' | 'stderr',
  /** API auth unless config says otherwise: on by default; `ion up` passes `off`. */
  authDefault: 'on' | 'off' = 'on',
): Promise<{ app: IonApp; url: string | null; config: IonConfig; logFile: string | null }> {
  const config = loadRunConfig(options, { api: { auth: authDefault } });
  mkdirSync(config.dataDir, { recursive: true });
  const logFile = logTo === 'file' ? join(config.dataDir, 'ion.log') : null;
  const logger = createLogger(
    config.logLevel,
    logFile === null ? process.stderr : createWriteStream(logFile, { flags: 'a' }),
  );
  const app = await IonApp.create(config, logger, roles, process.env);
  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) {
      process.stdout.write('second signal: exiting now\n');
      process.exit(1);
    }
    stopping = true;
    process.stdout.write(
      `\n${signal}: stopping (running jobs get ${config.dispatcher.shutdownGraceMs}ms to finish)...\n`,
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
  try {
    const url = await app.start();
    return { app, url, config, logFile };
  } catch (err) {
    await app.stop();
    throw err;
  }
}
