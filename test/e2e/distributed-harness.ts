import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import pg from 'pg';
import { IonClient } from '../../src/api/client.js';
import { StopWaiting, waitFor } from '../support/wait.js';
import { FAST_ENV, ROOT, cli, tempDir } from './harness.js';

const BIN = join(ROOT, 'bin/ion.js');
export const POSTGRES_URL =
  process.env.ION_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const NATS_URL = process.env.ION_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';
export const AMQP_URL = process.env.ION_TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

/** A random name usable as a NATS stream, AMQP exchange, Postgres schema or bucket. */
export function uniqueName(prefix: string): string {
  return `${prefix}${randomUUID().replaceAll('-', '').slice(0, 12)}`;
}

export interface Proc {
  proc: ChildProcess;
  output(): string;
  stop(): Promise<void>;
  kill(): Promise<void>;
}

function exited(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((res) => proc.once('exit', () => res()));
}

/** Starts `ion server` or `ion worker` with the given backend environment. */
export async function startProcess(
  args: string[],
  env: Record<string, string>,
  ready: RegExp,
): Promise<Proc & { match: RegExpExecArray }> {
  const dataDir = await tempDir('ion-dist-');
  const proc = spawn(process.execPath, [BIN, ...args, '--data-dir', dataDir], {
    cwd: ROOT,
    env: { ...process.env, ...FAST_ENV, ION_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
  proc.stderr.on('data', (c: Buffer) => (out += c.toString()));
  const match = await waitFor(
    `ion ${args[0]} to start`,
    () => {
      if (proc.exitCode !== null)
        throw new StopWaiting(`ion ${args.join(' ')} exited with ${proc.exitCode}: ${out}`);
      return ready.exec(out) ?? undefined;
    },
    60_000,
  );
  return {
    proc,
    match,
    output: () => out,
    async stop() {
      proc.kill('SIGTERM');
      await exited(proc);
    },
    async kill() {
      proc.kill('SIGKILL');
      await exited(proc);
    },
  };
}

/** One `ion server` and `workers` × `ion worker` sharing the backends named by `env`. */
export async function startCluster(
  env: Record<string, string>,
  workers = 3,
): Promise<{
  url: string;
  /** An admin token, made the way an operator makes the first one: on the store directly. */
  token: string;
  client: IonClient;
  server: Proc;
  workers: Proc[];
  stop(): Promise<void>;
}> {
  const created = await cli(['token', 'create', '--name', 'e2e', '--scope', 'admin', '--json'], {
    env: { ...FAST_ENV, ...env },
  });
  if (created.code !== 0) throw new Error(`ion token create failed: ${created.stderr}`);
  const { token } = JSON.parse(created.stdout) as { token: string };
  // ion server has auth on by default: no ION_AUTH here, so the cluster runs as deployed.
  const server = await startProcess(
    ['server', '--port', '0'],
    env,
    /Ion server is up at (http:\/\/\S+)/,
  );
  const url = server.match[1]!;
  const started: Proc[] = [];
  for (let i = 0; i < workers; i += 1)
    started.push(await startProcess(['worker'], env, /Ion worker is up/));
  return {
    url,
    token,
    client: new IonClient(url, token),
    server,
    workers: started,
    async stop() {
      await Promise.all([...started, server].map((p) => p.stop()));
    },
  };
}

export async function dropSchema(schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await client.end();
  }
}
