import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { PassThrough } from 'node:stream';
import { text } from 'node:stream/consumers';
import type { V1ContainerStateTerminated, V1Pod } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { BlobStore } from '../../blob/blob-store.js';
import type { IonConfig } from '../../config/config.js';
import { IonError, errorMessage } from '../../core/errors.js';
import type { CollectedOutputs } from '../../handler/collect.js';
import type { ExecutionResult } from '../executor.js';
import type { HostFailure, JobHost, JobHostResult, JobRequest } from '../job-host.js';
import {
  containerStatus,
  hasStarted,
  hopelessImage,
  pendingFailure,
  type KubeCluster,
} from './cluster.js';
import { parseResult } from './handler-protocol.js';
import { PodWatch, appendLog, tail } from './pod-watch.js';
import {
  CONTAINER,
  HANDLER_ALLOWANCE_SECONDS,
  blobHandlerEnv,
  buildJobManifest,
  jobName,
  type KubernetesSettings,
} from './manifests.js';

export interface KubernetesJobHostOptions {
  cluster: KubeCluster;
  settings: KubernetesSettings;
  /** The worker's blob store config: its non-secret part goes to the handler containers. */
  blob: IonConfig['blob'];
  /** Where collect left the description of the outputs. */
  blobs: BlobStore;
  logger: Logger;
}

/** How long the module's log may still flow after it ended before the copy is cut. */
const LOG_DRAIN_MS = 10_000;

/**
 * Runs attempts as Kubernetes Jobs: prepare, module and collect inside one pod (manifests.ts)
 * and the rest in the worker. The worker follows the pod through a watch, copies the module's
 * log into the attempt log as it runs, and reads the module's exit (and OOM kill) from its
 * init container status, so a failed module's status and log are recorded though collect
 * does not run. A pod still pending after `pendingTimeoutMs` fails the attempt with the
 * reason from its events; the module's timeout is counted from its start; cancel and
 * shutdown delete the Job; every Job is deleted once its outcome is read.
 */
export class KubernetesJobHost implements JobHost {
  readonly kind = 'kubernetes' as const;
  private readonly blobEnv: Record<string, string>;
  private readonly closing = new AbortController();

  constructor(private readonly options: KubernetesJobHostOptions) {
    // Refused here, so a worker with a filesystem blob store fails at start-up.
    this.blobEnv = blobHandlerEnv(options.blob);
  }

  async start(): Promise<void> {
    await this.options.cluster.start();
  }

  async close(): Promise<void> {
    this.closing.abort();
    await this.options.cluster.close();
  }

  async run(request: JobRequest): Promise<JobHostResult> {
    const { cluster, settings, logger } = this.options;
    const { jobId, attempt, module } = request;
    let manifest;
    try {
      manifest = buildJobManifest({ ...request, settings, blobEnv: this.blobEnv });
    } catch (err) {
      const code = err instanceof IonError ? err.code : 'internal';
      // A spec a pod cannot express is the pipeline's to fix: no retry helps.
      const kind = code === 'validation_failed' ? 'module' : 'platform';
      return {
        execution: null,
        collected: null,
        failure: { code, kind, message: errorMessage(err) },
      };
    }
    const name = jobName(jobId, attempt);
    const signal = AbortSignal.any([request.signal, this.closing.signal]);
    await mkdir(dirname(request.logFile), { recursive: true });
    const watch = new PodWatch();
    const unwatch = cluster.watchPod(name, (pod) => watch.update(pod));
    const started = Date.now();
    try {
      const created = await cluster.createJob(manifest);
      if (created === 'exists')
        logger.info({ jobId, attempt, job: name }, 'adopting an existing Job');
      return await this.follow(request, name, watch, signal, started);
    } finally {
      unwatch();
      await cluster
        .deleteJob(name)
        .catch((err: unknown) =>
          logger.warn(
            { job: name, err: errorMessage(err) },
            'deleting the Job failed; its TTL will',
          ),
        );
      logger.debug(
        { jobId, attempt, module: module.name, ms: Date.now() - started },
        'kubernetes attempt done',
      );
    }
  }

