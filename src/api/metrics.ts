import { Counter, Histogram, Registry } from 'prom-client';
import type { Control, ControlObserver } from '../app/control.js';

/** Upper bounds of the job duration histogram, in seconds: 10 ms to 1 hour. */
const DURATION_BUCKETS_SECONDS = [0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];

/**
 * Ion's Prometheus metrics, in a registry of their own (not prom-client's global one), so
 * every Ion app — and every test that builds one — counts separately. They count what this
 * process observes: events published through its control layer (API, gateway), attempts
 * run by its workers.
 */
export class IonMetrics {
  readonly registry = new Registry();
  readonly eventsPublished = new Counter({
    name: 'ion_events_published_total',
    help: 'Root events published through this API process (gateway, CloudEvents, /v1/events), by event type.',
    labelNames: ['type'] as const,
    registers: [this.registry],
  });
  readonly jobs = new Counter({
    name: 'ion_jobs_total',
    help: 'Job attempts finished by the workers of this process, by module and outcome (succeeded, failed, dead_lettered, released).',
    labelNames: ['module', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly jobDuration = new Histogram({
    name: 'ion_job_duration_seconds',
    help: 'How long module runs took, by module (attempts whose module never started are not observed).',
    labelNames: ['module'] as const,
    buckets: DURATION_BUCKETS_SECONDS,
    registers: [this.registry],
  });
  readonly deadLetters = new Counter({
    name: 'ion_dead_letters_total',
    help: 'Jobs dead-lettered by the workers of this process after their retries ran out, by module.',
    labelNames: ['module'] as const,
    registers: [this.registry],
  });

  /** Feeds the metrics; pass it to `Control.observe`. */
  readonly observer: ControlObserver = {
    eventPublished: (event) => {
      this.eventsPublished.inc({ type: event.type });
    },
    attemptFinished: ({ module, outcome, durationMs }) => {
      this.jobs.inc({ module, outcome });
      if (durationMs !== null) this.jobDuration.observe({ module }, durationMs / 1000);
      if (outcome === 'dead_lettered') this.deadLetters.inc({ module });
    },
  };

  /** The Prometheus text exposition of every metric. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

const byControl = new WeakMap<Control, IonMetrics>();

/**
 * The metrics of one control layer (one Ion app), created and attached on first use. The
 * composition root calls it at start-up so counting starts then; the server only calls it
 * when scraped, so building a server never touches the control layer.
 */
export function metricsOf(control: Control): IonMetrics {
  let metrics = byControl.get(control);
  if (metrics === undefined) {
    metrics = new IonMetrics();
    control.observe(metrics.observer);
    byControl.set(control, metrics);
  }
  return metrics;
}
