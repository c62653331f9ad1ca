import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { BlobStore } from '../blob/blob-store.js';
import { FsBlobStore } from '../blob/fs/fs-blob-store.js';
import type { EventBus } from '../bus/event-bus.js';
import { SqliteEventBus } from '../bus/sqlite/sqlite-event-bus.js';
import type { IonConfig } from '../config/config.js';
import { DirJobHost } from '../executors/dir-job-host.js';
import { JobHosts } from '../executors/job-hosts.js';
import { LocalExecutor } from '../executors/local/local-executor.js';
import { WarmExecutor } from '../executors/warm/warm-executor.js';
import type { DocumentStore } from '../store/document-store.js';
import { SqliteDocumentStore } from '../store/sqlite/sqlite-document-store.js';
import { processAlive } from '../core/processes.js';

export interface Backends {
  bus: EventBus;
  store: DocumentStore;
  blobs: BlobStore;
  /** Where module attempts run; each kind's host is made on first use. */
  jobHosts: JobHosts;
}

/**
 * Builds the adapters the config names. The embedded ones are imported statically; each
 * distributed adapter (and so its driver package) is imported only when configured, so a
 * user of the defaults never loads `pg`, `nats` or a cloud SDK.
 */
export async function createBackends(config: IonConfig, logger: Logger): Promise<Backends> {
  const blobs = await createBlobStore(config);
  const store = await createStore(config, logger.child({ component: 'store' }));
  const bus = await createBus(config, logger.child({ component: 'bus' }));
  const notes = capabilityNotes(bus, store, blobs);
  for (const note of notes.info) logger.info({ component: 'backends' }, note);
  for (const note of notes.warn) logger.warn({ component: 'backends' }, note);
  return {
    bus,
    store,
    blobs,
    jobHosts: createJobHosts(config, logger.child({ component: 'executor' }), blobs, store),
  };
}

/**
 * What the chosen adapters' declared capabilities mean for this installation, said once at
 * start. Nothing here is refused: a bus without per-id dedupe is covered by the store's job
 * dedupe, and a one-host store or blob store behind a broker works as long as every process
 * runs on that host (a broker does not make them reachable from elsewhere).
 */
export function capabilityNotes(
  bus: EventBus,
  store: DocumentStore,
  blobs: BlobStore,
): { info: string[]; warn: string[] } {
  const info: string[] = [];
  const warn: string[] = [];
  const busCaps = bus.capabilities;
  if (!busCaps.dedupesById) {
    info.push(
      'the bus keeps no per-id state: a message published twice is delivered twice, and the store drops the second copy by its job id',
    );
  }
  if (busCaps.sharedAcrossHosts) {
    const local = [
      ...(store.capabilities.sharedAcrossHosts ? [] : ['the document store']),
      ...(blobs.capabilities.sharedAcrossHosts ? [] : ['the blob store']),
    ];
    if (local.length > 0) {
      warn.push(
        `the bus can be shared across hosts but ${local.join(' and ')} cannot: every server and worker of this installation must run on this host`,
      );
    }
  }
  return { info, warn };
}

/**
 * The job hosts of a worker: local always, the others made when a module first needs them.
 * The store tells the docker executor's sweep which labelled containers are orphans.
 */
export function createJobHosts(
  config: IonConfig,
  logger: Logger,
  blobs: BlobStore,
  store: DocumentStore,
): JobHosts {
  const { dataDir } = config;
  const { keepJobDirs } = config.dispatcher;
  return new JobHosts(config.executor.kind, {
    // Imported on first use: a worker of local processes never loads dockerode.
    docker: async () => {
      const { DockerExecutor } = await import('../executors/docker/docker-executor.js');
      const { warmContainerExecutor } =
        await import('../executors/docker/warm-container-executor.js');
      const docker = config.executor.docker;
      const engine = {
        ...(docker.host === undefined ? {} : { host: docker.host }),
        runtimeImage: docker.runtimeImage,
        stopGraceMs: docker.stopGraceMs,
        imageRetryDelayMs: docker.imageRetryDelayMs,
        runtimeMounts: existsSync(SDK_DIR) ? [SDK_DIR] : [],
        logger,
      };
      return new DirJobHost({
        kind: 'docker',
        executor: new DockerExecutor({ ...engine, isAttemptLive: attemptLiveness(store) }),
        // Warm modules: one long-lived container per slot; the slots live beside the job
        // directories, so a job's files are renamed into a slot, never copied.
        warmExecutor: warmContainerExecutor({ ...engine, homeDir: dataDir }),
        blobs,
        dataDir,
        keepJobDirs,
        logger,
      });
    },
    // Imported on first use: a worker that never runs a pod never loads @kubernetes/client-node.
    // A filesystem blob store is refused here (its pods could not reach it), so a worker whose
    // default executor is kubernetes fails at start-up with the reason.
    kubernetes: async () => {
      const { KubernetesJobHost } = await import('../executors/kubernetes/kubernetes-job-host.js');
      const { ClientCluster } = await import('../executors/kubernetes/client-cluster.js');
      const k8s = config.executor.kubernetes;
      const { blobHandlerEnv } = await import('../executors/kubernetes/manifests.js');
      blobHandlerEnv(config.blob); // refuses the filesystem blob store before any cluster call
      const clusterLogger = logger.child({ executor: 'kubernetes' });
      return new KubernetesJobHost({
        cluster: new ClientCluster({
          namespace: k8s.namespace,
          ...(k8s.kubeconfig === undefined ? {} : { kubeconfig: k8s.kubeconfig }),
          logger: clusterLogger,
        }),
        settings: k8s,
        blob: config.blob,
        blobs,
        logger: clusterLogger,
      });
    },
    local: () =>
      new DirJobHost({
        kind: 'local',
        executor: new LocalExecutor({ spawnOn: config.executor.spawnOn }),
        // Modules with `warm` set: long-lived processes, one job at a time (docs/modules.md).
        warmExecutor: new WarmExecutor({ homeDir: dataDir, logger }),
        blobs,
        dataDir,
        keepJobDirs,
        logger,
      }),
  });
}