  private async follow(
    request: JobRequest,
    name: string,
    watch: PodWatch,
    signal: AbortSignal,
    started: number,
  ): Promise<JobHostResult> {
    const { settings } = this.options;
    const pending = settings.pendingTimeoutMs;
    const ended = (why: string): JobHostResult =>
      this.platform('internal', `the pod ended before the module ran: ${why}`);
    // 1. Scheduled and prepare started (the pending deadline), then prepare done.
    const prepStarted = await watch.until(
      (pod) =>
        hopelessImage(pod) ?? (hasStarted(containerStatus(pod, CONTAINER.prepare)) || undefined),
      signal,
      Date.now() + pending,
    );
    if (prepStarted === 'aborted') return this.stopped(request, started, null);
    if (prepStarted === 'deadline') return this.pendingTimedOut(watch.pod, pending);
    if (typeof prepStarted === 'object' && 'podEnded' in prepStarted)
      return ended(prepStarted.podEnded);
    if (typeof prepStarted === 'object') return this.imageFailure(prepStarted);
    const prep = await watch.until(
      (pod) => containerStatus(pod, CONTAINER.prepare)?.state?.terminated,
      signal,
      Infinity,
    );
    if (prep === 'aborted') return this.stopped(request, started, null);
    if (prep === 'deadline' || 'podEnded' in prep)
      return ended(prep === 'deadline' ? 'deadline' : prep.podEnded);
    if (prep.exitCode !== 0) return this.handlerFailed(request, watch.pod, CONTAINER.prepare, prep);
    // 2. The module: its image may still have to come (a second pending deadline), then it runs.
    const modStarted = await watch.until(
      (pod) =>
        hopelessImage(pod) ?? (hasStarted(containerStatus(pod, CONTAINER.module)) || undefined),
      signal,
      Date.now() + pending,
    );
    if (modStarted === 'aborted') return this.stopped(request, started, null);
    if (modStarted === 'deadline') return this.pendingTimedOut(watch.pod, pending);
    if (typeof modStarted === 'object' && 'podEnded' in modStarted)
      return ended(modStarted.podEnded);
    if (typeof modStarted === 'object') return this.imageFailure(modStarted);
    const podName = watch.pod?.metadata?.name ?? name;
    const moduleStart = Date.now();
    const logCopy = new AbortController();
    const copying = this.copyLog(podName, CONTAINER.module, request.logFile, logCopy.signal);
    const mod = await watch.until(
      (pod) => containerStatus(pod, CONTAINER.module)?.state?.terminated,
      signal,
      moduleStart + request.module.timeoutMs,
    );
    if (mod === 'aborted' || mod === 'deadline' || 'podEnded' in mod) {
      logCopy.abort();
      await copying;
      if (mod === 'aborted') return this.stopped(request, moduleStart, null);
      if (mod === 'deadline') return this.stopped(request, moduleStart, 'timeout');
      return this.platform('internal', `the pod ended while the module ran: ${mod.podEnded}`);
    }
    await drain(copying, logCopy);
    const execution = await this.execution(request.logFile, mod, moduleStart);
    if (execution.exitCode !== 0 || execution.failure !== undefined)
      return { execution, failure: null, collected: null };
    // 3. Collect (the main container) runs only now.
    const coll = await watch.until(
      (pod) => containerStatus(pod, CONTAINER.collect)?.state?.terminated,
      signal,
      Date.now() + pending + HANDLER_ALLOWANCE_SECONDS * 1000,
    );
    if (coll === 'aborted')
      return {
        ...(await this.stopped(request, moduleStart, null)),
        execution: { ...execution, cancelled: true },
      };
    if (coll === 'deadline' || 'podEnded' in coll)
      return {
        execution,
        collected: null,
        failure: {
          code: 'internal',
          kind: 'platform',
          message: `collect did not finish: ${coll === 'deadline' ? 'deadline passed' : coll.podEnded}`,
        },
      };
    const log = await this.readAll(podName, CONTAINER.collect);
    const result = parseResult(coll.message, log);
    if (result?.ok === true && result.collected !== undefined) {
      const collected = JSON.parse(
        await text(await this.options.blobs.get(result.collected)),
      ) as CollectedOutputs;
      return { execution, failure: null, collected };
    }
    return { execution, collected: null, failure: handlerFailure('collect', coll, result, log) };
  }

  /** The module's end as an ExecutionResult; an OOM kill is a failure of its own. */
  private async execution(
    logFile: string,
    state: V1ContainerStateTerminated,
    startedAt: number,
  ): Promise<ExecutionResult> {
    const from = state.startedAt === undefined ? startedAt : new Date(state.startedAt).getTime();
    const to = state.finishedAt === undefined ? Date.now() : new Date(state.finishedAt).getTime();
    const result: ExecutionResult = {
      exitCode: state.exitCode,
      signal: state.signal === undefined ? null : `signal ${state.signal}`,
      timedOut: false,
      cancelled: false,
      durationMs: Math.max(0, to - from),
      logTail: await tail(logFile),
    };
    if (state.reason === 'OOMKilled')
      result.failure = {
        code: 'module_oom',
        message: 'the module was killed for passing its memory limit (OOMKilled)',
      };
    return result;
  }

