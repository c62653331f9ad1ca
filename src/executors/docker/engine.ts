import Docker from 'dockerode';
import { ValidationError, errorMessage } from '../../core/errors.js';

/** The Docker Engine API endpoint when neither `executor.docker.host` nor DOCKER_HOST is set. */
export const DEFAULT_DOCKER_HOST = 'unix:///var/run/docker.sock';

/**
 * A dockerode client for a Docker Engine API address as DOCKER_HOST spells it:
 * `unix:///path/docker.sock` (dockerd, or podman's Docker-compatible socket), a bare socket
 * path, or `tcp://host:port` / `http(s)://host:port`. `ssh://` is not supported.
 */
export function dockerClient(host: string): Docker {
  if (host.startsWith('unix://')) return new Docker({ socketPath: host.slice('unix://'.length) });
  if (host.startsWith('/')) return new Docker({ socketPath: host });
  const match = /^(tcp|http|https):\/\/([^:/]+|\[[^\]]+\])(?::(\d+))?\/?$/.exec(host);
  if (match === null) {
    throw new ValidationError(
      `docker executor: cannot use DOCKER_HOST ${host}: expected unix:///path/to/docker.sock or tcp://host:port`,
      [{ path: 'executor.docker.host', message: 'must be unix://PATH or tcp://HOST:PORT' }],
    );
  }
  const [, scheme, name, port] = match;
  return new Docker({
    host: name!,
    port: port === undefined ? (scheme === 'https' ? 2376 : 2375) : Number(port),
    protocol: scheme === 'https' ? 'https' : 'http',
  });
}

/** The HTTP status of a failed Engine API call (404 for a missing image or container). */
export function statusOf(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null || !('statusCode' in err)) return undefined;
  return typeof err.statusCode === 'number' ? err.statusCode : undefined;
}

/** The engine's own message of a failed call (its JSON `message`), else the error's text. */
export function engineMessage(err: unknown): string {
  if (typeof err === 'object' && err !== null && 'json' in err) {
    const json = err.json;
    if (typeof json === 'object' && json !== null && 'message' in json) {
      if (typeof json.message === 'string') return json.message.trim();
    }
  }
  const text = errorMessage(err);
  // dockerode prefixes "(HTTP code 404) no such container - " to the engine's message.
  return text.replace(/^\(HTTP code \d+\)\s*[^-]*-\s*/, '').trim();
}

/** True for an error that says the engine could not be reached at all (socket, TCP). */
export function isConnectionError(err: unknown): boolean {
  const code =
    typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : undefined;
  return (
    code !== undefined &&
    [
      'ENOENT',
      'ECONNREFUSED',
      'ECONNRESET',
      'EACCES',
      'EHOSTUNREACH',
      'ETIMEDOUT',
      'EPIPE',
    ].includes(code)
  );
}

/** Why an image cannot be used, or null when it is present (pulled if the policy says so). */
export async function ensureImage(
  docker: Docker,
  image: string,
  pull: 'always' | 'if-not-present' | 'never',
): Promise<string | null> {
  if (pull !== 'always') {
    try {
      await docker.getImage(image).inspect();
      return null;
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
      if (pull === 'never')
        return `image ${image} is not present on the engine and its pull policy is never`;
    }
  }
  try {
    await pullImage(docker, image);
  } catch (err) {
    if (isConnectionError(err)) throw err;
    return `image ${image} cannot be pulled: ${engineMessage(err)}`;
  }
  // podman's compatible API may end a failed pull without an error event: look again.
  try {
    await docker.getImage(image).inspect();
    return null;
  } catch (err) {
    if (statusOf(err) !== 404) throw err;
    return `image ${image} cannot be pulled: the engine did not store it`;
  }
}

/** Pulls an image; rejects with the first error the engine reports in its progress stream. */
async function pullImage(docker: Docker, image: string): Promise<void> {
  const stream = await docker.pull(image);
  await new Promise<void>((resolve, reject) => {
    docker.modem.followProgress(stream, (err: Error | null) => (err ? reject(err) : resolve()));
  });
}

/**
 * Waits for the container to exit. The engine's wait answers at the exit; podman has been
 * seen not to answer for a container that exited as the wait arrived, so its state is also
 * read every second.
 */
export async function waitExit(container: Docker.Container): Promise<{ StatusCode?: number }> {
  const abort = new AbortController();
  let polling = true;
  const poll = async (): Promise<{ StatusCode?: number }> => {
    while (polling) {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const { State } = await container.inspect();
      if (!State.Running && State.Status !== 'created') return { StatusCode: State.ExitCode };
    }
    return {};
  };
  try {
    return await Promise.race([
      container.wait({ abortSignal: abort.signal }) as Promise<{ StatusCode?: number }>,
      poll(),
    ]);
  } finally {
    polling = false;
    abort.abort();
  }
}
