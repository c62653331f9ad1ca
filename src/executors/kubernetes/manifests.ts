import { createHash } from 'node:crypto';
import type {
  V1Container,
  V1EnvFromSource,
  V1EnvVar,
  V1Job,
  V1ResourceRequirements,
  V1SecurityContext,
} from '@kubernetes/client-node';
import type { IonConfig } from '../../config/config.js';
import { IonError, ValidationError } from '../../core/errors.js';
import type { IonEvent, ModuleRecord, PullPolicy, Resources } from '../../core/types.js';
import { moduleEnv } from '../job-host.js';
import { HANDLER_JOB_ENV, HANDLER_JOB_MAX_BYTES, type HandlerJob } from './handler-protocol.js';

/**
 * Pure builders of the Kubernetes objects of one attempt. No I/O: the same input always
 * gives the same Job, so a restarted worker computes the name of the Job it created before.
 *
 * The pod: an `emptyDir` at `/ion`; init container `prepare` (`ion handler prepare`), init
 * container `module` (the module's image and command), main container `collect`
 * (`ion handler collect`). Kubernetes runs init containers in order and runs the main
 * container only when all succeeded, so collect runs exactly when the module exited 0. A
 * failed module's exit status, OOM kill and log are read by the worker from the pod status
 * and the log API (kubernetes-job-host.ts), so they are recorded though collect never runs.
 */

export type KubernetesSettings = IonConfig['executor']['kubernetes'];

/** Where the job directory lives in every container of the pod (the module contract). */
export const ION_DIR = '/ion';
export const CONTAINER = { prepare: 'prepare', module: 'module', collect: 'collect' } as const;
/** Labels every object Ion creates carries; the watch selects on the first. */
export const MANAGED_BY = { 'app.kubernetes.io/managed-by': 'ion' } as const;
export const JOB_LABEL = 'ion.io/job';

/**
 * Time the handler containers may take on top of the pending deadline and the module's
 * timeout before the Job's own `activeDeadlineSeconds` stops the pod. The worker enforces
 * the module's timeout itself (it knows when the module started); the Job deadline is the
 * backstop that ends the pod if the worker is gone.
 */
export const HANDLER_ALLOWANCE_SECONDS = 600;

/** The platform variables that describe the worker's host, not the image: left to the image. */
const HOST_ONLY_ENV = new Set(['PATH', 'HOME', 'TMPDIR', 'USER']);

export interface JobManifestInput {
  jobId: string;
  attempt: number;
  module: ModuleRecord;
  event: IonEvent;
  baseEnv: Readonly<Record<string, string>>;
  settings: KubernetesSettings;
  /** The blob store's non-secret settings as `ION_*` variables ({@link blobHandlerEnv}). */
  blobEnv: Readonly<Record<string, string>>;
}

/**
 * The Job's name: deterministic from the job id and the attempt, a DNS-1123 label short
 * enough for the pod names Kubernetes derives from it.
 */
export function jobName(jobId: string, attempt: number): string {
  const id = /^[a-z0-9][a-z0-9-]{0,39}$/.test(jobId)
    ? jobId
    : createHash('sha256').update(jobId).digest('hex').slice(0, 32);
  return `ion-${id}-a${attempt}`;
}

/**
 * The blob store settings the handler containers need, as the `ION_*` variables
 * `ion server` reads. Credentials are left out on purpose: they come from the Secret named
 * by `executor.kubernetes.blobSecret` (`envFrom`), never from the worker's own config.
 */
export function blobHandlerEnv(blob: IonConfig['blob']): Record<string, string> {
  switch (blob.kind) {
    case 'fs':
      throw new IonError(
        'validation_failed',
        'the kubernetes executor needs a blob store its pods can reach (blob.kind s3 or azure); this worker uses the filesystem blob store. See docs/deployment.md#example-kubernetes',
      );
    case 's3':
      return {
        ION_BLOB: 's3',
        ION_S3_BUCKET: blob.bucket,
        ION_S3_PREFIX: blob.prefix,
        ION_S3_REGION: blob.region,
        ION_S3_FORCE_PATH_STYLE: String(blob.forcePathStyle),
        ION_S3_CHECKSUMS: blob.checksums,
        ...(blob.endpoint === undefined ? {} : { ION_S3_ENDPOINT: blob.endpoint }),
      };
    case 'azure':
      return {
        ION_BLOB: 'azure',
        ION_AZURE_CONTAINER: blob.container,
        ION_AZURE_PREFIX: blob.prefix,
      };
  }
}

