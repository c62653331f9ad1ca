import type { Writable } from 'node:stream';
import type { V1ContainerStatus, V1Job, V1Pod } from '@kubernetes/client-node';

/** A Kubernetes event about a pod, as the pending deadline reads it. */
export interface PodEvent {
  type: string;
  reason: string;
  message: string;
}

/**
 * The cluster as the Kubernetes job host needs it: five operations, so the host runs against
 * the real API (client-cluster.ts, on @kubernetes/client-node) or against anything else that
 * runs a Job's pod (the tests run it with `podman kube play`).
 */
export interface KubeCluster {
  start(): Promise<void>;
  /** Idempotent; stops the watch. */
  close(): Promise<void>;
  /** Creates the Job; `exists` when one of that name is there already (a restarted worker adopts it). */
  createJob(job: V1Job): Promise<'created' | 'exists'>;
  /**
   * Reports every state of the pod of Job `jobName` (label `ion.io/job`), including the
   * current one, until the returned function is called; null when the pod was deleted.
   */
  watchPod(jobName: string, onPod: (pod: V1Pod | null) => void): () => void;
  /**
   * Copies one container's log into `sink` (which it does not end): with `follow`, until the
   * container ends or `signal` aborts. Resolves when the copy ends.
   */
  readLog(
    podName: string,
    container: string,
    sink: Writable,
    options: { follow: boolean; signal?: AbortSignal },
  ): Promise<void>;
  /** The events about a pod, oldest first (why it is pending: FailedScheduling, image pulls...). */
  podEvents(podName: string): Promise<PodEvent[]>;
  /** Deletes the Job and its pod; a Job already gone is fine. */
  deleteJob(jobName: string): Promise<void>;
}

/** The status of one of the pod's containers, init or main. */
export function containerStatus(pod: V1Pod | null, name: string): V1ContainerStatus | undefined {
  const status = pod?.status;
  return (
    status?.initContainerStatuses?.find((c) => c.name === name) ??
    status?.containerStatuses?.find((c) => c.name === name)
  );
}

/** Whether a container has started (running, or already ended). */
export function hasStarted(status: V1ContainerStatus | undefined): boolean {
  return status?.state?.running !== undefined || status?.state?.terminated !== undefined;
}

/** Waiting reasons that mean the image cannot be had. */
const IMAGE_REASONS = new Set([
  'ErrImagePull',
  'ImagePullBackOff',
  'ErrImageNeverPull',
  'InvalidImageName',
  'ImageInspectError',
]);
/** Image reasons that no waiting can cure: fail at once rather than at the pending deadline. */
const FINAL_IMAGE_REASONS = new Set(['ErrImageNeverPull', 'InvalidImageName']);

/** A container waiting for an image it can never get (`ErrImageNeverPull`), if any. */
export function hopelessImage(
  pod: V1Pod | null,
): { container: string; reason: string; message: string } | undefined {
  for (const c of [
    ...(pod?.status?.initContainerStatuses ?? []),
    ...(pod?.status?.containerStatuses ?? []),
  ]) {
    const waiting = c.state?.waiting;
    if (waiting?.reason !== undefined && FINAL_IMAGE_REASONS.has(waiting.reason))
      return { container: c.name, reason: waiting.reason, message: waiting.message ?? '' };
  }
  return undefined;
}

/**
 * Why a pod is still pending at its deadline, from its containers' waiting reasons and its
 * events: the image (`image_unavailable`) or anything else (`pod_unschedulable`), with the
 * reason and message Kubernetes gave.
 */
export function pendingFailure(
  pod: V1Pod | null,
  events: readonly PodEvent[],
  pendingMs: number,
): { code: 'image_unavailable' | 'pod_unschedulable'; message: string } {
  const seconds = Math.round(pendingMs / 1000);
  for (const c of [
    ...(pod?.status?.initContainerStatuses ?? []),
    ...(pod?.status?.containerStatuses ?? []),
  ]) {
    const waiting = c.state?.waiting;
    if (waiting?.reason !== undefined && IMAGE_REASONS.has(waiting.reason))
      return {
        code: 'image_unavailable',
        message: `container ${c.name} (image ${c.image}) is still waiting after ${seconds}s: ${waiting.reason}${waiting.message ? `: ${waiting.message}` : ''}`,
      };
  }
  const warnings = events.filter((e) => e.type === 'Warning');
  const last = warnings[warnings.length - 1] ?? events[events.length - 1];
  if (
    last !== undefined &&
    (IMAGE_REASONS.has(last.reason) || last.reason === 'Failed') &&
    /image/i.test(`${last.reason} ${last.message}`)
  )
    return {
      code: 'image_unavailable',
      message: `the pod is still pending after ${seconds}s: ${last.reason}: ${last.message}`,
    };
  const condition = pod?.status?.conditions?.find(
    (c) => c.type === 'PodScheduled' && c.status === 'False',
  );
  const why =
    last !== undefined
      ? `${last.reason}: ${last.message}`
      : condition !== undefined
        ? `${condition.reason ?? 'Unschedulable'}: ${condition.message ?? ''}`
        : 'no event says why';
  return {
    code: 'pod_unschedulable',
    message: `the pod is still pending after ${seconds}s: ${why}`,
  };
}
