import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { afterAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/app/logger.js';
import { startTelemetry, type Telemetry } from '../../src/telemetry/telemetry.js';

// The official instrumentations Ion loads when tracing is on, against the real PostgreSQL on
// loopback: the driver is imported after tracing started, as the composition root does.
describe('the PostgreSQL instrumentation', () => {
  let telemetry: Telemetry | undefined;
  afterAll(async () => {
    await telemetry?.shutdown();
  });

  it('records the queries Ion makes inside its spans', async () => {
    const exporter = new InMemorySpanExporter();
    telemetry = await startTelemetry({}, createLogger('silent'), { exporter });
    const { default: pg } = await import('pg');
    const pool = new pg.Pool({ host: '127.0.0.1', port: 5432, user: 'postgres', database: 'test' });
    try {
      const { tracing } = telemetry;
      const outer = tracing.start('outer', { place: { traceOf: 'corr-pg' } });
      await tracing.within(outer, () => pool.query('select 1 as one'));
      outer.end();
    } finally {
      await pool.end();
    }
    const spans = exporter.getFinishedSpans();
    const outer = spans.find((s) => s.name === 'outer')!;
    const query = spans.find((s) => s.name.startsWith('pg.query'));
    expect(query?.parentSpanContext?.spanId).toBeDefined();
    expect(query?.spanContext().traceId).toBe(outer.spanContext().traceId);
  });
});
