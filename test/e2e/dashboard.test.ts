import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Job } from '../../src/core/types.js';
import { waitFor } from '../support/wait.js';
import {
  ROOT,
  cleanup,
  cli,
  startIon,
  tempDir,
  writePipeline,
  type IonProcess,
} from './harness.js';

/**
 * The dashboard against a real `ion up`, in Debian's chromium driven by playwright-core:
 * publish the example's sample files from the publish page, watch jobs appear live, open the
 * trace, follow a running job's log, find a failing module's jobs on the failures page and
 * redrive them after a fix, answer an insight query, and sign in with a token when auth is
 * on. Every page is checked with axe-core and photographed into test-artifacts/dashboard.
 * Hostile payloads written by a publisher and by modules are checked to render as text on
 * every page that shows them (issue 12: the dashboard escapes what modules wrote).
 */

const CHROMIUM = process.env.ION_CHROMIUM ?? '/usr/bin/chromium';
const SHOTS = join(ROOT, 'test-artifacts/dashboard');
const DOCS = join(ROOT, 'examples/docs');
const DEADLINE = 60_000;
const HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>';
/** What a module (or a publisher) could write, each of which must stay text on every page. */
const PAYLOADS = [
  '<img src=x onerror="window.__pwned=3">',
  '<script>window.__pwned=4</script>',
  '"><svg onload="window.__pwned=5">',
  'javascript:window.__pwned=6',
];
/** File names: no "/" (that would be a folder), otherwise the same payloads. */
const FILE_NAMES = [
  '<img src=x onerror=window.__pwned=7>.txt',
  '"><svg onload=window.__pwned=8>.txt',
  'javascript:window.__pwned=9',
];

let browser: Browser;
let ion: IonProcess;
let dir: string;
let axeSource: string;

function pipeline(dir: string): string {
  const m = (file: string) => join(DOCS, 'modules', file);
  return `modules:
  - name: splitter
    subscribes: [document.uploaded]
    publishes: [chunk.ready]
    run: { command: [python3, ${m('splitter.py')}] }
    concurrency: 2
  - name: wordcount
    subscribes: [chunk.ready]
    publishes: [chunk.counted]
    run: { command: [node, ${m('wordcount.mjs')}] }
    concurrency: 2
    env: { TOP_WORDS: '5' }
  - name: summarise
    subscribes: [chunk.counted]
    run: { command: [sh, ${m('summarise.sh')}] }
  - name: detector
    subscribes: [document.uploaded]
    run: { command: [sh, ${join(dir, 'detector.sh')}] }
  - name: slow
    subscribes: [slow.requested]
    run:
      command: [sh, -c, 'echo started; i=0; while [ ! -f ${join(dir, 'go')} ]; do i=$((i+1)); echo "tick $i"; sleep 0.2; done; echo finished']
    timeout: 2m
  - name: fragile
    subscribes: [fragile.requested]
    retries: 0
    run:
      command: [sh, -c, 'if [ -f ${join(dir, 'fixed')} ]; then echo ok; else echo "boom: config missing" >&2; exit 3; fi']
  - name: hostile
    subscribes: [hostile.requested]
    publishes: [hostile.raised]
    run: { command: [node, ${join(dir, 'hostile.mjs')}] }
    env: { NOTE: ${JSON.stringify(PAYLOADS[0])} }
  - name: hostile-fail
    subscribes: [hostile.fail]
    retries: 0
    run: { command: [node, ${join(dir, 'hostile-fail.mjs')}] }
`;
}

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: false });
}

