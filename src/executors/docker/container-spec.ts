import type Docker from 'dockerode';
import { join } from 'node:path';
import type { ContainerSettings, ExecutionSpec } from '../executor.js';

/** Where the job directory is mounted in every module container. */
export const CONTAINER_JOB_DIR = '/ion';

/** Labels every container of Ion carries; the sweep finds orphans by them. */
export const LABEL = {
  job: 'ion.job',
  attempt: 'ion.attempt',
  module: 'ion.module',
  /** Set to `docker`: containers Ion's docker executor made (not pods, not other tools). */
  executor: 'ion.executor',
} as const;

/** A container name: Docker allows `[a-zA-Z0-9][a-zA-Z0-9_.-]*`. */
export function containerName(jobId: string, attempt: number, suffix: string): string {
  const safe = jobId.replace(/[^a-zA-Z0-9_.-]/g, '-').slice(0, 100);
  return `ion-${safe}-${attempt}-${suffix}`;
}

/** True when a container user is root (files it writes are root's). */
export function isRootUser(user: string | undefined): boolean {
  if (user === undefined || user === '') return true;
  const name = user.split(':')[0];
  return name === '0' || name === 'root';
}

export interface CreateOptionsInput {
  spec: ExecutionSpec;
  settings: ContainerSettings;
  image: string;
  name: string;
  pidsLimit: number;
}

/**
 * The Engine API's create body of one attempt. Command semantics are Kubernetes': `command`
 * replaces the image's ENTRYPOINT and `args` its CMD; a module without a command runs the
 * image's entrypoint with `args` (or the image's CMD when it has none).
 */
export function createOptions(input: CreateOptionsInput): Docker.ContainerCreateOptions {
  const { spec, settings, image, name, pidsLimit } = input;
  const { resources } = settings;
  const args = spec.args ?? [];
  const host: Docker.HostConfig = {
    Init: true,
    AutoRemove: false,
    NetworkMode: settings.network,
    PidsLimit: pidsLimit,
    Mounts: [
      { Type: 'bind', Source: spec.workDir, Target: CONTAINER_JOB_DIR },
      // Inputs are hard links into the blob store: nothing in the container may write them.
      {
        Type: 'bind',
        Source: join(spec.workDir, 'in'),
        Target: `${CONTAINER_JOB_DIR}/in`,
        ReadOnly: true,
      },
      ...settings.readOnlyPaths.map((path): Docker.MountSettings => ({
        Type: 'bind',
        Source: path,
        Target: path,
        ReadOnly: true,
      })),
    ],
  };
  if (resources.memoryBytes !== undefined) {
    host.Memory = resources.memoryBytes;
    host.MemorySwap = resources.memoryBytes; // no swap: past the limit is out of memory
  }
  if (resources.cpu !== undefined) host.NanoCpus = Math.round(resources.cpu * 1e9);
  if (resources.gpu !== undefined && resources.gpu > 0) {
    host.DeviceRequests = [{ Driver: '', Count: resources.gpu, Capabilities: [['gpu']] }];
  }
  const options: Docker.ContainerCreateOptions = {
    name,
    Image: image,
    Env: Object.entries(spec.env).map(([key, value]) => `${key}=${value}`),
    WorkingDir: CONTAINER_JOB_DIR,
    Labels: {
      [LABEL.job]: spec.jobId,
      [LABEL.attempt]: String(spec.attempt),
      [LABEL.module]: spec.module ?? '',
      [LABEL.executor]: 'docker',
    },
    Tty: false,
    OpenStdin: false,
    AttachStdin: false,
    AttachStdout: false,
    AttachStderr: false,
    HostConfig: host,
  };
  if (spec.command.length > 0) {
    options.Entrypoint = spec.command;
    options.Cmd = args; // Kubernetes: a command without args drops the image's CMD
  } else if (args.length > 0) {
    options.Cmd = args;
  }
  if (settings.user !== undefined) options.User = settings.user;
  return options;
}
