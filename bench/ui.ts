/**
 * `BENCH_SUITE=ui npm run bench`: the dashboard in Debian's chromium (playwright-core) against
 * an in-process Ion holding BENCH_UI_JOBS jobs (default 100,000) and one trace of
 * BENCH_UI_TRACE events (default 2,000: a root whose job fans out to that many children, each
 * run by one more job). Measured, each over BENCH_UI_RUNS fresh page loads (default 5):
 *   - jobs page: navigation start → the first screen of rows visible (target 1 s);
 *   - trace page: navigation start → the graph drawn (the fan-out collapsed into one node),
 *     then a click on that node → the expanded tree drawn (target 2 s);
 *   - the longest main-thread task seen meanwhile (PerformanceObserver `longtask`), which is
 *     how long the page stayed frozen at worst.
 * The dashboard must have been built (`npm install` does it). Data lives in a mkdtemp dir.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { chromium, type Page } from 'playwright-core';
import { IonApp } from '../src/app/ion-app.js';
import { createLogger } from '../src/app/logger.js';
import { loadConfig } from '../src/config/config.js';
import { childEventId, jobIdFor } from '../src/core/ids.js';
import type { IonEvent } from '../src/core/types.js';
import type { DocumentStore } from '../src/store/document-store.js';
import { f, intEnv, percentile, table } from './util.js';

const JOBS = intEnv('BENCH_UI_JOBS', 100_000);
const TRACE = intEnv('BENCH_UI_TRACE', 2000);
const RUNS = intEnv('BENCH_UI_RUNS', 5);
const CHROMIUM = process.env.ION_CHROMIUM ?? '/usr/bin/chromium';
const ROOT = resolve(import.meta.dirname, '..');

function event(
  id: string,
  correlationId: string,
  parent: IonEvent | null,
  jobId: string | null,
  at: string,
): IonEvent {
  return {
    eventId: id,
    type: parent === null ? 'doc.uploaded' : 'chunk.ready',
    correlationId,
    parentEventId: parent?.eventId ?? null,
    source: parent === null ? 'api' : 'splitter',
    sourceJobId: jobId,
    data: [{ key: 'n', value: id.slice(0, 8) }],
    files: [],
    createdAt: at,
  };
}

/** Runs `module` on `ev` straight in the store; `children` are the events it raises. */
async function run(
  store: DocumentStore,
  module: string,
  ev: IonEvent,
  children: IonEvent[] = [],
  finish = true,
) {
  const jobId = jobIdFor(module, ev.eventId);
  const at = new Date().toISOString();
  const begun = await store.beginAttempt({
    jobId,
    module,
    moduleVersion: 1,
    event: ev,
    workerId: 'bench',
    startedAt: at,
    leaseUntil: at,
  });
  if (begun.status !== 'started') throw new Error(`begin ${jobId}: ${begun.status}`);
  if (!finish) return jobId;
  await store.commitAttempt({
    jobId,
    attempt: begun.attempt,
    finishedAt: new Date().toISOString(),
    durationMs: 1,
    exitCode: 0,
    logTail: '',
    logBlob: null,
    insights: [{ key: 'object', value: 'red car' }],
    outputs: [],
    children,
  });
  return jobId;
}

async function seed(store: DocumentStore): Promise<{ correlationId: string; seconds: number }> {
  const started = performance.now();
  // Unrelated history: JOBS jobs of three modules, one root event each (nine in ten succeed).
  for (let i = 0; i < JOBS; i++) {
    const id = `e-${i.toString().padStart(7, '0')}-${Math.random().toString(36).slice(2)}`;
    await run(
      store,
      ['splitter', 'wordcount', 'summarise'][i % 3]!,
      event(id, id, null, null, new Date().toISOString()),
      [],
      i % 10 !== 0,
    );
  }
  // The big trace: root → splitter job → TRACE chunk events → one wordcount job each.
  const correlationId = `trace-${Date.now()}`;
  const root = event(correlationId, correlationId, null, null, new Date().toISOString());
  const splitJob = jobIdFor('splitter', root.eventId);
  const children = Array.from({ length: TRACE }, (_, i) =>
    event(
      childEventId(root.eventId, 'splitter', `c${i}.json`),
      correlationId,
      root,
      splitJob,
      new Date().toISOString(),
    ),
  );
  await run(store, 'splitter', root, children);
  for (const child of children) await run(store, 'wordcount', child);
  return { correlationId, seconds: (performance.now() - started) / 1000 };
}

