import { PassThrough, type Writable } from 'node:stream';
import {
  ApiException,
  BatchV1Api,
  CoreV1Api,
  KubeConfig,
  Log,
  makeInformer,
  type Informer,
  type V1Job,
  type V1Pod,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { UnavailableError, errorMessage } from '../../core/errors.js';
import type { KubeCluster, PodEvent } from './cluster.js';
import { JOB_LABEL, MANAGED_BY } from './manifests.js';

export interface ClientClusterOptions {
  namespace: string;
  /** A kubeconfig file; else in-cluster credentials in a pod, else ~/.kube/config. */
  kubeconfig?: string;
  /** A ready KubeConfig (tests); wins over `kubeconfig`. */
  kubeConfig?: KubeConfig;
  logger: Logger;
  /** Wait before the informer reconnects after an error. */
  reconnectMs?: number;
}

const SELECTOR = Object.entries(MANAGED_BY)
  .map(([k, v]) => `${k}=${v}`)
  .join(',');

/**
 * The real cluster, on @kubernetes/client-node: one informer (list, then watch) over the pods
 * Ion created in the namespace, shared by every attempt, instead of listing Jobs on a tick;
 * Jobs created and deleted through the batch API; logs through the log API; events through
 * the core API. Needs RBAC for jobs, pods, pods/log and events (docs/deployment.md).
 */
export class ClientCluster implements KubeCluster {
  private readonly kc: KubeConfig;
  private readonly core: CoreV1Api;
  private readonly batch: BatchV1Api;
  private informer: Informer<V1Pod> | null = null;
  private readonly listeners = new Map<string, Set<(pod: V1Pod | null) => void>>();
  private readonly latest = new Map<string, V1Pod>();
  private closed = false;
  private retry: NodeJS.Timeout | undefined;

  constructor(private readonly options: ClientClusterOptions) {
    if (options.kubeConfig !== undefined) this.kc = options.kubeConfig;
    else {
      this.kc = new KubeConfig();
      if (options.kubeconfig !== undefined) this.kc.loadFromFile(options.kubeconfig);
      else this.kc.loadFromDefault();
    }
    this.core = this.kc.makeApiClient(CoreV1Api);
    this.batch = this.kc.makeApiClient(BatchV1Api);
  }

  async start(): Promise<void> {
    const { namespace } = this.options;
    const informer = makeInformer<V1Pod>(
      this.kc,
      `/api/v1/namespaces/${namespace}/pods`,
      () => this.core.listNamespacedPod({ namespace, labelSelector: SELECTOR }),
      SELECTOR,
    );
    informer.on('add', (pod) => this.publish(pod));
    informer.on('update', (pod) => this.publish(pod));
    informer.on('delete', (pod) => this.publish(pod, true));
    // The informer reports a failed first list as an error event, not as a rejection.
    let startError: unknown = null;
    let starting = true;
    informer.on('error', (err: unknown) => {
      if (starting) {
        startError ??= err;
        return;
      }
      if (this.closed) return;
      this.options.logger.warn({ err: errorMessage(err) }, 'pod watch failed; reconnecting');
      this.retry = setTimeout(() => {
        informer.start().catch(() => undefined);
      }, this.options.reconnectMs ?? 2000);
    });
    this.informer = informer;
    try {
      await informer.start();
    } catch (err) {
      startError ??= err;
    }
    starting = false;
    if (startError !== null) {
      await informer.stop();
      throw new UnavailableError(
        `cannot watch pods in namespace ${namespace}: ${describe(startError)}`,
        { cause: startError },
      );
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retry);
    await this.informer?.stop();
    this.informer = null;
  }

  async createJob(job: V1Job): Promise<'created' | 'exists'> {
    try {
      await this.batch.createNamespacedJob({ namespace: this.options.namespace, body: job });
      return 'created';
    } catch (err) {
      if (err instanceof ApiException && err.code === 409) return 'exists';
      throw new UnavailableError(
        `creating Job ${job.metadata?.name ?? ''} failed: ${describe(err)}`,
        {
          cause: err,
        },
      );
    }
  }

  watchPod(jobName: string, onPod: (pod: V1Pod | null) => void): () => void {
    let set = this.listeners.get(jobName);
    if (set === undefined) this.listeners.set(jobName, (set = new Set()));
    set.add(onPod);
    const current = this.latest.get(jobName);
    if (current !== undefined) queueMicrotask(() => onPod(current));
    return () => {
      set.delete(onPod);
      if (set.size === 0) {
        this.listeners.delete(jobName);
        this.latest.delete(jobName);
      }
    };
  }

  async readLog(
    podName: string,
    container: string,
    sink: Writable,
    options: { follow: boolean; signal?: AbortSignal },
  ): Promise<void> {
    // The client pipes into (and so ends) the stream it is given: give it one of our own.
    const through = new PassThrough();
    through.on('data', (chunk: Buffer) => sink.write(chunk));
    const ended = new Promise<void>((resolve) => {
      through.once('end', resolve);
      through.once('close', resolve);
      through.once('error', () => resolve());
    });
    const controller = await new Log(this.kc).log(
      this.options.namespace,
      podName,
      container,
      through,
      { follow: options.follow },
    );
    const abort = (): void => {
      controller.abort();
      through.end();
    };
    options.signal?.addEventListener('abort', abort);
    try {
      await ended;
    } finally {
      options.signal?.removeEventListener('abort', abort);
    }
  }

  async podEvents(podName: string): Promise<PodEvent[]> {
    const list = await this.core.listNamespacedEvent({
      namespace: this.options.namespace,
      fieldSelector: `involvedObject.kind=Pod,involvedObject.name=${podName}`,
    });
    return list.items
      .map((e) => ({
        type: e.type ?? '',
        reason: e.reason ?? '',
        message: e.message ?? '',
        at: new Date(e.lastTimestamp ?? e.eventTime ?? e.firstTimestamp ?? 0).getTime(),
      }))
      .sort((a, b) => a.at - b.at)
      .map(({ type, reason, message }) => ({ type, reason, message }));
  }

  async deleteJob(jobName: string): Promise<void> {
    try {
      await this.batch.deleteNamespacedJob({
        name: jobName,
        namespace: this.options.namespace,
        // The Job's pod goes with it.
        propagationPolicy: 'Background',
        gracePeriodSeconds: 0,
      });
    } catch (err) {
      if (err instanceof ApiException && err.code === 404) return;
      throw err;
    }
  }

  private publish(pod: V1Pod, deleted = false): void {
    const jobName = pod.metadata?.labels?.[JOB_LABEL];
    if (jobName === undefined) return;
    const set = this.listeners.get(jobName);
    if (set === undefined) return;
    if (!deleted) this.latest.set(jobName, pod);
    for (const listener of set) listener(deleted ? null : pod);
  }
}

function describe(err: unknown): string {
  if (err instanceof ApiException) {
    const body = err.body as { message?: string } | string | undefined;
    const message = typeof body === 'object' && body !== null ? body.message : body;
    return `HTTP ${err.code}${message ? `: ${message}` : ''}`;
  }
  return errorMessage(err);
}
