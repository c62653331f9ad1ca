import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import Database from 'better-sqlite3';
import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import pg from 'pg';
import { startNatsServer } from '../test/support/nats-server.js';
import { freePort, startTcpProxy, type TcpProxy } from '../test/support/tcp-proxy.js';
import { BIN, IonProc, ROOT, SOAK_ENV, listProcesses, sleep } from './procs.js';
import { startRabbitMq } from './rabbitmq.js';
import type { Rng } from './rng.js';
import { startS3rverIn, type S3rverHandle } from './s3.js';
import { mountTmpfs, type Tmpfs } from './tmpfs.js';

const run = promisify(execFile);

export const POSTGRES_URL =
  process.env.ION_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** One fault: `inject` starts the outage, `restore` ends it (a no-op for one-shot faults). */
export interface FaultAction {
  inject(rng: Rng): Promise<string>;
  restore(): Promise<void>;
}

/** Read access to the store, straight through SQL, for the checker. */
export interface StoreReader {
  query<T>(sql: string): Promise<T[]>;
  close(): Promise<void>;
}

/** The set-ups `npm run soak` knows (SOAK_SETUP). */
export const SETUP_NAMES = ['embedded', 'distributed', 'distributed-rabbitmq'] as const;
export type SetupName = (typeof SETUP_NAMES)[number];

/** A running Ion set-up with everything the load, the faults and the checker need. */
export interface Setup {
  name: SetupName;
  url: string;
  token: string;
  root: string;
  markers: string;
  /** Data directories of every Ion process (job dirs, temp uploads, logs live there). */
  dataDirs: string[];
  procs: IonProc[];
  /** Pids of the soak's own helpers (the S3 emulator), not orphans. */
  infra: number[];
  /** Notes on the emulators' own failures, for the report. */
  notes(): string[];
  faults: Map<string, FaultAction>;
  /** Fault kinds that could not be set up here, with the reason. */
  unavailable: Map<string, string>;
  openStore(): Promise<StoreReader>;
  /** The stored blob's bytes, or undefined when absent. */
  readBlob(sha256: string): Promise<Readable | undefined>;
  /** Files written by processes of the set-up, for the token scan. */
  logFiles(): Promise<string[]>;
  /** Graceful stop of every Ion process. */
  stopIon(): Promise<void>;
  /** Stops the backends and removes everything. */
  dispose(): Promise<void>;
}

function blobKey(sha256: string): string {
  return `sha256/${sha256.slice(0, 2)}/${sha256.slice(2, 4)}/${sha256}`;
}

async function createToken(env: Record<string, string>): Promise<string> {
  const { stdout } = await run(
    process.execPath,
    [BIN, 'token', 'create', '--name', 'soak', '--scope', 'admin', '--json'],
    { cwd: ROOT, env: { ...process.env, ...SOAK_ENV, ...env } },
  );
  return (JSON.parse(stdout) as { token: string }).token;
}

/** Applies the pipeline through the API with the CLI. */
export async function applyPipeline(setup: Setup, pipeline: string): Promise<void> {
  await run(process.execPath, [BIN, 'apply', '-f', pipeline], {
    cwd: ROOT,
    env: { ...process.env, ION_API_URL: setup.url, ION_TOKEN: setup.token },
  });
}

/** A module process running a job under one of `dataDirs`, picked by `rng`; waits up to 20 s. */
async function killModuleGroup(dataDirs: string[], rng: Rng): Promise<string> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const running = (await listProcesses()).filter(
      (p) => dataDirs.some((d) => p.cwd.startsWith(join(d, 'jobs'))) && p.pid === p.pgid,
    );
    const victim = rng.pick(running);
    if (victim !== undefined) {
      try {
        process.kill(-victim.pgid, 'SIGKILL');
        return `process group ${victim.pgid} (${victim.cmdline.slice(0, 80)})`;
      } catch {
        // it ended meanwhile
      }
    }
    await sleep(100);
  }
  return 'no module process ran within 20 s: nothing killed';
}