/** Installs a long-task recorder before the page's own scripts run. */
async function watchLongTasks(page: Page): Promise<void> {
  await page.addInitScript(() => {
    const w = globalThis as unknown as {
      __longest: number;
      PerformanceObserver: typeof PerformanceObserver;
    };
    w.__longest = 0;
    new w.PerformanceObserver((list) => {
      for (const e of list.getEntries()) w.__longest = Math.max(w.__longest, e.duration);
    }).observe({ type: 'longtask' as 'mark', buffered: true });
  });
}

const longest = (page: Page) =>
  page.evaluate(() => (globalThis as unknown as { __longest: number }).__longest);

export async function runUiSuite(): Promise<void> {
  if (!existsSync(join(ROOT, 'dist/web/index.html')))
    throw new Error('build the dashboard first: npm install (or npm run build:web)');
  if (!existsSync(CHROMIUM))
    throw new Error(`no chromium at ${CHROMIUM}: apt-get install -y chromium`);
  const dir = await mkdtemp(join(tmpdir(), 'ion-bench-ui-'));
  const config = loadConfig({ flags: { dataDir: dir, api: { port: 0 } } });
  const app = await IonApp.create(
    config,
    createLogger('silent'),
    { api: true, relay: false, workers: false },
    {},
  );
  const url = await app.start();
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  try {
    console.log(`seeding ${JOBS} jobs and a trace of ${TRACE} events...`);
    const { correlationId, seconds } = await seed(app.backends.store);
    console.log(`seeded in ${f(seconds)} s`);
    const jobsMs: number[] = [];
    const traceMs: number[] = [];
    const expandMs: number[] = [];
    const allMs: number[] = [];
    let jobsLong = 0;
    let traceLong = 0;
    let expandLong = 0;
    let allLong = 0;
    for (let i = 0; i < RUNS; i++) {
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      await watchLongTasks(page);
      let t0 = performance.now();
      await page.goto(`${url}/ui/jobs`);
      await page.locator('[data-job-id]').nth(10).waitFor({ timeout: 60_000 });
      jobsMs.push(performance.now() - t0);
      jobsLong = Math.max(jobsLong, await longest(page));
      await page.close();

      const tp = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      await watchLongTasks(tp);
      t0 = performance.now();
      await tp.goto(`${url}/ui/traces/${correlationId}`);
      const group = tp.locator('[aria-label*="collapsed; press Enter to open"]');
      await group.waitFor({ timeout: 60_000 });
      traceMs.push(performance.now() - t0);
      traceLong = Math.max(traceLong, await longest(tp));
      await tp.evaluate(() => ((globalThis as unknown as { __longest: number }).__longest = 0));
      t0 = performance.now();
      await group.click();
      await tp
        .locator('[aria-label="job wordcount succeeded"]')
        .nth(4)
        .waitFor({ timeout: 60_000 });
      expandMs.push(performance.now() - t0);
      // The rest of the fan-out stays one node, framed beside the children just opened.
      await group.waitFor({ timeout: 10_000 });
      expandLong = Math.max(expandLong, await longest(tp));
      await tp.evaluate(() => ((globalThis as unknown as { __longest: number }).__longest = 0));
      // Then the whole fan-out, a page per click, until no group is left.
      t0 = performance.now();
      while ((await group.count()) > 0) {
        const label = (await group.getAttribute('aria-label'))!;
        await group.click();
        await tp.locator(`[aria-label="${label}"]`).waitFor({ state: 'detached', timeout: 60_000 });
        if (!label.startsWith(`${TRACE % 250 || 250} `)) await group.waitFor({ timeout: 10_000 });
      }
      allMs.push(performance.now() - t0);
      allLong = Math.max(allLong, await longest(tp));
      await tp.close();
    }
    const row = (what: string, ms: number[], target: string, long: number) => [
      what,
      f(percentile(ms, 50), 0),
      f(Math.max(...ms), 0),
      target,
      f(long, 0),
    ];
    console.log(
      `\n## Dashboard (${JOBS} jobs in the store; trace of ${TRACE + 1} events, ${TRACE + 1} jobs; ${RUNS} runs)\n`,
    );
    console.log(
      table([
        ['page', 'median ms', 'max ms', 'target', 'longest main-thread task ms'],
        row('jobs: first screen of rows', jobsMs, '< 1000', jobsLong),
        row(`trace: graph drawn (fan-out of ${TRACE} collapsed)`, traceMs, '< 2000', traceLong),
        row(`trace: click on the fan-out, 250 more drawn`, expandMs, '< 2000', expandLong),
        row(`trace: more clicks until all ${TRACE} drawn`, allMs, '-', allLong),
      ]),
    );
  } finally {
    await browser.close();
    await app.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
