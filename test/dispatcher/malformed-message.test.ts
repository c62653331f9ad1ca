import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { IonApp } from '../../src/app/ion-app.js';
import { createLogger } from '../../src/app/logger.js';
import { loadConfig } from '../../src/config/config.js';
import { waitFor } from '../support/wait.js';

// A bus message the dispatcher cannot read is parked with a reason and never stops the
// module's consumer: the next good event still runs.
describe('a malformed bus message', () => {
  let dir: string;
  let app: IonApp;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ion-malformed-'));
    const config = loadConfig({ flags: { dataDir: dir, logLevel: 'silent' } });
    app = await IonApp.create(
      config,
      createLogger('silent'),
      { api: false, relay: true, workers: true },
      process.env,
    );
    await app.start();
  });

  afterEach(async () => {
    await app.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('is dead-lettered with a reason, and the consumer goes on with the next event', async () => {
    await app.control.applyPipeline({
      modules: [{ name: 'reader', subscribes: ['t.read'], run: { command: ['true'] }, retries: 0 }],
    });
    const { bus, store } = app.backends;
    await bus.publish({ id: 'not-an-event-1', topic: 't.read', body: 'this is not JSON' });
    await bus.publish({ id: 'not-an-event-2', topic: 't.read', body: '{"eventId": 42}' });
    const letters = await waitFor('both malformed messages to be dead-lettered', async () => {
      const found = await store.listDeadLetters({ module: 'reader' });
      return found.length === 2 ? found : undefined;
    });
    expect(
      letters.every((d) => d.eventId === null && d.reason.startsWith('message_malformed')),
    ).toBe(true);
    expect(letters.map((d) => d.reason).join('\n')).toContain('not JSON');

    const { event } = await app.control.publish({ type: 't.read' });
    const job = await waitFor('the next good event to run', async () => {
      const [j] = await store.listJobs({ eventId: event.eventId });
      return j?.state === 'succeeded' ? j : undefined;
    });
    expect(job.module).toBe('reader');
  });

  it('keeps consuming after its subscription went missing and came back', async () => {
    await app.control.applyPipeline({
      modules: [{ name: 'reader', subscribes: ['t.read'], run: { command: ['true'] }, retries: 0 }],
    });
    const { bus, store } = app.backends;
    // The subscription vanishes under the running consumer (as a broker losing it would),
    // which makes its pull fail; then it is back.
    await bus.deleteSubscription('reader');
    await bus.ensureSubscription({ name: 'reader', topics: ['t.read'], leaseMs: 30_000 });
    const { event } = await app.control.publish({ type: 't.read' });
    const job = await waitFor('the event published after the outage to run', async () => {
      const [j] = await store.listJobs({ eventId: event.eventId });
      return j?.state === 'succeeded' ? j : undefined;
    });
    expect(job.module).toBe('reader');
  });
});