  /** Cancel, shutdown or timeout: the Job is deleted (in `run`) and the run reported stopped. */
  private async stopped(
    request: JobRequest,
    startedAt: number,
    why: 'timeout' | null,
  ): Promise<JobHostResult> {
    return {
      execution: {
        exitCode: null,
        signal: why === 'timeout' ? 'SIGKILL' : null,
        timedOut: why === 'timeout',
        cancelled: why === null,
        durationMs: Date.now() - startedAt,
        logTail: await tail(request.logFile),
      },
      failure: null,
      collected: null,
    };
  }

  private async pendingTimedOut(pod: V1Pod | null, pendingMs: number): Promise<JobHostResult> {
    const name = pod?.metadata?.name;
    const events =
      name === undefined ? [] : await this.options.cluster.podEvents(name).catch(() => []);
    const failure = pendingFailure(pod, events, pendingMs);
    return {
      execution: notRun({ ...failure, retryAfterMs: pendingMs }),
      failure: null,
      collected: null,
    };
  }

  private imageFailure(image: {
    container: string;
    reason: string;
    message: string;
  }): JobHostResult {
    return {
      execution: notRun({
        code: 'image_unavailable',
        message: `container ${image.container}: ${image.reason}${image.message ? `: ${image.message}` : ''}`,
        retryAfterMs: this.options.settings.pendingTimeoutMs,
      }),
      failure: null,
      collected: null,
    };
  }

  /** A handler container failed: its result (or log tail) says why; its log joins the attempt's. */
  private async handlerFailed(
    request: JobRequest,
    pod: V1Pod | null,
    container: string,
    state: V1ContainerStateTerminated,
  ): Promise<JobHostResult> {
    const log = await this.readAll(pod?.metadata?.name ?? '', container);
    await appendLog(request.logFile, `--- ion handler ${container} ---\n${log}`);
    const failure = handlerFailure(container, state, parseResult(state.message, log), log);
    return { execution: null, collected: null, failure };
  }

  private platform(code: string, message: string): JobHostResult {
    return { execution: null, collected: null, failure: { code, kind: 'platform', message } };
  }

  private async copyLog(
    pod: string,
    container: string,
    logFile: string,
    signal: AbortSignal,
  ): Promise<void> {
    const sink = createWriteStream(logFile, { flags: 'a' });
    try {
      await this.options.cluster.readLog(pod, container, sink, { follow: true, signal });
    } catch (err) {
      if (!signal.aborted)
        this.options.logger.warn({ pod, err: errorMessage(err) }, 'reading the module log failed');
    } finally {
      await new Promise<void>((resolve) => sink.end(resolve));
    }
  }

  private async readAll(pod: string, container: string): Promise<string> {
    const sink = new PassThrough();
    const collected = text(sink);
    await this.options.cluster
      .readLog(pod, container, sink, { follow: false })
      .catch(() => undefined);
    sink.end();
    return collected;
  }
}

function notRun(failure: NonNullable<ExecutionResult['failure']>): ExecutionResult {
  return {
    exitCode: null,
    signal: null,
    timedOut: false,
    cancelled: false,
    durationMs: 0,
    logTail: '',
    failure,
  };
}

/** Why a handler container failed, from its result, its OOM kill or its exit and log. */
function handlerFailure(
  container: string,
  state: V1ContainerStateTerminated,
  result: ReturnType<typeof parseResult>,
  log: string,
): HostFailure {
  if (result !== null && !result.ok)
    return {
      code: result.error.code,
      kind: result.error.code === 'module_output_invalid' ? 'module' : 'platform',
      message:
        result.error.code === 'module_output_invalid'
          ? result.error.message
          : `${container} failed: ${result.error.message}`,
    };
  const why =
    state.reason === 'OOMKilled'
      ? 'ran out of memory (OOMKilled)'
      : `exited with code ${state.exitCode} without a result`;
  const last = log.trim().split('\n').slice(-5).join('\n');
  return {
    code: 'internal',
    kind: 'platform',
    message: `the ${container} container ${why}${last ? `; its log ends:\n${last}` : ''}`,
  };
}

async function drain(copying: Promise<void>, copy: AbortController): Promise<void> {
  const timer = setTimeout(() => copy.abort(), LOG_DRAIN_MS);
  await copying;
  clearTimeout(timer);
}