/** The spawn launcher (`node -e ...`) child of one of `procs`. */
async function killLauncher(procs: IonProc[], rng: Rng): Promise<string> {
  const pids = new Set(procs.map((p) => p.pid));
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const launchers = (await listProcesses()).filter(
      (p) => pids.has(p.ppid) && p.cmdline.startsWith(`${process.execPath} -e`),
    );
    const victim = rng.pick(launchers);
    if (victim !== undefined) {
      process.kill(victim.pid, 'SIGKILL');
      return `launcher ${victim.pid} of ion process ${victim.ppid}`;
    }
    await sleep(200);
  }
  return 'no spawn launcher found within 20 s: nothing killed';
}

function restartable(proc: IonProc): FaultAction {
  return {
    async inject() {
      await proc.kill();
      return `SIGKILL ${proc.name}`;
    },
    restore: () => startWithRetries(proc),
  };
}

/**
 * Starts a killed process again, as a supervisor would: up to 3 tries, 5 s apart (a start
 * can fail for a moment, e.g. the port not yet released).
 */
async function startWithRetries(proc: IonProc): Promise<void> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      await proc.start();
      return;
    } catch (err) {
      if (attempt >= 3) throw err;
      await sleep(5_000);
    }
  }
}

function fsFull(tmpfs: Tmpfs): FaultAction {
  return {
    async inject() {
      const bytes = await tmpfs.fill();
      return `filled ${tmpfs.dir} with ${Math.round(bytes / 1048576)} MiB to ENOSPC`;
    },
    restore: () => tmpfs.free(),
  };
}

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

/** `ion up` on the embedded defaults (SQLite bus and store, blobs on a tmpfs when possible). */
export async function startEmbedded(): Promise<Setup> {
  const root = await mkdtemp(join(tmpdir(), 'ion-soak-emb-'));
  const dataDir = join(root, 'data');
  const markers = join(root, 'markers');
  await mkdir(join(dataDir, 'blobs'), { recursive: true });
  const unavailable = new Map<string, string>();
  const mounted = await mountTmpfs(join(dataDir, 'blobs'), 384);
  const tmpfs = 'refused' in mounted ? undefined : mounted;
  if ('refused' in mounted) unavailable.set('blob-fs-full', mounted.refused);
  const env = { ION_DATA_DIR: dataDir, ION_AUTH: 'on' };
  const token = await createToken(env);
  const port = await freePort();
  const up = new IonProc(
    'ion up',
    ['up', '--data-dir', dataDir, '--port', String(port)],
    { ...env, ION_LOG_LEVEL: 'info' },
    join(root, 'ion-up.out'),
    /Ion is up at (https?:\/\/\S+)/,
  );
  const url = (await up.start())[1]!;
  const faults = new Map<string, FaultAction>([
    ['kill-ion-up', restartable(up)],
    ['kill-spawn-launcher', { inject: (rng) => killLauncher([up], rng), restore: async () => {} }],
    [
      'kill-module-group',
      { inject: (rng) => killModuleGroup([dataDir], rng), restore: async () => {} },
    ],
  ]);
  if (tmpfs !== undefined) faults.set('blob-fs-full', fsFull(tmpfs));
  return {
    name: 'embedded',
    url,
    token,
    root,
    markers,
    dataDirs: [dataDir],
    procs: [up],
    infra: [],
    notes: () => [],
    faults,
    unavailable,
    openStore() {
      const db = new Database(join(dataDir, 'store.db'), { readonly: true, fileMustExist: true });
      return Promise.resolve({
        query: <T>(sql: string) => Promise.resolve(db.prepare(sql).all() as T[]),
        close: () => Promise.resolve(void db.close()),
      });
    },
    readBlob(sha256) {
      const stream = createReadStream(join(dataDir, 'blobs', blobKey(sha256)));
      return new Promise((res) => {
        stream.once('open', () => res(stream));
        stream.once('error', () => res(undefined));
      });
    },
    logFiles() {
      return Promise.resolve([join(root, 'ion-up.out'), join(dataDir, 'ion.log')]);
    },
    async stopIon() {
      await up.stop();
      await up.close();
    },
    async dispose() {
      await tmpfs?.unmount();
      await rm(root, { recursive: true, force: true });
    },
  };
}