/** axe-core on the page as it is: no serious or critical violation. */
async function checkA11y(page: Page, what: string): Promise<void> {
  // Evaluated through the DevTools protocol, so the page's CSP does not apply to it.
  await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => {
    const axe = (
      globalThis as unknown as {
        axe: {
          run(opts: object): Promise<{
            violations: { id: string; impact: string | null; nodes: { target: unknown }[] }[];
          }>;
        };
      }
    ).axe;
    const result = await axe.run({ resultTypes: ['violations'] });
    return result.violations
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map(
        (v) => `${v.id} (${v.impact}): ${JSON.stringify(v.nodes.slice(0, 3).map((n) => n.target))}`,
      );
  });
  expect(violations, `axe on ${what}`).toEqual([]);
}

async function newPage(): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on('dialog', (d) => void d.dismiss());
  return page;
}

function jobsOf(module: string): Promise<Job[]> {
  return ion.client.listJobs({ module });
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(`no chromium at ${CHROMIUM}: apt-get install -y chromium`);
  if (!existsSync(join(ROOT, 'dist/web/index.html')))
    throw new Error('the dashboard is not built: run npm install (or npm run build:web)');
  await mkdir(SHOTS, { recursive: true });
  axeSource = await readFile(join(ROOT, 'node_modules/axe-core/axe.min.js'), 'utf8');
  dir = await tempDir('ion-dash-');
  // An object detector stand-in: one insight a question can find, one hostile value.
  const insights = [
    { key: 'object', value: 'red car' },
    { key: 'note', value: HOSTILE },
  ];
  await writeFile(
    join(dir, 'detector.sh'),
    `cat > out/insights.json <<'JSON'\n${JSON.stringify(insights)}\nJSON\n`,
  );
  // Writes every payload where a module can: its log, output file names, insight keys and
  // values, and a raised event's metadata and files.
  await writeFile(
    join(dir, 'hostile.mjs'),
    `import { mkdirSync, writeFileSync } from 'node:fs';
const payloads = ${JSON.stringify(PAYLOADS)};
const files = ${JSON.stringify(FILE_NAMES)};
for (const p of payloads) console.log(p);
mkdirSync('out/data', { recursive: true });
mkdirSync('out/events', { recursive: true });
for (const f of files) writeFileSync('out/data/' + f, 'x');
writeFileSync('out/insights.json', JSON.stringify(payloads.map((p) => ({ key: p, value: p }))));
writeFileSync('out/events/1.json', JSON.stringify({
  eventType: 'hostile.raised',
  data: Object.fromEntries(payloads.map((p) => [p, p])),
  files,
}));
`,
  );
  // Fails with a payload in its reason (an undeclared event type) and its log's last line.
  await writeFile(
    join(dir, 'hostile-fail.mjs'),
    `import { mkdirSync, writeFileSync } from 'node:fs';
mkdirSync('out/events', { recursive: true });
writeFileSync('out/events/1.json', JSON.stringify({ eventType: ${JSON.stringify(PAYLOADS[2])} }));
console.error(${JSON.stringify(PAYLOADS[0])});
`,
  );
  const file = await writePipeline(dir, pipeline(dir));
  ion = await startIon({ args: ['-f', file] });
  browser = await chromium.launch({
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
});

afterAll(async () => {
  await browser?.close();
  await ion?.stop();
  await cleanup(dir);
});

describe('the web dashboard against a real ion up', () => {
  it('serves /ui with a Content-Security-Policy and prints its address', async () => {
    expect(ion.output()).toContain(`dashboard: ${ion.url}/ui`);
    const res = await fetch(`${ion.url}/ui`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-security-policy')).toContain("script-src 'self'");
  });

  it('publishes the sample files, shows jobs live, draws the trace, renders hostile text as text', async () => {
    const live = await newPage();
    await live.goto(`${ion.url}/ui/live`);
    await live.getByText('● live').waitFor({ timeout: DEADLINE });

    const page = await newPage();
    await page.goto(`${ion.url}/ui`);
    await page.getByRole('cell', { name: 'splitter' }).waitFor({ timeout: DEADLINE });
    await checkA11y(page, 'pipeline');
    await shot(page, 'pipeline');

    await page.getByRole('link', { name: 'Publish' }).click();
    await page.getByLabel('Event type').fill('document.uploaded');
    await page.getByLabel('Key 1').fill('title');
    await page.getByLabel('Value 1').fill(HOSTILE);
    await page
      .getByLabel('Files')
      .setInputFiles([join(DOCS, 'sample/readme.txt'), join(DOCS, 'sample/notes/ion.txt')]);
    await checkA11y(page, 'publish');
    await shot(page, 'publish');
    await page.getByRole('button', { name: 'Publish' }).click();

    // The publish page opens the new trace; it fills in live as the jobs run.
    await page.waitForURL(/\/ui\/traces\//, { timeout: DEADLINE });
    await page
      .locator('[aria-label="job summarise succeeded"]')
      .first()
      .waitFor({ timeout: DEADLINE });
    await checkA11y(page, 'trace');
    await shot(page, 'trace');

    // The live page saw the jobs as they happened, with no reload.
    await live
      .locator('.feed-item[data-kind="job"]', { hasText: 'splitter' })
      .first()
      .waitFor({ timeout: DEADLINE });
    await live
      .locator('.feed-item[data-kind="job"]', { hasText: 'summarise' })
      .first()
      .waitFor({ timeout: DEADLINE });
    await checkA11y(live, 'live');
    await shot(live, 'live');

    // Hostile metadata and insight values are text: no element, no script ran.
    // Opened from the keyboard: a focused node opens with Enter, as a click does.
    await page.locator('[aria-label="event document.uploaded"]').first().focus();
    await page.keyboard.press('Enter');
    await page.getByText(HOSTILE).first().waitFor({ timeout: DEADLINE });
    expect(await page.locator('img[src="x"]').count()).toBe(0);
    expect(
      await page.evaluate(() => (globalThis as unknown as { __pwned?: number }).__pwned),
    ).toBeUndefined();

    await page.goto(`${ion.url}/ui/jobs?module=wordcount`);
    await page.locator('[data-job-id]').first().waitFor({ timeout: DEADLINE });
    await checkA11y(page, 'jobs');
    await shot(page, 'jobs');
    await live.close();
    await page.close();
  });

  it('follows a running job log live and keeps it once the job ends', async () => {
    const { eventId } = await ion.client.publish({ type: 'slow.requested' });
    const job = await waitFor(
      'the slow job to run',
      async () =>
        (await jobsOf('slow')).find((j) => j.eventId === eventId && j.state === 'running'),
      DEADLINE,
    );
    const page = await newPage();
    await page.goto(`${ion.url}/ui/jobs/${job.jobId}`);
    const log = page.getByTestId('log');
    await page.getByText('Following the log live').waitFor({ timeout: DEADLINE });
    await log.getByText(/tick 2/).waitFor({ timeout: DEADLINE });
    await checkA11y(page, 'job detail');
    await shot(page, 'job-log-live');
    await writeFile(join(dir, 'go'), '');
    await log.getByText(/finished/).waitFor({ timeout: DEADLINE });
    await page.getByText(/Log of attempt 1 \(\d+ characters\)/).waitFor({ timeout: DEADLINE });
    expect(await log.innerText()).toMatch(/^started\ntick 1\n[\s\S]*finished/);
    await page.locator('h1 .badge.state-succeeded').waitFor({ timeout: DEADLINE });
    // Reopened after the end: read from the kept log, never blank.
    await page.reload();
    await log.getByText(/finished/).waitFor({ timeout: DEADLINE });
    await page.close();
  });

  it('groups a failing module on the failures page and redrives the group after a fix', async () => {
    for (const n of [1, 2])
      await ion.client.publish({ type: 'fragile.requested', data: { n: String(n) } });
    await waitFor(
      'two fragile jobs dead-lettered',
      async () => {
        const jobs = await jobsOf('fragile');
        return jobs.filter((j) => j.state === 'dead_lettered').length === 2 ? true : undefined;
      },
      DEADLINE,
    );
    const page = await newPage();
    await page.goto(`${ion.url}/ui/failures`);
    const group = page.getByRole('article', { name: 'Failures of fragile' });
    await group.getByText('×2').waitFor({ timeout: DEADLINE });
    await expect(group.getByText(/boom: config missing/).count()).resolves.toBeGreaterThan(0);
    await checkA11y(page, 'failures');
    await shot(page, 'failures');

    await writeFile(join(dir, 'fixed'), '');
    await group.getByRole('button', { name: 'Redrive group…' }).click();
    await group.getByText('Redrive will touch 2 job(s)').waitFor({ timeout: DEADLINE });
    await group.getByRole('button', { name: 'Confirm redrive of 2' }).click();
    await waitFor(
      'the redriven jobs to succeed',
      async () => {
        const jobs = await jobsOf('fragile');
        return jobs.length === 2 && jobs.every((j) => j.state === 'succeeded') ? true : undefined;
      },
      DEADLINE,
    );
    // The page follows the live stream: the fixed group leaves it without a reload.
    await group.waitFor({ state: 'detached', timeout: DEADLINE });
    await page.close();
  });

  it('answers an insight query: which documents have a red car?', async () => {
    const page = await newPage();
    await page.goto(`${ion.url}/ui/insights`);
    await page.getByLabel('Key', { exact: true }).fill('object');
    await page.getByLabel('Value (exact)').fill('red car');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.waitForURL(/key=object/);
    const row = page.getByRole('row', { name: /detector object red car/ });
    await row.first().waitFor({ timeout: DEADLINE });
    await expect(
      row.getByRole('link', { name: 'document.uploaded' }).count(),
    ).resolves.toBeGreaterThan(0);
    // One job's insights together: the note of every job that also found a red car.
    await page.getByLabel('Key', { exact: true }).fill('note');
    await page.getByLabel('Value (exact)').fill('');
    await page.getByLabel('Same job has').fill('object=red car');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.waitForURL(/has=object/);
    await page
      .getByRole('row', { name: /detector note/ })
      .first()
      .waitFor({ timeout: DEADLINE });
    await page.getByRole('cell', { name: HOSTILE }).first().waitFor({ timeout: DEADLINE });
    expect(await page.locator('img[src="x"]').count()).toBe(0);
    await checkA11y(page, 'insights');
    await shot(page, 'insights');
    for (const path of [
      '/ui/traces',
      '/ui/replays',
      '/ui/dead-letters',
      '/ui/tokens',
      '/ui/modules/splitter',
    ]) {
      await page.goto(`${ion.url}${path}`);
      await page.locator('main h1').waitFor({ timeout: DEADLINE });
      await checkA11y(page, path);
      await shot(page, path.slice(4).replace(/\//g, '-'));
    }
    // Keyboard: the skip link comes first and the menu works with Enter.
    await page.keyboard.press('Tab');
    expect(
      await page.evaluate(
        () =>
          (globalThis as unknown as { document: { activeElement: { textContent: string } | null } })
            .document.activeElement?.textContent,
      ),
    ).toBe('Skip to content');
    await page
      .getByRole('navigation', { name: 'Pages' })
      .getByRole('link', { name: 'Jobs' })
      .focus();
    await page.keyboard.press('Enter');
    await page.waitForURL(/\/ui\/jobs$/);
    await page.close();
  });

  it('renders what modules wrote as text on every page that shows it, under a CSP', async () => {
    // Metadata keys and values and file names from a publisher; a module's log, output file
    // names, insight keys and values, a raised event's metadata and files; a failure whose
    // reason holds an event type the API refuses to publish, and whose log ends in a payload.
    const blob = await ion.client.uploadFile(join(DOCS, 'sample/readme.txt'));
    const root = await ion.client.publish({
      type: 'hostile.requested',
      data: PAYLOADS.map((p) => ({ key: p, value: p })),
      files: [...PAYLOADS, ...FILE_NAMES].map((path) => ({ path, sha256: blob.sha256 })),
    });
    await expect(ion.client.publish({ type: PAYLOADS[0]! })).rejects.toThrow(/event type/);
    await ion.client.publish({ type: 'hostile.fail' });
    const job = await waitFor(
      'the hostile job to succeed',
      async () => (await jobsOf('hostile')).find((j) => j.state === 'succeeded'),
      DEADLINE,
    );
    await waitFor(
      'the hostile-fail job to be dead-lettered',
      async () => (await jobsOf('hostile-fail')).find((j) => j.state === 'dead_lettered'),
      DEADLINE,
    );

    const page = await newPage();
    // Any markup that got in would try to run and be blocked by the CSP: record that too.
    await page.addInitScript(() => {
      const w = globalThis as unknown as { __csp: string[]; document: EventTarget };
      w.__csp = [];
      w.document.addEventListener('securitypolicyviolation', (e) => {
        const v = e as unknown as { violatedDirective: string; blockedURI: string };
        w.__csp.push(`${v.violatedDirective} ${v.blockedURI}`);
      });
    });
    /** The payloads are in main's text, and nothing in the page came from them. */
    const asText = async (what: string, payloads: readonly string[]) => {
      const text = (await page.locator('main').textContent()) ?? '';
      for (const p of payloads) expect(text, `${what} shows ${p} as text`).toContain(p);
      const found = await page.evaluate(() => {
        const doc = (
          globalThis as unknown as {
            document: {
              querySelectorAll(s: string): ArrayLike<{
                tagName: string;
                getAttributeNames(): string[];
                getAttribute(n: string): string | null;
              }>;
            };
          }
        ).document;
        const all = Array.from(doc.querySelectorAll('*'));
        return {
          handlers: all.flatMap((el) =>
            el
              .getAttributeNames()
              .filter((n) => n.startsWith('on'))
              .map((n) => `${el.tagName} ${n}`),
          ),
          jsUrls: all.flatMap((el) =>
            ['href', 'src', 'action', 'formaction', 'xlink:href']
              .map((n) => el.getAttribute(n) ?? '')
              .filter((v) => /^\s*javascript:/i.test(v)),
          ),
          injected: doc.querySelectorAll(
            'main img, main script, main iframe, main object, main embed',
          ).length,
          pwned: (globalThis as unknown as { __pwned?: number }).__pwned,
          csp: (globalThis as unknown as { __csp: string[] }).__csp,
        };
      });
      expect(found, what).toEqual({
        handlers: [],
        jsUrls: [],
        injected: 0,
        pwned: undefined,
        csp: [],
      });
    };

    // Job detail: log, event metadata, input and output file names, insights.
    const res = await page.goto(`${ion.url}/ui/jobs/${job.jobId}`);
    const csp = res?.headers()['content-security-policy'] ?? '';
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("object-src 'none'");
    expect(csp).not.toMatch(/script-src[^;]*unsafe/);
    await page.getByTestId('log').getByText(PAYLOADS[3]!).waitFor({ timeout: DEADLINE });
    await page
      .getByRole('button', { name: `Download ${FILE_NAMES[0]}` })
      .first()
      .waitFor({ timeout: DEADLINE });
    expect(await page.getByRole('button', { name: `Download ${FILE_NAMES[1]}` }).count()).toBe(2);
    expect(await page.getByRole('button', { name: `Download ${PAYLOADS[1]}` }).count()).toBe(1);
    await page.getByRole('table', { name: 'Insights' }).waitFor({ timeout: DEADLINE });
    await asText('job detail', [...PAYLOADS, ...FILE_NAMES]);

    // Trace: the raised event's metadata and files, the job's insights and outputs.
    await page.goto(`${ion.url}/ui/traces/${root.correlationId}`);
    await page.locator('[aria-label="event hostile.raised"]').first().click();
    await page.getByRole('region', { name: 'Selected event' }).waitFor({ timeout: DEADLINE });
    await asText('trace, raised event', [...PAYLOADS, ...FILE_NAMES]);
    await page.locator('[aria-label="job hostile succeeded"]').first().click();
    await page.getByRole('region', { name: 'Selected job' }).waitFor({ timeout: DEADLINE });
    await asText('trace, job', [...PAYLOADS, ...FILE_NAMES]);

    // Insights: a payload as the key, hits with their payload values and event files.
    await page.goto(`${ion.url}/ui/insights?key=${encodeURIComponent(PAYLOADS[2]!)}`);
    await page
      .getByRole('cell', { name: PAYLOADS[2], exact: true })
      .first()
      .waitFor({ timeout: DEADLINE });
    await asText('insights', [PAYLOADS[2]!, ...FILE_NAMES]);

    // Failures, dead letters and the jobs list: the reason and the log's last line.
    await page.goto(`${ion.url}/ui/failures`);
    const group = page.getByRole('article', { name: 'Failures of hostile-fail' });
    await group.waitFor({ timeout: DEADLINE });
    await asText('failures', [PAYLOADS[0]!, PAYLOADS[2]!]);
    await page.goto(`${ion.url}/ui/dead-letters`);
    await page
      .getByRole('article', { name: 'Dead letter of hostile-fail' })
      .waitFor({ timeout: DEADLINE });
    await asText('dead letters', [PAYLOADS[0]!, PAYLOADS[2]!]);
    await page.goto(`${ion.url}/ui/jobs?module=hostile-fail`);
    await page.locator('[data-job-id]').first().waitFor({ timeout: DEADLINE });
    await asText('jobs', [PAYLOADS[2]!]);

    // The module page shows its spec (env holds a payload); publish shows the API's refusal.
    await page.goto(`${ion.url}/ui/modules/hostile`);
    await page.locator('main h1').waitFor({ timeout: DEADLINE });
    await asText('module', [JSON.stringify(PAYLOADS[0]).slice(1, -1)]);
    await page.getByRole('link', { name: 'Publish' }).click();
    await page.getByLabel('Event type').fill(PAYLOADS[0]!);
    await page.getByRole('button', { name: 'Publish' }).click();
    await page.getByRole('alert').waitFor({ timeout: DEADLINE });
    await asText('publish', [PAYLOADS[0]!]);
    await page.close();
  });

  it('asks for a token when auth is on and keeps it out of URLs', async () => {
    const authDir = await tempDir('ion-dash-auth-');
    const env = { ION_AUTH: 'on' };
    const created = await cli(
      ['token', 'create', '--name', 'ui', '--scope', 'admin', '--json', '--data-dir', authDir],
      { env },
    );
    expect(created.code, created.stderr).toBe(0);
    const { token } = JSON.parse(created.stdout) as { token: string };
    const authed = await startIon({ dataDir: authDir, env });
    try {
      const page = await newPage();
      const urls: string[] = [];
      page.on('request', (r) => urls.push(r.url()));
      await page.goto(`${authed.url}/ui/jobs`);
      await page.getByRole('heading', { name: 'Sign in to Ion' }).waitFor({ timeout: DEADLINE });
      await checkA11y(page, 'login');
      await shot(page, 'login');
      await page.getByLabel('API token').fill('not-a-token');
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('alert').waitFor({ timeout: DEADLINE });
      await page.getByLabel('API token').fill(token);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('heading', { name: 'Jobs' }).waitFor({ timeout: DEADLINE });
      await page.getByText('● live').waitFor({ timeout: DEADLINE });
      expect(urls.filter((u) => u.includes(token))).toEqual([]);
      expect(authed.output()).not.toContain(token);
      await page.close();
    } finally {
      await authed.stop();
      await cleanup(authDir);
    }
  });
});
