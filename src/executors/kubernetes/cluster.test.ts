import type { V1ContainerStatus, V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { hopelessImage, pendingFailure, type PodEvent } from './cluster.js';

/** A pod as the API reports it while pending; statuses and conditions as the tests need. */
function pod(
  init: V1ContainerStatus[] = [],
  conditions: NonNullable<V1Pod['status']>['conditions'] = [],
): V1Pod {
  return {
    metadata: { name: 'ion-job-1-a1' },
    status: { phase: 'Pending', initContainerStatuses: init, conditions },
  };
}

function waiting(name: string, reason: string, message = ''): V1ContainerStatus {
  return {
    name,
    image: `registry.example/${name}:1`,
    imageID: '',
    ready: false,
    restartCount: 0,
    state: { waiting: { reason, message } },
  };
}

const PENDING_MS = 300_000;

describe('pendingFailure: why a pod is still pending at its deadline', () => {
  it("is image_unavailable when a container waits for its image, naming it and Kubernetes' reason", () => {
    const failure = pendingFailure(
      pod([
        waiting('prepare', 'PodInitializing'),
        waiting('module', 'ImagePullBackOff', 'Back-off pulling image'),
      ]),
      [],
      PENDING_MS,
    );
    expect(failure).toEqual({
      code: 'image_unavailable',
      message:
        'container module (image registry.example/module:1) is still waiting after 300s: ImagePullBackOff: Back-off pulling image',
    });
  });

  it('is pod_unschedulable with the last warning event (FailedScheduling) when no image is at fault', () => {
    const events: PodEvent[] = [
      { type: 'Normal', reason: 'Created', message: 'created' },
      {
        type: 'Warning',
        reason: 'FailedScheduling',
        message: '0/3 nodes are available: 3 Insufficient nvidia.com/gpu.',
      },
      { type: 'Normal', reason: 'NotTriggerScaleUp', message: 'no node group fits' },
    ];
    expect(pendingFailure(pod(), events, PENDING_MS)).toEqual({
      code: 'pod_unschedulable',
      message:
        'the pod is still pending after 300s: FailedScheduling: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu.',
    });
  });

  it('is image_unavailable when the last warning event is a failed image pull', () => {
    const events: PodEvent[] = [
      { type: 'Warning', reason: 'Failed', message: 'Failed to pull image "x:1": not found' },
    ];
    expect(pendingFailure(pod(), events, PENDING_MS).code).toBe('image_unavailable');
  });

  it('falls back on the PodScheduled condition, then says that nothing said why', () => {
    const unscheduled = pod(
      [],
      [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: 'taints' }],
    );
    expect(pendingFailure(unscheduled, [], 60_000).message).toBe(
      'the pod is still pending after 60s: Unschedulable: taints',
    );
    expect(pendingFailure(null, [], 60_000)).toEqual({
      code: 'pod_unschedulable',
      message: 'the pod is still pending after 60s: no event says why',
    });
  });
});

describe('hopelessImage: an image no waiting can bring', () => {
  it('finds ErrImageNeverPull and InvalidImageName on any container, and not a back-off', () => {
    expect(hopelessImage(pod([waiting('module', 'ErrImageNeverPull', 'never pull')]))).toEqual({
      container: 'module',
      reason: 'ErrImageNeverPull',
      message: 'never pull',
    });
    expect(hopelessImage(pod([waiting('prepare', 'InvalidImageName')]))?.container).toBe('prepare');
    expect(hopelessImage(pod([waiting('module', 'ImagePullBackOff')]))).toBeUndefined();
    expect(hopelessImage(null)).toBeUndefined();
  });
});
