import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import type Docker from 'dockerode';
import type { Logger } from 'pino';
import { UnavailableError, ValidationError } from '../../core/errors.js';
import type { ContainerSettings, ExecutionSpec } from '../executor.js';
import { WarmExecutor } from '../warm/warm-executor.js';
import type { WarmLaunch, WarmLauncher, WarmRefusal } from '../warm/warm-slot.js';
import {
  CONTAINER_JOB_DIR,
  LABEL,
  containerName,
  createOptions,
  isRootUser,
} from './container-spec.js';
import {
  DEFAULT_DOCKER_HOST,
  dockerClient,
  engineMessage,
  ensureImage,
  isConnectionError,
  statusOf,
} from './engine.js';
import {
  CONTAINER_CONTROL_DIR,
  CONTAINER_CONTROL_SOCKET,
  WarmContainer,
} from './warm-container.js';
import { processAlive } from '../../core/processes.js';

/** The `ion.executor` label of warm containers: the cold executor's sweep never sees them. */
export const WARM_EXECUTOR_LABEL = 'docker-warm';
/** `<hostname>/<pid>` of the Ion process that owns a warm container. */
export const WARM_OWNER_LABEL = 'ion.warm.owner';

/** Options of {@link warmContainerExecutor}: the docker executor's, plus where slots live. */
export interface WarmContainerOptions {
  /** The Engine API address (`unix:///run/podman/podman.sock`, `tcp://host:2375`). */
  host?: string;
  /** The image that runs modules declared with a command and no image. */
  runtimeImage: string;
  /** Host directories mounted read-only at the same path into runtime-image containers. */
  runtimeMounts?: string[];
  /** Time between SIGTERM and SIGKILL, and for a graceful exit. Default 2000. */
  stopGraceMs?: number;
  /** A missing image asks for no retry sooner than this. Default 60000. */
  imageRetryDelayMs?: number;
  /** Processes a container may hold at once. Default 4096. */
  pidsLimit?: number;
  /**
   * Where each slot's job directory lives: on the job directories' filesystem (the data dir),
   * so a job's files move in and out by rename. Default the OS tmpdir (then they are copied).
   */
  homeDir?: string;
  /** How much of the job's output `logTail` keeps, in bytes. Default 8192. */
  logTailBytes?: number;
  /** How long Ion waits after `done` for the end marks on stdout and stderr. Default 2000. */
  markWaitMs?: number;
  logger?: Logger;
}

/**
 * The executor of warm modules on the docker job host: the warm pool and job lifecycle of
 * {@link WarmExecutor}, each slot a long-lived container ({@link WarmContainer}).
 */
export function warmContainerExecutor(options: WarmContainerOptions): WarmExecutor {
  return new WarmExecutor({
    launcher: new WarmContainerLauncher(options),
    ...(options.logTailBytes === undefined ? {} : { logTailBytes: options.logTailBytes }),
    ...(options.markWaitMs === undefined ? {} : { markWaitMs: options.markWaitMs }),
    ...(options.logger === undefined ? {} : { logger: options.logger }),
  });
}

/**
 * Starts warm slots as containers, created as the docker executor creates a cold attempt's
 * (same image, command, user, network, limits, `Init`, read-only inputs), except: the
 * slot's own directory is mounted at `/ion`, the control socket's at `/ion-control`, the
 * labels say `ion.executor=docker-warm` and the owning Ion process, and the environment
 * holds `ION_WARM=1` and `ION_CONTROL_SOCKET` instead of a job's variables.
 */
export class WarmContainerLauncher implements WarmLauncher {
  readonly kind = 'docker-warm';
  readonly host: string;
  private readonly docker: Docker;
  private readonly owner = `${hostname()}/${process.pid}`;

  constructor(private readonly options: WarmContainerOptions) {
    this.host = options.host ?? DEFAULT_DOCKER_HOST;
    this.docker = dockerClient(this.host);
  }

  /** Checks the engine, and removes warm containers left by a dead Ion process of this host. */
  async start(): Promise<void> {
    try {
      await this.docker.ping();
    } catch (err) {
      throw this.fault('cannot reach the Docker engine', err);
    }
    await this.sweep().catch((err: unknown) =>
      this.options.logger?.warn({ err: engineMessage(err) }, 'warm container sweep failed'),
    );
  }

  async close(): Promise<void> {}

  /** Removes the warm containers whose owner ran on this host and is gone; returns how many. */
  async sweep(): Promise<number> {
    const found = await this.docker.listContainers({
      all: true,
      filters: { label: [`${LABEL.executor}=${WARM_EXECUTOR_LABEL}`] },
    });
    let removed = 0;
    for (const info of found) {
      const [host, pid] = (info.Labels[WARM_OWNER_LABEL] ?? '').split('/');
      if (host !== hostname() || pid === undefined || Number(pid) === process.pid) continue;
      if (processAlive(Number(pid))) continue;
      await this.docker
        .getContainer(info.Id)
        .remove({ force: true, v: true })
        .then(() => (removed += 1))
        .catch(() => undefined);
    }
    return removed;
  }

  moduleDir(): string {
    return CONTAINER_JOB_DIR;
  }

  check(spec: ExecutionSpec): void {
    if (spec.container?.image === undefined && spec.command.length === 0)
      throw new ValidationError(
        'warm container executor: a module without an image needs a command',
        [{ path: 'command', message: 'must not be empty without an image' }],
      );
  }

  identity(spec: ExecutionSpec): unknown {
    return [spec.command, spec.args ?? [], this.settings(spec)];
  }