/** The bus of a distributed set-up: a private broker the soak can restart. */
interface PrivateBus {
  /** The `ION_*` variables that point Ion at it. */
  env: Record<string, string>;
  /** Its restart fault: kind and action. */
  fault: [string, FaultAction];
  dispose(): Promise<void>;
}

const randomName = (): string => Math.random().toString(36).slice(2, 12);

/** A private nats-server (JetStream, own port and store directory). */
async function privateNats(): Promise<PrivateBus> {
  const nats = await startNatsServer();
  return {
    env: {
      ION_BUS: 'nats',
      ION_NATS_SERVERS: nats.url,
      ION_NATS_STREAM: `ION_SOAK_${randomName().toUpperCase()}`,
    },
    fault: [
      'nats-restart',
      {
        async inject() {
          await nats.stop();
          return `stopped the private nats-server on port ${nats.port}`;
        },
        restore: () => nats.start(),
      },
    ],
    dispose: () => nats.dispose(),
  };
}

/** A private RabbitMQ node (own node name, ports, data directory: see soak/rabbitmq.ts). */
async function privateRabbitMq(): Promise<PrivateBus> {
  const rabbit = await startRabbitMq();
  return {
    env: {
      ION_BUS: 'rabbitmq',
      ION_AMQP_URL: rabbit.url,
      ION_AMQP_EXCHANGE: `ion-soak-${randomName()}`,
    },
    fault: [
      'rabbitmq-restart',
      {
        async inject() {
          await rabbit.stop();
          return `stopped the private RabbitMQ node ${rabbit.nodeName} (AMQP port ${rabbit.port})`;
        },
        restore: () => rabbit.start(),
      },
    ],
    dispose: () => rabbit.dispose(),
  };
}

/** Starts the set-up `name`. */
export function startSetup(name: SetupName): Promise<Setup> {
  if (name === 'embedded') return startEmbedded();
  return startDistributed(3, name === 'distributed-rabbitmq' ? 'rabbitmq' : 'nats');
}

/**
 * One `ion server` and `workers` × `ion worker` on a private broker (`bus`: a nats-server or a
 * RabbitMQ node), PostgreSQL (own schema, reached through a TCP proxy that can cut it off)
 * and s3rver (its directory on a tmpfs when possible).
 */