/** The Job of one attempt. Throws ValidationError for a module spec a pod cannot express. */
export function buildJobManifest(input: JobManifestInput): V1Job {
  const { jobId, attempt, module, event, settings } = input;
  const name = jobName(jobId, attempt);
  const labels = {
    ...MANAGED_BY,
    [JOB_LABEL]: name,
    'ion.io/module': module.name,
    'ion.io/attempt': String(attempt),
  };
  const annotations = { 'ion.io/job-id': jobId, 'ion.io/event-id': event.eventId };
  const base = { jobId, attempt, module: module.name };
  const prepareJob = handlerJobJson({ ...base, event });
  const collectJob = handlerJobJson({ ...base, publishes: module.publishes });
  const volumeMounts = [{ name: 'ion', mountPath: ION_DIR }];
  const handler = (step: 'prepare' | 'collect', job: string): V1Container => ({
    name: CONTAINER[step],
    image: settings.handlerImage,
    imagePullPolicy: 'IfNotPresent',
    command: ['ion', 'handler', step, '--dir', ION_DIR],
    env: envList({ ...input.blobEnv, [HANDLER_JOB_ENV]: job }),
    ...(settings.blobSecret === undefined ? {} : { envFrom: secretEnv(settings.blobSecret) }),
    volumeMounts,
    terminationMessagePolicy: 'File',
  });
  const moduleBase = Object.fromEntries(
    Object.entries(input.baseEnv).filter(([k]) => !HOST_ONLY_ENV.has(k)),
  );
  const run = module.run;
  const moduleContainer: V1Container = {
    name: CONTAINER.module,
    image: run.image ?? settings.runtimeImage,
    imagePullPolicy: pullPolicy(run.pull ?? 'if-not-present'),
    ...(run.command === undefined ? {} : { command: [...run.command] }),
    ...(run.args === undefined ? {} : { args: [...run.args] }),
    workingDir: ION_DIR,
    env: envList(moduleEnv(moduleBase, module, event, ION_DIR, attempt)),
    volumeMounts,
    resources: resourceRequirements(module.resources ?? {}),
    ...(run.user === undefined ? {} : { securityContext: securityContext(run.user, module.name) }),
  };
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name, namespace: settings.namespace, labels, annotations },
    spec: {
      backoffLimit: 0,
      activeDeadlineSeconds:
        Math.ceil((settings.pendingTimeoutMs + module.timeoutMs) / 1000) +
        HANDLER_ALLOWANCE_SECONDS,
      ttlSecondsAfterFinished: settings.ttlSecondsAfterFinished,
      template: {
        metadata: { labels, annotations },
        spec: {
          restartPolicy: 'Never',
          // The module gets no API credentials and no service discovery variables.
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          ...(settings.serviceAccount === undefined
            ? {}
            : { serviceAccountName: settings.serviceAccount }),
          ...(settings.imagePullSecrets.length === 0
            ? {}
            : { imagePullSecrets: settings.imagePullSecrets.map((n) => ({ name: n })) }),
          ...(Object.keys(settings.nodeSelector).length === 0
            ? {}
            : { nodeSelector: { ...settings.nodeSelector } }),
          ...(settings.tolerations.length === 0
            ? {}
            : { tolerations: settings.tolerations.map((t) => ({ ...t })) }),
          volumes: [{ name: 'ion', emptyDir: {} }],
          initContainers: [handler('prepare', prepareJob), moduleContainer],
          containers: [handler('collect', collectJob)],
        },
      },
    },
  };
}

function handlerJobJson(job: HandlerJob): string {
  const text = JSON.stringify(job);
  const bytes = Buffer.byteLength(text);
  if (bytes > HANDLER_JOB_MAX_BYTES)
    throw new IonError(
      'payload_too_large',
      `event ${job.event?.eventId ?? ''} is too large for the kubernetes executor: its metadata and file list take ${Math.ceil(bytes / 1024)} KiB, more than the ${HANDLER_JOB_MAX_BYTES / 1024} KiB a pod's environment can carry; split it into smaller events or run the module on another executor`,
    );
  return text;
}

function envList(env: Readonly<Record<string, string>>): V1EnvVar[] {
  return Object.entries(env).map(([name, value]) => ({ name, value }));
}

function secretEnv(secret: string): V1EnvFromSource[] {
  return [{ secretRef: { name: secret } }];
}

/** Ion's pull policy as Kubernetes spells it. */
export function pullPolicy(pull: PullPolicy): 'Always' | 'IfNotPresent' | 'Never' {
  return pull === 'always' ? 'Always' : pull === 'never' ? 'Never' : 'IfNotPresent';
}

/**
 * Limits with equal requests (the scheduler reserves what the module may use, and the pod
 * is not the first evicted); GPUs as `nvidia.com/gpu`, which Kubernetes takes as limits only.
 */
export function resourceRequirements(resources: Resources): V1ResourceRequirements {
  const amounts: Record<string, string> = {};
  if (resources.cpu !== undefined)
    amounts.cpu = `${Math.max(1, Math.round(resources.cpu * 1000))}m`;
  if (resources.memoryBytes !== undefined) amounts.memory = String(resources.memoryBytes);
  const limits: Record<string, string> = { ...amounts };
  if (resources.gpu !== undefined && resources.gpu > 0)
    limits['nvidia.com/gpu'] = String(resources.gpu);
  if (Object.keys(limits).length === 0) return {};
  return Object.keys(amounts).length === 0 ? { limits } : { limits, requests: amounts };
}

/** `run.user` as a pod takes it: numeric ids only (a pod cannot resolve a user name). */
export function securityContext(user: string, moduleName: string): V1SecurityContext {
  const match = /^(\d+)(?::(\d+))?$/.exec(user);
  if (match === null)
    throw new ValidationError(
      `module ${moduleName}: run.user "${user}" must be a numeric uid or uid:gid on the kubernetes executor (a pod cannot look up user names)`,
    );
  return {
    runAsUser: Number(match[1]),
    ...(match[2] === undefined ? {} : { runAsGroup: Number(match[2]) }),
  };
}
