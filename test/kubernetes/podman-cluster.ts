import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { promisify } from 'node:util';
import type { V1ContainerStatus, V1Job, V1Pod } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import type { KubeCluster, PodEvent } from '../../src/executors/kubernetes/cluster.js';
import { JOB_LABEL } from '../../src/executors/kubernetes/manifests.js';

const run = promisify(execFile);

export interface PodmanClusterOptions {
  /** The podman CLI's environment (CONTAINERS_CONF, CONTAINERS_STORAGE_CONF...). */
  env: NodeJS.ProcessEnv;
  /** `host` so the pod reaches the blob store emulator on this machine's loopback. */
  network: string;
  /** How often the pod's containers are inspected (podman has no watch of its own). */
  pollMs?: number;
}

interface PlayedPod {
  dir: string;
  play: ChildProcess;
  playExit: Promise<{ code: number | null; stderr: string }>;
}

/**
 * A {@link KubeCluster} on podman, so the whole Kubernetes job host runs for real on a
 * machine without a Kubernetes API server: a Job becomes its pod template run with
 * `podman kube play` (init containers in order, the emptyDir, the Secret as `envFrom`, the
 * real images), its states come from `podman inspect` (polled), logs from `podman logs`.
 *
 * What it adds to the pod: labels `job-name`, and podman's annotation that keeps init
 * containers after they ran (podman removes them by default, with their status and log,
 * where Kubernetes keeps both). What it cannot show: scheduling, image pulls from a
 * registry, node selection, resource limits as a kubelet applies them, the termination
 * message file (podman has none: the handler result comes from the log line instead).
 */
export class PodmanCluster implements KubeCluster {
  private readonly pods = new Map<string, PlayedPod>();
  private readonly secrets: string[] = [];

  constructor(private readonly options: PodmanClusterOptions) {}

  async start(): Promise<void> {
    await this.podman(['info', '--format', '{{.Host.OCIRuntime.Name}}']);
  }

  async close(): Promise<void> {
    for (const name of [...this.pods.keys()]) await this.deleteJob(name);
    for (const secret of this.secrets.splice(0))
      await this.podman(['secret', 'rm', secret]).catch(() => undefined);
  }

