import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IonApp } from '../../src/app/ion-app.js';
import { createLogger } from '../../src/app/logger.js';
import { loadConfig } from '../../src/config/config.js';
import { IonClient } from '../../src/api/client.js';
import { BASE_ENV as env, ion } from './run-cli.js';

// The CLI's commands, run in process, against an API listening on loopback: `ion event ls`, `ion event lineage`,
// `ion insight ls` and `ion blob get`.
describe('query commands of the CLI', () => {
  let dir: string;
  let app: IonApp;
  let url: string;
  let client: IonClient;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ion-cli-queries-'));
    const config = loadConfig({ flags: { dataDir: dir, api: { port: 0, host: '127.0.0.1' } } });
    app = await IonApp.create(
      config,
      createLogger('silent'),
      { api: true, relay: false, workers: false },
      {},
    );
    url = (await app.start())!;
    client = new IonClient(url);
  });

  afterAll(async () => {
    await app.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('ion event ls --json pages with --limit and --cursor', async () => {
    const ids = new Set<string>();
    for (let i = 0; i < 3; i++) ids.add((await client.publish({ type: 'cli.test' })).eventId);
    const first = await ion(['event', 'ls', '--type', 'cli.test', '--limit', '2', '--json'], {
      apiUrl: url,
      env,
    });
    expect(first.code, first.stderr).toBe(0);
    const page1 = JSON.parse(first.stdout) as {
      events: { eventId: string }[];
      nextCursor: string | null;
    };
    expect(page1.events).toHaveLength(2);
    expect(page1.nextCursor).not.toBeNull();
    const second = await ion(
      [
        'event',
        'ls',
        '--type',
        'cli.test',
        '--limit',
        '2',
        '--cursor',
        page1.nextCursor!,
        '--json',
      ],
      { apiUrl: url, env },
    );
    expect(second.code, second.stderr).toBe(0);
    const page2 = JSON.parse(second.stdout) as typeof page1;
    expect(page2.nextCursor).toBeNull();
    expect(new Set([...page1.events, ...page2.events].map((e) => e.eventId))).toEqual(ids);

    const human = await ion(['event', 'ls', '--type', 'cli.test', '--limit', '2'], {
      apiUrl: url,
      env,
    });
    expect(human.stdout).toContain('next page: --cursor');
    const bad = await ion(['event', 'ls', '--limit', 'x'], { apiUrl: url });
    expect(bad.code).toBe(2);
  }, 60_000);

  it('ion event lineage, ion insight ls and ion blob get -o', async () => {
    const { eventId } = await client.publish({ type: 'cli.lineage' });
    const lineage = await ion(['event', 'lineage', eventId, '--json'], { apiUrl: url });
    expect(lineage.code, lineage.stderr).toBe(0);
    expect(JSON.parse(lineage.stdout)).toMatchObject({
      event: { eventId },
      ancestors: [],
      descendants: [],
    });
    const insights = await ion(['insight', 'ls', '--key', 'nothing', '--json'], {
      apiUrl: url,
      env,
    });
    expect(insights.code, insights.stderr).toBe(0);
    expect(JSON.parse(insights.stdout)).toEqual({ insights: [] });

    const src = join(dir, 'src.txt');
    await writeFile(src, 'hello blob');
    const ref = await client.uploadFile(src);
    const out = join(dir, 'out.txt');
    const got = await ion(['blob', 'get', ref.sha256, '-o', out], { apiUrl: url });
    expect(got.code, got.stderr).toBe(0);
    expect(await readFile(out, 'utf8')).toBe('hello blob');
    const missing = await ion(['blob', 'get', '0'.repeat(64)], { apiUrl: url });
    expect(missing.code).toBe(1);
  }, 60_000);
});
