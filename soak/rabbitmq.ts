import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { serverProcess } from '../test/support/server-process.js';
import { accepts, freePort } from '../test/support/tcp-proxy.js';

const run = promisify(execFile);

/**
 * A private RabbitMQ node, run from the machine's RabbitMQ install as a child process, for the
 * soak and the tests that stop and restart the broker. It never touches the shared service
 * (`rabbit@localhost` on 5672/25672, data in /var/lib/rabbitmq): its own node name
 * (`ion-soak-<random>@localhost`), its own AMQP and distribution ports (free ports, on
 * 127.0.0.1), its own data, log and pid files under a temp directory, its own config file
 * (so /etc/rabbitmq/rabbitmq.conf's listener on 5672 is not read), no plugins (so no
 * management or Prometheus listener), and its own Erlang cookie in its own HOME (so
 * `rabbitmqctl` reaches it with the same environment, see {@link PrivateRabbitMq.ctl}). It
 * registers its name with the machine's epmd (port 4369), as every local node does.
 *
 * `restart()` keeps the node name, ports and data directory, so durable queues and persistent
 * messages survive it as they would a real broker restart.
 */
export interface PrivateRabbitMq {
  nodeName: string;
  /** AMQP port. */
  port: number;
  /** Erlang distribution port (rabbitmqctl talks to the node there). */
  distPort: number;
  url: string;
  /** Holds data (mnesia), logs, pid file, config, enabled-plugins file and HOME. */
  dir: string;
  /** The current `rabbitmq-server` process (undefined while stopped). */
  readonly proc: ChildProcess | undefined;
  /** Everything every run of the node printed (tail). */
  output(): string;
  /** Clean stop of this node only (SIGTERM, then SIGKILL after 30 s); waits until AMQP refuses. */
  stop(): Promise<void>;
  /** Starts it again (same name, ports, data); waits until an AMQP client can connect. */
  start(): Promise<void>;
  /** stop() then start(). */
  restart(): Promise<void>;
  /** `rabbitmqctl -n <node> ...args` with the node's environment; resolves with stdout. */
  ctl(...args: string[]): Promise<string>;
  /** Stops it (SIGKILL of its process group if it ignores SIGTERM) and removes `dir`. */
  dispose(): Promise<void>;
}

/** Where the RabbitMQ scripts are (Debian's /usr/sbin ones switch to the `rabbitmq` user). */
const SBIN = process.env.ION_TEST_RABBITMQ_SBIN ?? '/usr/lib/rabbitmq/bin';

async function amqpAnswers(url: string): Promise<boolean> {
  const amqp = await import('amqplib');
  try {
    const conn = await amqp.connect(url, { timeout: 2_000 });
    await conn.close().catch(() => undefined);
    return true;
  } catch {
    return false;
  }
}

export async function startRabbitMq(
  options: { timeoutMs?: number; parentDir?: string } = {},
): Promise<PrivateRabbitMq> {
  const timeoutMs = options.timeoutMs ?? 90_000;
  const dir = await mkdtemp(join(options.parentDir ?? tmpdir(), 'ion-rabbitmq-'));
  const nodeName = `ion-soak-${randomBytes(5).toString('hex')}@localhost`;
  const port = await freePort();
  let distPort = await freePort();
  while (distPort === port) distPort = await freePort();
  const url = `amqp://guest:guest@127.0.0.1:${port}`;
  const home = join(dir, 'home');

  // Everything RabbitMQ's scripts read, pointed at `dir`; inherited RABBITMQ_* settings dropped.
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env))
    if (v !== undefined && !k.startsWith('RABBITMQ_') && k !== 'ERL_FLAGS') env[k] = v;
  Object.assign(env, {
    HOME: home,
    RABBITMQ_NODENAME: nodeName,
    RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_CONF_ENV_FILE: join(dir, 'rabbitmq-env.conf'),
    RABBITMQ_CONFIG_FILE: join(dir, 'rabbitmq.conf'),
    RABBITMQ_ADVANCED_CONFIG_FILE: join(dir, 'advanced.config'),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
    RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: join(dir, 'log'),
    RABBITMQ_PID_FILE: join(dir, 'rabbitmq.pid'),
    ERL_EPMD_ADDRESS: '127.0.0.1',
    // The distribution listener on loopback only (the default binds every interface).
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}',
  });

  const prepare = async (): Promise<void> => {
    await mkdir(home, { recursive: true });
    await mkdir(join(dir, 'mnesia'), { recursive: true });
    await mkdir(join(dir, 'log'), { recursive: true });
    await writeFile(
      join(dir, 'rabbitmq-env.conf'),
      '# private node: settings come from the environment\n',
    );
    await writeFile(
      join(dir, 'rabbitmq.conf'),
      [
        `listeners.tcp.default = 127.0.0.1:${port}`,
        'log.console = true',
        'log.console.level = warning',
        'log.file.level = info',
        '',
      ].join('\n'),
    );
    await writeFile(join(dir, 'enabled_plugins'), '[].\n');
    // Erlang insists on a cookie file readable by its owner only.
    const cookie = join(home, '.erlang.cookie');
    await writeFile(cookie, randomBytes(15).toString('hex').toUpperCase());
    await chmod(cookie, 0o400);
  };

  const server = serverProcess({
    name: `RabbitMQ node ${nodeName}`,
    port,
    timeoutMs,
    pollMs: 250,
    spawn: () =>
      spawn(join(SBIN, 'rabbitmq-server'), [], {
        cwd: dir,
        env,
        detached: true, // its own process group, for the SIGKILL of last resort
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    ready: async () => (await accepts(port)) && (await amqpAnswers(url)),
    // The script's SIGTERM trap sends SIGTERM to the Erlang VM (a clean stop: queues closed,
    // messages on disk) and waits for it.
    killAfterMs: 30_000,
    kill: (child) => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    },
  });

  try {
    await prepare();
    await server.start();
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }

  return {
    nodeName,
    port,
    distPort,
    url,
    dir,
    get proc() {
      return server.proc;
    },
    output: server.output,
    stop: server.stop,
    start: server.start,
    async restart() {
      await server.stop();
      await server.start();
    },
    async ctl(...args: string[]) {
      const { stdout } = await run(join(SBIN, 'rabbitmqctl'), ['-n', nodeName, ...args], {
        env,
        cwd: dir,
      });
      return stdout;
    },
    async dispose() {
      await server.stop().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
