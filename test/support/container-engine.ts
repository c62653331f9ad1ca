import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import Docker from 'dockerode';

/**
 * Container engines for the tests of the Docker and Kubernetes executors: podman (its
 * Docker-compatible API from `podman system service`) and dockerd, each on a unix socket
 * under /run/ion-test, with the images `ion/runtime:local` and `ion/ion:local` present.
 *
 * The work is done by two scripts that .ci/run uses too: `scripts/engines.sh` reuses a
 * socket that answers or starts the daemon (under a lock, so parallel vitest forks start
 * one daemon) and records who started it; `scripts/images.sh` builds whichever image is
 * missing or stale (a second or so when all are current). The global setup
 * (`container-engine-setup.ts`) stops, at the end of the run, only the daemons this run
 * started; set ION_KEEP_ENGINES=1 to leave them running for the next run.
 *
 * A cold first call debootstraps the base image (one to three minutes on a busy machine):
 * run `npm run images` once beforehand, or give the `beforeAll` that calls this a long
 * timeout (the tests here use {@link ENGINE_SETUP_TIMEOUT_MS}).
 */
export interface ContainerEngine {
  kind: 'podman' | 'docker';
  /** For dockerode (`dockerClient`) and DOCKER_HOST, e.g. `unix:///run/ion-test/podman.sock`. */
  dockerHost: string;
  /** The CLI: `podman` or `docker`. */
  cli: string;
  /** Environment the CLI needs on top of process.env (CONTAINERS_CONF, DOCKER_HOST ...). */
  cliEnv: Record<string, string>;
}

/** The image that runs modules declared with a command and no image. */
export const RUNTIME_IMAGE = 'ion/runtime:local';
/** The image with Ion itself (`ion handler prepare|collect`), FROM the runtime image. */
export const ION_IMAGE = 'ion/ion:local';
/** The label every container Ion starts for a job carries. */
export const JOB_LABEL = 'ion.job';
/** A `beforeAll` timeout that covers a cold image build on a loaded machine. */
export const ENGINE_SETUP_TIMEOUT_MS = 600_000;

const run = promisify(execFile);
const scripts = fileURLToPath(new URL('../../scripts/', import.meta.url));
const engines = new Map<ContainerEngine['kind'], Promise<ContainerEngine>>();

/** A running podman service (Docker-compatible API) with Ion's images in its storage. */
export function podmanEngine(): Promise<ContainerEngine> {
  return engine('podman');
}

/** A running dockerd with Ion's images. */
export function dockerEngine(): Promise<ContainerEngine> {
  return engine('docker');
}

function engine(kind: ContainerEngine['kind']): Promise<ContainerEngine> {
  let pending = engines.get(kind);
  if (!pending) {
    pending = startEngine(kind);
    // A failure is reported to every caller that asked meanwhile; the next call tries again.
    pending.catch(() => engines.delete(kind));
    engines.set(kind, pending);
  }
  return pending;
}

async function startEngine(kind: ContainerEngine['kind']): Promise<ContainerEngine> {
  await script('engines.sh', ['start', kind], {}, 120_000);
  const { stdout } = await script('engines.sh', ['env', kind], {}, 10_000);
  const cliEnv = Object.fromEntries(
    stdout
      .trim()
      .split('\n')
      .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
  ) as Record<string, string>;
  const dockerHost = cliEnv.DOCKER_HOST;
  if (!dockerHost) throw new Error(`scripts/engines.sh env ${kind} printed no DOCKER_HOST`);
  // podman's CLI must not get DOCKER_HOST (it ignores it, but a docker CLI on PATH would not).
  if (kind === 'podman') delete cliEnv.DOCKER_HOST;
  await script(
    'images.sh',
    ['--engine', kind],
    { ...cliEnv, DOCKER_HOST: dockerHost },
    ENGINE_SETUP_TIMEOUT_MS,
  );
  return { kind, dockerHost, cli: kind, cliEnv };
}

async function script(
  name: string,
  args: string[],
  env: Record<string, string>,
  timeoutMs: number,
): Promise<{ stdout: string }> {
  try {
    const { stdout } = await run(`${scripts}${name}`, args, {
      env: { ...process.env, ...env },
      timeout: timeoutMs,
      maxBuffer: 16 * 1024 * 1024,
    });
    return { stdout };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    const output = `${e.stdout ?? ''}${e.stderr ?? ''}`.trim();
    throw new Error(`scripts/${name} ${args.join(' ')} failed: ${e.message}\n${output}`, {
      cause: err,
    });
  }
}

/** A dockerode client on the engine's socket. */
export function dockerClient(engine: ContainerEngine): Docker {
  return new Docker({ socketPath: engine.dockerHost.replace(/^unix:\/\//, '') });
}

/**
 * Containers (running or not) labelled `ion.job`, or `ion.job=<value>` when `value` is given:
 * for "no container left behind" assertions.
 */
export async function jobContainers(
  engine: ContainerEngine,
  value?: string,
): Promise<Docker.ContainerInfo[]> {
  const label = value === undefined ? JOB_LABEL : `${JOB_LABEL}=${value}`;
  return dockerClient(engine).listContainers({ all: true, filters: { label: [label] } });
}

/** Force-removes the containers {@link jobContainers} finds; returns how many it removed. */
export async function removeJobContainers(
  engine: ContainerEngine,
  value?: string,
): Promise<number> {
  const docker = dockerClient(engine);
  const found = await jobContainers(engine, value);
  await Promise.all(
    found.map((c) =>
      docker
        .getContainer(c.Id)
        .remove({ force: true, v: true })
        .catch((err: { statusCode?: number }) => {
          if (err.statusCode !== 404) throw err;
        }),
    ),
  );
  return found.length;
}

/**
 * Stops the daemons that the run identified by `owner` started (see scripts/engines.sh); a
 * daemon started by someone else (.ci/run, a developer, another run) is left running.
 */
export async function stopEnginesStartedBy(owner: string): Promise<string[]> {
  const report: string[] = [];
  for (const kind of ['podman', 'docker'] as const) {
    const { stdout } = await script('engines.sh', ['stop', kind, '--owner', owner], {}, 60_000);
    report.push(`${kind}: ${stdout.trim()}`);
  }
  return report;
}