export async function startDistributed(
  workers = 3,
  bus: 'nats' | 'rabbitmq' = 'nats',
): Promise<Setup> {
  const root = await mkdtemp(
    join(tmpdir(), bus === 'nats' ? 'ion-soak-dist-' : 'ion-soak-dist-rmq-'),
  );
  const markers = join(root, 'markers');
  const unavailable = new Map<string, string>();
  const s3dir = join(root, 's3');
  await mkdir(s3dir, { recursive: true });
  const mounted = await mountTmpfs(s3dir, 384);
  const tmpfs = 'refused' in mounted ? undefined : mounted;
  if ('refused' in mounted) unavailable.set('blob-fs-full', mounted.refused);
  const cleanups: (() => Promise<void>)[] = [];
  const dispose = async (): Promise<void> => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    await tmpfs?.unmount();
    await rm(root, { recursive: true, force: true });
  };
  try {
    const s3: S3rverHandle = await startS3rverIn(s3dir);
    cleanups.push(() => s3.stop());
    const broker = bus === 'nats' ? await privateNats() : await privateRabbitMq();
    cleanups.push(() => broker.dispose());
    const target = new URL(POSTGRES_URL);
    const proxy: TcpProxy = await startTcpProxy(Number(target.port || 5432), target.hostname);
    cleanups.push(() => proxy.close());
    const proxied = new URL(POSTGRES_URL);
    proxied.port = String(proxy.port);
    const schema = `ion_soak_${randomName()}`;
    cleanups.push(async () => {
      const client = new pg.Client({ connectionString: POSTGRES_URL });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await client.end();
    });
    const bucket = `ion-soak-${randomName()}`;
    const env: Record<string, string> = {
      ...broker.env,
      ION_STORE: 'postgres',
      ION_POSTGRES_URL: proxied.toString(),
      ION_POSTGRES_SCHEMA: schema,
      ION_POSTGRES_POOL_SIZE: '4',
      ION_BLOB: 's3',
      ION_S3_BUCKET: bucket,
      ION_S3_ENDPOINT: s3.endpoint,
      ION_S3_FORCE_PATH_STYLE: 'true',
      ION_S3_ACCESS_KEY_ID: 'S3RVER',
      ION_S3_SECRET_ACCESS_KEY: 'S3RVER',
      ION_S3_CHECKSUMS: 'when_required',
      ION_LOG_LEVEL: 'info',
    };
    const port = await freePort();
    const dataDirs: string[] = [];
    const makeProc = async (name: string, args: string[], ready: RegExp): Promise<IonProc> => {
      const dataDir = join(root, name.replaceAll(' ', '-'));
      await mkdir(dataDir, { recursive: true });
      dataDirs.push(dataDir);
      return new IonProc(
        name,
        [...args, '--data-dir', dataDir],
        env,
        join(root, `${name.replaceAll(' ', '-')}.out`),
        ready,
      );
    };
    const server = await makeProc(
      'ion server',
      ['server', '--port', String(port)],
      /Ion server is up at (http:\/\/\S+)/,
    );
    const url = (await server.start())[1]!;
    const token = await createToken(env);
    const workerProcs: IonProc[] = [];
    for (let i = 1; i <= workers; i += 1)
      workerProcs.push(await makeProc(`ion worker ${i}`, ['worker'], /Ion worker is up/));
    cleanups.push(async () => {
      for (const w of workerProcs) await w.kill();
    });
    await Promise.all(workerProcs.map((w) => w.start()));
    const procs = [server, ...workerProcs];
    let victim: IonProc | undefined;
    const faults = new Map<string, FaultAction>([
      ['kill-server', restartable(server)],
      [
        'kill-worker',
        {
          async inject(rng) {
            victim = rng.pick(workerProcs)!;
            await victim.kill();
            return `SIGKILL ${victim.name}`;
          },
          async restore() {
            if (victim !== undefined) await startWithRetries(victim);
          },
        },
      ],
      [
        'kill-spawn-launcher',
        { inject: (rng) => killLauncher(workerProcs, rng), restore: async () => {} },
      ],
      [
        'kill-module-group',
        { inject: (rng) => killModuleGroup(dataDirs, rng), restore: async () => {} },
      ],
      broker.fault,
      [
        'postgres-cut',
        {
          inject() {
            proxy.pause();
            return Promise.resolve(`cut PostgreSQL at the TCP proxy on port ${proxy.port}`);
          },
          restore() {
            proxy.resume();
            return Promise.resolve();
          },
        },
      ],
    ]);
    if (tmpfs !== undefined) faults.set('blob-fs-full', fsFull(tmpfs));
    const s3client = new S3Client({
      endpoint: s3.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    });
    return {
      name: bus === 'nats' ? 'distributed' : 'distributed-rabbitmq',
      url,
      token,
      root,
      markers,
      dataDirs,
      procs,
      infra: s3.pid === undefined ? [] : [s3.pid],
      notes: () => s3.errors(),
      faults,
      unavailable,
      async openStore() {
        // Straight to PostgreSQL, never through the proxy.
        const client = new pg.Client({ connectionString: POSTGRES_URL });
        await client.connect();
        await client.query(`SET search_path TO ${schema}`);
        return {
          query: async <T>(sql: string) => (await client.query(sql)).rows as T[],
          close: () => client.end(),
        };
      },
      async readBlob(sha256) {
        try {
          const out = await s3client.send(
            new GetObjectCommand({ Bucket: bucket, Key: blobKey(sha256) }),
          );
          return out.Body as Readable;
        } catch {
          return undefined;
        }
      },
      async logFiles() {
        const files = procs.map((p) => p.logPath);
        for (const d of dataDirs)
          files.push(...(await listFiles(d)).filter((f) => f.endsWith('.log')));
        return files;
      },
      async stopIon() {
        await Promise.all(procs.map((p) => p.stop()));
        await Promise.all(procs.map((p) => p.close()));
      },
      dispose: async () => {
        s3client.destroy();
        await dispose();
      },
    };
  } catch (err) {
    await dispose();
    throw err;
  }
}
