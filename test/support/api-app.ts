import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LightMyRequestResponse } from 'fastify';
import { expect } from 'vitest';
import { IonApp } from '../../src/app/ion-app.js';
import { createLogger } from '../../src/app/logger.js';
import { loadConfig } from '../../src/config/config.js';
import { childEventId, jobIdFor } from '../../src/core/ids.js';
import { nowIso } from '../../src/core/time.js';
import type { IonEvent, KeyValue } from '../../src/core/types.js';
import type { DocumentStore } from '../../src/store/document-store.js';

/** A real IonApp for API tests: SQLite and files in a temp dir, API on a free port, no workers. */
export interface ApiApp {
  app: IonApp;
  dir: string;
  stop(): Promise<void>;
}

export async function startApiApp(prefix: string, bodyLimitBytes: number): Promise<ApiApp> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const config = loadConfig({ flags: { dataDir: dir, api: { port: 0, bodyLimitBytes } } });
  const app = await IonApp.create(
    config,
    createLogger('silent'),
    { api: true, relay: true, workers: false },
    {},
  );
  await app.start();
  return {
    app,
    dir,
    async stop() {
      await app.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Asserts the one error format, exactly: `{ error: { code, message[, issues] } }`, no stack. */
export function expectError(res: LightMyRequestResponse, status: number, code: string): string {
  expect(res.statusCode, res.body).toBe(status);
  expect(res.headers['content-type']).toContain('application/json');
  const body = res.json<Record<string, unknown>>();
  expect(Object.keys(body)).toEqual(['error']);
  const error = body.error as Record<string, unknown>;
  const keys = Object.keys(error).sort();
  expect([
    ['code', 'message'],
    ['code', 'issues', 'message'],
  ]).toContainEqual(keys);
  expect(error.code).toBe(code);
  expect(typeof error.message).toBe('string');
  expect((error.message as string).length).toBeGreaterThan(0);
  if (error.issues !== undefined) {
    expect(Array.isArray(error.issues)).toBe(true);
    for (const issue of error.issues as unknown[]) {
      expect(Object.keys(issue as object).sort()).toEqual(['message', 'path']);
    }
  }
  expect(res.body).not.toMatch(/\n\s*at\s/);
  expect(res.body).not.toMatch(/\bat [^\s]+ \(.*:\d+:\d+\)/);
  expect(res.body).not.toContain('node_modules');
  return error.message as string;
}

/** Runs `module` on `parent` straight in the store: a job that succeeds with one child event. */
export async function runChild(
  store: DocumentStore,
  parent: IonEvent,
  module: string,
  insights: KeyValue[] = [],
  type = 'part.ready',
): Promise<IonEvent> {
  const jobId = jobIdFor(module, parent.eventId);
  const begun = await store.beginAttempt({
    jobId,
    module,
    moduleVersion: 1,
    event: parent,
    workerId: 'w',
    startedAt: nowIso(),
    leaseUntil: nowIso(),
  });
  if (begun.status !== 'started') throw new Error(begun.status);
  const child: IonEvent = {
    eventId: childEventId(parent.eventId, module, 'out.json'),
    type,
    correlationId: parent.correlationId,
    parentEventId: parent.eventId,
    source: module,
    sourceJobId: jobId,
    data: [],
    files: [],
    createdAt: nowIso(),
  };
  await store.commitAttempt({
    jobId,
    attempt: begun.attempt,
    finishedAt: nowIso(),
    durationMs: 1,
    exitCode: 0,
    logTail: '',
    logBlob: null,
    insights,
    outputs: [],
    children: [child],
  });
  return child;
}

/** How a test job's attempt fails for good (exit 2, module_failed, unless told). */
export interface TestJobFailure {
  error?: string;
  logTail?: string;
  reason?: string;
  exitCode?: number;
}

/** Starts `module`'s job on `event` straight in the store: its first attempt, running. */
export async function startJobAttempt(
  store: DocumentStore,
  event: IonEvent,
  module: string,
): Promise<{ jobId: string; attempt: number }> {
  const jobId = jobIdFor(module, event.eventId);
  const begun = await store.beginAttempt({
    jobId,
    module,
    moduleVersion: 1,
    event,
    workerId: 'test-worker',
    startedAt: nowIso(),
    leaseUntil: nowIso(),
  });
  if (begun.status !== 'started') throw new Error(`job ${jobId} not started: ${begun.status}`);
  return { jobId, attempt: begun.attempt };
}

/** Fails a running attempt for good: its job is dead-lettered with `failure.reason`. */
export async function deadLetterAttempt(
  store: DocumentStore,
  jobId: string,
  attempt: number,
  failure: TestJobFailure = {},
): Promise<void> {
  await store.failAttempt({
    jobId,
    attempt,
    finishedAt: nowIso(),
    durationMs: 5,
    exitCode: failure.exitCode ?? 2,
    errorCode: 'module_failed',
    errorKind: 'module',
    error: failure.error ?? 'exit code 2',
    logTail: failure.logTail ?? 'boom\n',
    logBlob: null,
    nextState: 'dead_lettered',
    countsAsFailure: true,
    deadLetterReason: failure.reason ?? 'retries exhausted',
  });
}

/**
 * Runs `module` on `event` straight in the store: a job whose only attempt fails for good
 * and is dead-lettered. Returns its id.
 */
export async function deadLetterJob(
  store: DocumentStore,
  event: IonEvent,
  module: string,
  failure: TestJobFailure = {},
): Promise<string> {
  const { jobId, attempt } = await startJobAttempt(store, event, module);
  await deadLetterAttempt(store, jobId, attempt, failure);
  return jobId;
}