  /** A Secret, as `kubectl create secret generic` makes one (podman keeps it as JSON of base64 values). */
  async createSecret(name: string, data: Record<string, string>): Promise<void> {
    const encoded = Object.fromEntries(
      Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')]),
    );
    const dir = await mkdtemp(join(tmpdir(), 'ion-podman-secret-'));
    try {
      await writeFile(join(dir, 'secret.json'), JSON.stringify(encoded));
      await this.podman(['secret', 'create', name, join(dir, 'secret.json')]);
      this.secrets.push(name);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  async createJob(job: V1Job): Promise<'created' | 'exists'> {
    const name = job.metadata!.name!;
    if (this.pods.has(name)) return 'exists';
    const template = job.spec!.template;
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name,
        labels: { ...template.metadata?.labels, 'job-name': name },
        annotations: {
          ...template.metadata?.annotations,
          'io.podman.annotations.init.container.type': 'always',
        },
      },
      spec: template.spec,
    };
    const dir = await mkdtemp(join(tmpdir(), 'ion-podman-pod-'));
    await writeFile(join(dir, 'pod.yaml'), stringify(pod));
    const play = spawn(
      'podman',
      ['kube', 'play', '--network', this.options.network, join(dir, 'pod.yaml')],
      {
        env: this.options.env,
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    let stderr = '';
    play.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
    const playExit = new Promise<{ code: number | null; stderr: string }>((resolve) => {
      play.once('close', (code) => resolve({ code, stderr }));
      play.once('error', (err) => resolve({ code: -1, stderr: err.message }));
    });
    this.pods.set(name, { dir, play, playExit });
    return 'created';
  }

  watchPod(jobName: string, onPod: (pod: V1Pod | null) => void): () => void {
    let stopped = false;
    let last = '';
    const poll = async (): Promise<void> => {
      while (!stopped) {
        const pod = await this.podState(jobName).catch(() => undefined);
        if (stopped) return;
        const json = JSON.stringify(pod ?? null);
        if (pod !== undefined && json !== last) {
          last = json;
          onPod(pod);
        }
        await new Promise((resolve) => setTimeout(resolve, this.options.pollMs ?? 100));
      }
    };
    void poll();
    return () => {
      stopped = true;
    };
  }

  async readLog(
    podName: string,
    container: string,
    sink: Writable,
    options: { follow: boolean; signal?: AbortSignal },
  ): Promise<void> {
    const args = ['logs', ...(options.follow ? ['-f'] : []), `${podName}-${container}`];
    const child = spawn('podman', args, {
      env: this.options.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const onAbort = (): void => {
      child.kill('SIGTERM');
    };
    options.signal?.addEventListener('abort', onAbort);
    child.stdout.on('data', (chunk: Buffer) => sink.write(chunk));
    child.stderr.on('data', (chunk: Buffer) => sink.write(chunk));
    await new Promise<void>((resolve) => child.once('close', () => resolve()));
    options.signal?.removeEventListener('abort', onAbort);
  }

  async podEvents(podName: string): Promise<PodEvent[]> {
    const played = this.pods.get(podName);
    if (played === undefined || played.play.exitCode === null) return [];
    const { code, stderr } = await played.playExit;
    if (code === 0) return [];
    return [
      {
        type: 'Warning',
        reason: /image/i.test(stderr) ? 'Failed' : 'FailedCreatePodSandBox',
        message: stderr.trim(),
      },
    ];
  }

  async deleteJob(jobName: string): Promise<void> {
    const played = this.pods.get(jobName);
    this.pods.delete(jobName);
    if (played !== undefined && played.play.exitCode === null) played.play.kill('SIGTERM');
    await played?.playExit;
    await this.podman(['pod', 'rm', '-f', '--ignore', jobName]).catch(() => undefined);
    if (played !== undefined) await rm(played.dir, { recursive: true, force: true });
  }

  /** The pod as the API server would report it, built from podman's view of its containers. */
  private async podState(name: string): Promise<V1Pod | undefined> {
    const played = this.pods.get(name);
    if (played === undefined) return undefined;
    const { stdout } = await this.podman([
      'ps',
      '-a',
      '--filter',
      `pod=${name}`,
      '--format',
      '{{.Names}}',
    ]);
    const names = stdout
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l.startsWith(`${name}-`));
    const inspected =
      names.length === 0
        ? []
        : (JSON.parse((await this.podman(['inspect', ...names])).stdout) as Inspected[]);
    const byName = new Map(inspected.map((c) => [c.Name, c]));
    const playFailed = played.play.exitCode !== null && played.play.exitCode !== 0;
    const spec = { init: ['prepare', 'module'], main: ['collect'] };
    const status = (container: string): V1ContainerStatus =>
      toStatus(container, byName.get(`${name}-${container}`), playFailed);
    const init = spec.init.map(status);
    const main = spec.main.map(status);
    const initFailed = init.some((c) => (c.state?.terminated?.exitCode ?? 0) !== 0);
    const mainDone = main.every((c) => c.state?.terminated !== undefined);
    const phase =
      initFailed || (mainDone && main.some((c) => c.state!.terminated!.exitCode !== 0))
        ? 'Failed'
        : mainDone
          ? 'Succeeded'
          : main.some((c) => c.state?.running !== undefined)
            ? 'Running'
            : 'Pending';
    return {
      metadata: { name, labels: { [JOB_LABEL]: name, 'job-name': name } },
      status: { phase, initContainerStatuses: init, containerStatuses: main },
    };
  }

  private async podman(args: string[]): Promise<{ stdout: string }> {
    return run('podman', args, { env: this.options.env, maxBuffer: 16 * 1024 * 1024 });
  }
}

interface Inspected {
  Name: string;
  ImageName?: string;
  State: {
    Status: string;
    ExitCode: number;
    OOMKilled: boolean;
    StartedAt: string;
    FinishedAt: string;
  };
}

function toStatus(name: string, c: Inspected | undefined, playFailed: boolean): V1ContainerStatus {
  const base = { name, image: c?.ImageName ?? '', imageID: '', ready: false, restartCount: 0 };
  if (c === undefined)
    return {
      ...base,
      state: { waiting: { reason: playFailed ? 'CreateContainerError' : 'PodInitializing' } },
    };
  const s = c.State;
  if (s.Status === 'running')
    return { ...base, state: { running: { startedAt: new Date(s.StartedAt) } } };
  if (s.Status === 'exited' || s.Status === 'stopped')
    return {
      ...base,
      state: {
        terminated: {
          exitCode: s.ExitCode,
          reason: s.OOMKilled ? 'OOMKilled' : s.ExitCode === 0 ? 'Completed' : 'Error',
          startedAt: new Date(s.StartedAt),
          finishedAt: new Date(s.FinishedAt),
        },
      },
    };
  return {
    ...base,
    state: { waiting: { reason: playFailed ? 'CreateContainerError' : 'PodInitializing' } },
  };
}
