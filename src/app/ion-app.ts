import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { IonConfig } from '../config/config.js';
import { errorMessage } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { TokenService } from '../core/tokens.js';
import { WorkerPool } from '../dispatcher/worker-pool.js';
import { OutboxRelay } from '../relay/outbox-relay.js';
import { SettlementRelay } from '../relay/settlement-relay.js';
import { buildServer, type IonServer } from '../api/server.js';
import { metricsOf } from '../api/metrics.js';
import { Control } from './control.js';
import { sweepAttemptFiles } from './attempt-sweep.js';
import { attemptLiveness, createBackends, type Backends } from './backends.js';
import { readTlsFiles } from '../config/tls.js';
import { startTelemetry, type Telemetry } from '../telemetry/telemetry.js';
import { Tracing } from '../telemetry/tracing.js';
import { tracePublishes } from '../telemetry/publish-spans.js';

/** Which parts of Ion this process runs. `ion up` runs all three. */
export interface Roles {
  api: boolean;
  relay: boolean;
  workers: boolean;
  /** With `workers`: only these modules. */
  modules?: readonly string[];
}

/** The environment variables a module inherits from the platform: nothing secret. */
const INHERITED_ENV = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR', 'USER'] as const;

export function moduleBaseEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const base: Record<string, string> = {};
  for (const name of INHERITED_ENV) {
    const value = env[name];
    if (value !== undefined) base[name] = value;
  }
  base.PATH ??= '/usr/local/bin:/usr/bin:/bin';
  return base;
}

/**
 * The composition root: builds everything from config once, starts the parts this process
 * plays, and stops them in the reverse order.
 */
export class IonApp {
  readonly backends: Backends;
  readonly control: Control;
  /** API tokens (hashes in the document store); see docs/auth.md. */
  readonly tokens: TokenService;
  readonly relay: OutboxRelay | null;
  /** Raises ion.trace.settled for settled traces; runs wherever the outbox relay runs. */
  readonly settler: SettlementRelay | null;
  readonly pool: WorkerPool | null;
  readonly server: IonServer | null;
  /** Tracing as the `OTEL_*` variables say; off (no SDK loaded) when none are set. */
  readonly telemetry: Telemetry;
  private started = false;
  private stopping: Promise<void> | null = null;

  /**
   * Builds the backends the config names (loading their drivers) and the app around them.
   * Tracing starts first, so the drivers loaded next and the API server are instrumented;
   * `options.telemetry` replaces what `env` says (tests: an in-memory exporter).
   */
  static async create(
    config: IonConfig,
    logger: Logger,
    roles: Roles,
    env: NodeJS.ProcessEnv,
    options: { telemetry?: Telemetry } = {},
  ): Promise<IonApp> {
    // A TLS file that cannot be used fails before any backend is opened.
    if (roles.api) readTlsFiles(config.api);
    const telemetry = options.telemetry ?? (await startTelemetry(env, logger));
    try {
      const backends = await createBackends(config, logger);
      return new IonApp(config, logger, roles, env, backends, telemetry);
    } catch (err) {
      await telemetry.shutdown();
      throw err;
    }
  }

  constructor(
    readonly config: IonConfig,
    readonly logger: Logger,
    readonly roles: Roles,
    env: NodeJS.ProcessEnv,
    backends: Backends,
    telemetry: Telemetry = { tracing: Tracing.off, shutdown: () => Promise.resolve() },
  ) {
    this.backends = backends;
    this.telemetry = telemetry;
    const { tracing } = telemetry;
    const { bus, store, blobs, jobHosts } = this.backends;
    this.relay = roles.relay
      ? new OutboxRelay(store, bus, logger.child({ component: 'relay' }), { tracing })
      : null;
    this.settler = roles.relay
      ? new SettlementRelay(store, blobs, logger.child({ component: 'settler' }), {
          onRaised: () => this.relay?.wake(),
        })
      : null;
    this.pool = roles.workers
      ? new WorkerPool(
          {
            store,
            bus,
            blobs,
            jobHosts,
            logger: logger.child({ component: 'dispatcher' }),
            workerId: `${hostname()}/${process.pid}/${newId().slice(0, 8)}`,
            dataDir: config.dataDir,
            baseEnv: moduleBaseEnv(env),
            settings: config.dispatcher,
            tracing,
            onCommitted: () => this.relay?.wake(),
            onAttemptFinished: (info) => {
              // A job that ended may have settled its trace.
              if (info.outcome !== 'failed' && info.outcome !== 'released') this.settler?.wake();
              this.control.noteAttemptFinished(info);
            },
          },
          roles.modules === undefined ? {} : { modules: roles.modules },
        )
      : null;
    this.control = new Control({
      store,
      bus,
      blobs,
      leaseMs: config.dispatcher.leaseMs,
      onPublished: () => this.relay?.wake(),
      onModulesChanged: () => this.pool?.refresh(),
    });
    // Root events published through this process start their correlation's trace.
    tracePublishes(this.control, tracing);
    this.tokens = new TokenService(store);
    // Metrics count from start-up, not from the first scrape.
    if (roles.api) metricsOf(this.control, { bus, logger: logger.child({ component: 'metrics' }) });
    this.server = roles.api
      ? buildServer({
          control: this.control,
          logger: logger.child({ component: 'api' }),
          bodyLimitBytes: config.api.bodyLimitBytes,
          timeouts: config.api, // slow clients: headers, request, idle, upload rate
          auth: { mode: config.api.auth, tokens: this.tokens },
          // HTTPS when api.tlsCertFile/tlsKeyFile are set; unreadable files fail here, by name.
          https: readTlsFiles(config.api),
        })
      : null;
  }

  /**
   * Starts backends, then relay and workers, then the API (listening). Returns the API URL,
   * `https://` when TLS is configured.
   */
  async start(): Promise<string | null> {
    const { bus, store, blobs, jobHosts } = this.backends;
    await store.start();
    await bus.start();
    await blobs.start();
    if (this.pool !== null) {
      await jobHosts.start();
      // Before taking work: what attempts of a killed worker left is removed, never a live one's.
      await sweepAttemptFiles({
        dataDir: this.config.dataDir,
        isAttemptLive: attemptLiveness(store),
        keepJobDirs: this.config.dispatcher.keepJobDirs,
        logger: this.logger,
      }).catch((err: unknown) =>
        this.logger.warn({ err: errorMessage(err) }, 'could not sweep the files of dead attempts'),
      );
    }
    this.started = true;
    this.relay?.start();
    this.settler?.start();
    await this.pool?.start();
    if (this.server === null) return null;
    return this.server.listen({ host: this.config.api.host, port: this.config.api.port });
  }

  /** Graceful: stop the API, drain workers up to the grace period, stop the relay, close backends. */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    const step = async (name: string, fn: () => Promise<unknown>): Promise<void> => {
      try {
        await fn();
      } catch (err) {
        this.logger.warn({ err: errorMessage(err) }, `error while stopping ${name}`);
      }
    };
    if (this.server !== null) await step('api', () => this.server!.close());
    if (this.pool !== null) await step('workers', () => this.pool!.stop());
    if (this.settler !== null) await step('settler', () => this.settler!.stop());
    if (this.relay !== null) await step('relay', () => this.relay!.stop());
    if (this.started) {
      const { bus, store, blobs, jobHosts } = this.backends;
      await step('executor', () => jobHosts.close());
      await step('bus', () => bus.close());
      await step('blobs', () => blobs.close());
      await step('store', () => store.close());
    }
    // Last: the spans of the shutdown itself are flushed too.
    await step('telemetry', () => this.telemetry.shutdown());
  }
}