/** Ion's module SDKs (src/app or dist/app, two levels below the package root). */
const SDK_DIR = fileURLToPath(new URL('../../sdk', import.meta.url));

/**
 * Whether a container's attempt still runs, from the store: an attempt is live while its
 * outcome is `running`, unless its worker ran on this host and its process is gone (a
 * crashed worker: worker ids are `host/pid/random`). A job the store does not know belongs to
 * another installation sharing the engine, and is left alone.
 *
 * The store's attempts do not expose their lease, so a worker on another host that died is
 * judged live until a redelivery closes its attempt (`worker_lost`); the next sweep then
 * removes its container.
 */
export function attemptLiveness(
  store: DocumentStore,
): (jobId: string, attempt: number) => Promise<boolean> {
  const host = hostname();
  return async (jobId, attempt) => {
    const found = (await store.listAttempts(jobId)).find((a) => a.attempt === attempt);
    if (found === undefined) return true;
    if (found.outcome !== 'running') return false;
    const [workerHost, pid] = found.workerId.split('/');
    if (workerHost !== host || pid === undefined || !/^\d+$/.test(pid)) return true;
    return processAlive(Number(pid));
  };
}

async function createBus(config: IonConfig, logger: Logger): Promise<EventBus> {
  const bus = config.bus;
  switch (bus.kind) {
    case 'sqlite':
      return new SqliteEventBus({ path: bus.path ?? join(config.dataDir, 'bus.db'), logger });
    case 'nats': {
      const { NatsEventBus } = await import('../bus/nats/nats-event-bus.js');
      return new NatsEventBus({ servers: bus.servers.split(','), stream: bus.stream, logger });
    }
    case 'rabbitmq': {
      const { RabbitMqEventBus } = await import('../bus/rabbitmq/rabbitmq-event-bus.js');
      // Queues are named after the exchange, so two Ion installations on one broker (or two
      // test runs) never share a module's queue.
      return new RabbitMqEventBus({
        url: bus.url,
        exchange: bus.exchange,
        queuePrefix: `${bus.exchange}.`,
        logger,
      });
    }
  }
}

async function createStore(config: IonConfig, logger: Logger): Promise<DocumentStore> {
  const store = config.store;
  switch (store.kind) {
    case 'sqlite':
      return new SqliteDocumentStore({ path: store.path ?? join(config.dataDir, 'store.db') });
    case 'postgres': {
      const { PostgresDocumentStore } =
        await import('../store/postgres/postgres-document-store.js');
      return new PostgresDocumentStore({
        url: store.url,
        schema: store.schema,
        poolSize: store.poolSize,
        logger,
      });
    }
  }
}

/** The blob store the config names (also used by `ion handler` inside a pod). */
export async function createBlobStore(config: IonConfig): Promise<BlobStore> {
  const blob = config.blob;
  switch (blob.kind) {
    case 'fs':
      return new FsBlobStore({ dir: blob.dir ?? join(config.dataDir, 'blobs') });
    case 's3': {
      const { S3BlobStore } = await import('../blob/s3/s3-blob-store.js');
      return new S3BlobStore({
        bucket: blob.bucket,
        prefix: blob.prefix,
        region: blob.region,
        forcePathStyle: blob.forcePathStyle,
        checksums: blob.checksums,
        ...(blob.endpoint === undefined ? {} : { endpoint: blob.endpoint }),
        ...(blob.accessKeyId === undefined || blob.secretAccessKey === undefined
          ? {}
          : {
              credentials: { accessKeyId: blob.accessKeyId, secretAccessKey: blob.secretAccessKey },
            }),
      });
    }
    case 'azure': {
      const { AzureBlobStore } = await import('../blob/azure/azure-blob-store.js');
      return new AzureBlobStore({
        connectionString: blob.connectionString,
        container: blob.container,
        prefix: blob.prefix,
      });
    }
  }
}
