import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { traceIdFor } from '../../src/telemetry/trace-ids.js';
import { waitFor } from '../support/wait.js';
import { cleanup, cli, startIon, tempDir, writePipeline, type IonProcess } from './harness.js';

/** One span as the OTLP/JSON encoding carries it (ids in hex). */
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  links?: { traceId: string; spanId: string }[];
  attributes?: { key: string; value: { stringValue?: string; intValue?: string | number } }[];
  service: string;
  scope: string;
}

/**
 * A small OTLP/HTTP receiver on loopback: decodes the JSON encoding (what Ion's exporter
 * sends, and what the Python module below posts) and keeps every span with its service name.
 */
async function startReceiver(): Promise<{
  url: string;
  spans: OtlpSpan[];
  errors: string[];
  server: Server;
}> {
  const spans: OtlpSpan[] = [];
  const errors: string[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v1/traces') {
        res.writeHead(404).end();
        return;
      }
      if (!(req.headers['content-type'] ?? '').startsWith('application/json')) {
        errors.push(`unexpected content-type ${req.headers['content-type']}`);
        res.writeHead(415).end();
        return;
      }
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
          resourceSpans?: {
            resource?: { attributes?: { key: string; value: { stringValue?: string } }[] };
            scopeSpans?: {
              scope?: { name?: string };
              spans?: Omit<OtlpSpan, 'service' | 'scope'>[];
            }[];
          }[];
        };
        for (const rs of body.resourceSpans ?? []) {
          const service =
            rs.resource?.attributes?.find((a) => a.key === 'service.name')?.value.stringValue ?? '';
          for (const ss of rs.scopeSpans ?? [])
            for (const span of ss.spans ?? [])
              spans.push({ ...span, service, scope: ss.scope?.name ?? '' });
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      } catch (err) {
        errors.push(String(err));
        res.writeHead(400).end();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, spans, errors, server };
}

// A Python module that joins the job's trace by reading TRACEPARENT and posting its own span
// as OTLP/JSON with the standard library only, then raises an event for a second module.
const PYTHON_MODULE = `
import json, os, secrets, time, urllib.request
traceparent = os.environ.get("TRACEPARENT")
if traceparent:
    _, trace_id, parent_id, flags = traceparent.split("-")
    start = time.time_ns()
    time.sleep(0.01)
    span = {
        "traceId": trace_id, "spanId": secrets.token_hex(8), "parentSpanId": parent_id,
        "name": "py.work", "kind": 1,
        "startTimeUnixNano": str(start), "endTimeUnixNano": str(time.time_ns()),
        "attributes": [{"key": "ion.event.id", "value": {"stringValue": os.environ["ION_EVENT_ID"]}}],
    }
    body = {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "py-module"}}]},
        "scopeSpans": [{"scope": {"name": "py-module"}, "spans": [span]}],
    }]}
    request = urllib.request.Request(
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + "/v1/traces",
        data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(request, timeout=10).read()
with open("out/events/done.json", "w") as f:
    json.dump([{"key": "eventType", "value": "t.done"}], f)
`;

describe('tracing through a real ion up', () => {
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let ion: IonProcess;
  let dir: string;

  beforeAll(async () => {
    receiver = await startReceiver();
    dir = await tempDir('ion-tracing-');
    await writeFile(join(dir, 'traced.py'), PYTHON_MODULE);
    const pipeline = await writePipeline(
      dir,
      `modules:
  - name: traced
    subscribes: [t.traced]
    publishes: [t.done]
    run: { command: [python3, ${join(dir, 'traced.py')}] }
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: '${receiver.url}' }
    retries: 0
  - name: after
    subscribes: [t.done]
    run: { command: [sh, -c, 'true'] }
    retries: 0
`,
    );
    ion = await startIon({
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_SERVICE_NAME: 'ion-e2e' },
    });
    const applied = await cli(['apply', '-f', pipeline], { apiUrl: ion.url });
    expect(applied.code).toBe(0);
  });

  afterAll(async () => {
    await ion?.stop();
    await new Promise((resolve) => receiver?.server.close(resolve));
    await cleanup(ion?.dataDir ?? '', dir ?? '');
  });

  it('sends the server, worker and module spans of one correlation id in one trace', async () => {
    const { eventId, correlationId } = await ion.client.publish({ type: 't.traced' });
    const traceId = traceIdFor(correlationId);
    const inTrace = (): OtlpSpan[] => receiver.spans.filter((s) => s.traceId === traceId);
    const spans = await waitFor(
      'the spans of both jobs and the module to arrive',
      () => {
        const found = inTrace();
        const attempts = found.filter((s) => s.name === 'ion.job.attempt');
        const py = found.some((s) => s.name === 'py.work');
        return attempts.length === 2 && py && found.some((s) => s.name === 'ion.publish')
          ? found
          : undefined;
      },
      90_000,
    );
    expect(receiver.errors).toEqual([]);
    const names = new Set(spans.map((s) => s.name));
    for (const name of [
      'ion.publish',
      'ion.relay.publish',
      'ion.job.attempt',
      'ion.job.prepare',
      'ion.job.run',
      'ion.job.commit',
      'py.work',
    ])
      expect(names).toContain(name);
    // Ion's spans under its service name, the module's under its own.
    expect(spans.find((s) => s.name === 'ion.publish')?.service).toBe('ion-e2e');
    expect(spans.find((s) => s.name === 'py.work')?.service).toBe('py-module');

    // The module's span is a child of its job's run span.
    const py = spans.find((s) => s.name === 'py.work')!;
    const parent = spans.find((s) => s.spanId === py.parentSpanId);
    expect(parent?.name).toBe('ion.job.run');
    const attempt = spans.find((s) => s.spanId === parent?.parentSpanId);
    expect(attempt?.name).toBe('ion.job.attempt');
    expect(attempt?.attributes?.find((a) => a.key === 'ion.module')?.value.stringValue).toBe(
      'traced',
    );

    // The publish span is the root and links to the HTTP request Fastify traced.
    const publish = spans.find((s) => s.name === 'ion.publish')!;
    expect(publish.parentSpanId ?? '').toBe('');
    expect(publish.attributes?.find((a) => a.key === 'ion.event.id')?.value.stringValue).toBe(
      eventId,
    );
    const request = await waitFor('the HTTP request span of the publish', () =>
      receiver.spans.find((s) => publish.links?.some((l) => l.spanId === s.spanId)),
    );
    expect(request.scope).toContain('fastify');
  });
});