  private settings(spec: ExecutionSpec): ContainerSettings {
    const settings: ContainerSettings = {
      pull: 'if-not-present',
      network: 'none',
      resources: {},
      readOnlyPaths: [],
      ...spec.container,
    };
    if (settings.image === undefined && this.options.runtimeMounts !== undefined)
      settings.readOnlyPaths = [
        ...new Set([...settings.readOnlyPaths, ...this.options.runtimeMounts]),
      ];
    return settings;
  }

  async launch(launch: WarmLaunch): Promise<WarmContainer | WarmRefusal> {
    const { spec, module, version } = launch;
    const settings = this.settings(spec);
    const image = settings.image ?? this.options.runtimeImage;
    const root = await mkdtemp(join(this.options.homeDir ?? tmpdir(), 'ion-warm-'));
    const controlDir = await mkdtemp(join(this.controlHome(), 'ion-warm-control-'));
    let server: Server | null = null;
    let container: Docker.Container | null = null;
    const cleanup = async (): Promise<void> => {
      server?.close();
      await container?.remove({ force: true, v: true }).catch(() => undefined);
      await rm(root, { recursive: true, force: true }).catch(() => undefined);
      await rm(controlDir, { recursive: true, force: true }).catch(() => undefined);
    };
    try {
      const jobDir = join(root, 'ion');
      await mkdir(join(jobDir, 'in'), { recursive: true });
      // A non-root container user must reach the socket: the directory is searchable, the
      // socket writable by all (it only ever speaks the warm protocol).
      await chmod(controlDir, 0o711);
      const socketPath = join(controlDir, 'control.sock');
      server = await listen(socketPath);
      await chmod(socketPath, 0o666);

      const name = containerName(`warm-${module}`, version, randomBytes(4).toString('hex'));
      const body = createOptions({
        spec: {
          ...spec,
          workDir: jobDir,
          env: {
            ...launch.processEnv,
            ION_WARM: '1',
            ION_CONTROL_SOCKET: CONTAINER_CONTROL_SOCKET,
          },
        },
        settings,
        image,
        name,
        pidsLimit: this.options.pidsLimit ?? 4096,
      });
      body.Labels = {
        [LABEL.module]: module,
        [LABEL.executor]: WARM_EXECUTOR_LABEL,
        [WARM_OWNER_LABEL]: this.owner,
        'ion.warm.version': String(version),
      };
      body.HostConfig?.Mounts?.push({
        Type: 'bind',
        Source: controlDir,
        Target: CONTAINER_CONTROL_DIR,
      });
      const made = await this.create(body, image, settings);
      if (typeof made === 'string') {
        await cleanup();
        return {
          refused: true,
          exitCode: null,
          message: made,
          failure: {
            code: 'image_unavailable',
            message: made,
            retryAfterMs: this.options.imageRetryDelayMs ?? 60_000,
          },
        };
      }
      container = made;
      const output = await container.attach({ stream: true, stdout: true, stderr: true });
      const slot = new WarmContainer({
        key: launch.key,
        module,
        version,
        outside: launch.outside,
        docker: this.docker,
        container,
        output,
        server,
        root,
        controlDir,
        stopGraceMs: this.options.stopGraceMs ?? 2000,
        openOutputs: !isRootUser(settings.user),
        ...(settings.resources.memoryBytes === undefined
          ? {}
          : { memoryBytes: settings.resources.memoryBytes }),
        ...(this.options.logger === undefined ? {} : { logger: this.options.logger }),
      });
      try {
        await container.start();
      } catch (err) {
        await slot.abandon();
        await slot.dispose();
        if (isConnectionError(err)) throw this.fault('cannot start a warm container', err);
        // A command missing from the image is the module's fault, as a shell says it.
        const message = engineMessage(err);
        return {
          refused: true,
          exitCode: /not found|no such file/i.test(message) ? 127 : 126,
          message: `the warm container could not start: ${message}`,
        };
      }
      slot.begin();
      return slot;
    } catch (err) {
      await cleanup();
      throw err instanceof UnavailableError
        ? err
        : this.fault(`cannot create a warm container of ${module}`, err);
    }
  }

  /**
   * Where control socket directories go: beside the slots (the data dir, which an engine
   * outside Ion's own container must see anyway for the job directories), unless the
   * socket's path would pass the ~107 bytes a unix socket address holds: then the tmpdir.
   */
  private controlHome(): string {
    const home = this.options.homeDir ?? tmpdir();
    const longest = join(home, 'ion-warm-control-XXXXXX', 'control.sock');
    return Buffer.byteLength(longest) <= 100 ? home : tmpdir();
  }

  /** Creates the container, pulling its image as the pull policy says; a string says why not. */
  private async create(
    body: Docker.ContainerCreateOptions,
    image: string,
    settings: ContainerSettings,
  ): Promise<Docker.Container | string> {
    if (settings.pull === 'always') {
      const missing = await ensureImage(this.docker, image, 'always');
      if (missing !== null) return missing;
    }
    try {
      return await this.docker.createContainer(body);
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
      const missing = await ensureImage(this.docker, image, settings.pull);
      if (missing !== null) return missing;
      try {
        return await this.docker.createContainer(body);
      } catch (again) {
        if (statusOf(again) === 404)
          return `image ${image} does not exist: ${engineMessage(again)}`;
        throw again;
      }
    }
  }

  private fault(what: string, err: unknown): UnavailableError {
    const where = isConnectionError(err)
      ? ` at ${this.host} (set DOCKER_HOST or executor.docker.host)`
      : '';
    return new UnavailableError(`warm container executor: ${what}${where}: ${engineMessage(err)}`, {
      cause: err,
    });
  }
}

function listen(path: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      server.on('error', () => undefined);
      resolve(server);
    });
  });
}
