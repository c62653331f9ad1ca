import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { IonClient } from '../../src/api/client.js';
import { newId } from '../../src/core/ids.js';
import { nowIso } from '../../src/core/time.js';
import { deadLetterJob, startApiApp, type ApiApp } from '../support/api-app.js';
import { ion as runIon, type CliResult } from './run-cli.js';

// The CLI's commands, run in process, against an API listening on loopback: `ion module ...` and `ion dlq ...`,
// human output and --json, unknown names (exit 1), usage errors (exit 2) and bulk operations.

let api: ApiApp;
let url: string;
let client: IonClient;

beforeEach(async () => {
  api = await startApiApp('ion-cli-admin-', 1024 * 1024);
  const { port } = api.app.server!.server.address() as AddressInfo;
  url = `http://127.0.0.1:${port}`;
  client = new IonClient(url);
});

afterEach(async () => {
  await api.stop();
});

function ion(...args: string[]): Promise<CliResult> {
  return runIon(args, { apiUrl: url });
}

/** Runs a command that must succeed and returns its stdout. */
async function ok(...args: string[]): Promise<string> {
  const res = await ion(...args);
  expect(res.code, `ion ${args.join(' ')}: ${res.stderr}`).toBe(0);
  return res.stdout;
}

/** The cells of the table row whose first cell is `first` (columns are two or more spaces apart). */
function row(stdout: string, first: string): string[] | undefined {
  return stdout
    .split('\n')
    .map((line) => line.split(/ {2,}/))
    .find((cells) => cells[0] === first);
}

function module(name: string, extra: Record<string, unknown> = {}) {
  return { name, subscribes: ['file.uploaded'], run: { command: ['true'] }, ...extra };
}

/** A dead-lettered job of `moduleName` for a fresh event, written straight to the store. */
async function deadLetter(moduleName: string, reason = 'module_failed: exit 2'): Promise<string> {
  const { event } = await api.app.control.publish({ type: 'file.uploaded' });
  return deadLetterJob(api.app.backends.store, event, moduleName, { reason });
}

async function deadLetterIds(moduleName?: string): Promise<string[]> {
  const list = await client.listDeadLetters(moduleName === undefined ? {} : { module: moduleName });
  return list.map((d) => d.id).sort();
}

async function jobState(jobId: string): Promise<string> {
  return (await client.getJob(jobId)).job.state;
}

describe('ion module', () => {
  it('ls, get and versions print tables and details, and JSON with --json', async () => {
    await client.applyPipeline({
      modules: [module('split'), module('merge', { publishes: ['merged'], timeout: '30s' })],
    });
    await client.applyPipeline({
      modules: [module('split', { retries: 5, run: { command: ['echo', 'hi'] } })],
    });

    const ls = await ok('module', 'ls');
    expect(ls.split('\n')[0]).toMatch(
      /^MODULE +VERSION +STATE +SUBSCRIBES +PUBLISHES +CONCURRENCY +RETRIES +TIMEOUT$/,
    );
    expect(row(ls, 'split')).toEqual([
      'split',
      '2',
      'active',
      'file.uploaded',
      '1',
      '5',
      '600000ms',
    ]);
    expect(row(ls, 'merge')).toEqual([
      'merge',
      '1',
      'active',
      'file.uploaded',
      'merged',
      '1',
      '3',
      '30000ms',
    ]);
    const lsJson = JSON.parse(await ok('module', 'ls', '--json')) as {
      modules: { name: string; version: number }[];
    };
    expect(lsJson.modules.map((m) => [m.name, m.version])).toEqual([
      ['merge', 1],
      ['split', 2],
    ]);

    expect(await ok('module', 'get', 'split')).toBe(
      [
        'module split v2',
        '  subscribes file.uploaded',
        '  publishes -',
        '  run echo hi',
        '  concurrency 1, retries 5, timeout 600000ms',
        `  updated ${(await client.getModule('split')).updatedAt}`,
        '',
      ].join('\n'),
    );
    expect(JSON.parse(await ok('module', 'get', 'merge', '--json'))).toMatchObject({
      name: 'merge',
      version: 1,
      publishes: ['merged'],
      paused: false,
      timeoutMs: 30_000,
    });

    const versions = await ok('module', 'versions', 'split');
    expect(versions.split('\n')[0]).toMatch(/^VERSION +CREATED +RUN +RETRIES +TIMEOUT$/);
    expect(row(versions, '1')?.slice(2)).toEqual(['true', '3', '600000ms']);
    expect(row(versions, '2')?.slice(2)).toEqual(['echo hi', '5', '600000ms']);
    const versionsJson = JSON.parse(await ok('module', 'versions', 'split', '--json')) as {
      versions: { version: number; spec: { retries: number } }[];
    };
    expect(versionsJson.versions.map((v) => [v.version, v.spec.retries])).toEqual([
      [1, 3],
      [2, 5],
    ]);
  });

  it('pause, resume and rm change the module and say so; rm keeps the versions', async () => {
    await client.applyPipeline({ modules: [module('split'), module('merge')] });

    expect(await ok('module', 'pause', 'split')).toBe('paused module split\n');
    expect((await client.getModule('split')).paused).toBe(true);
    expect(await ok('module', 'get', 'split')).toMatch(/^module split v1 \(paused\)\n/);
    expect(await ok('module', 'resume', 'split')).toBe('resumed module split\n');
    expect((await client.getModule('split')).paused).toBe(false);
    expect(JSON.parse(await ok('module', 'pause', 'merge', '--json'))).toMatchObject({
      name: 'merge',
      paused: true,
    });
    expect(JSON.parse(await ok('module', 'resume', 'merge', '--json'))).toMatchObject({
      name: 'merge',
      paused: false,
    });

    expect(await ok('module', 'rm', 'split')).toBe('deleted module split\n');
    expect(JSON.parse(await ok('module', 'rm', 'merge', '--json'))).toEqual({ deleted: 'merge' });
    expect(await client.listModules()).toEqual([]);
    // History kept: the deleted module's versions are still listed.
    expect(row(await ok('module', 'versions', 'split'), '1')).toBeDefined();
  });

  it('an unknown module name fails with exit code 1 and says which', async () => {
    for (const command of ['get', 'rm', 'pause', 'resume', 'versions']) {
      const res = await ion('module', command, 'nope');
      expect(res.code, `ion module ${command} nope`).toBe(1);
      expect(res.stderr).toBe('error: module "nope" does not exist\n');
      expect(res.stdout).toBe('');
    }
  });

  it('a usage error exits with code 2 and the command help', async () => {
    const missing = await ion('module', 'get');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("missing required argument 'name'");
    expect(missing.stderr).toContain('Usage: ion module get');
    const unknown = await ion('module', 'frob', 'split');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("unknown command 'frob'");
  });
});

describe('ion dlq', () => {
  it('ls prints one line per dead letter (multi-line reasons too), and JSON with --json', async () => {
    const a = await deadLetter('split', 'module_output_invalid: invalid output:\n  events[0]: bad');
    const b = await deadLetter('merge');
    const jobless = newId();
    await api.app.backends.store.addDeadLetter({
      id: jobless,
      jobId: '',
      module: 'split',
      eventId: null,
      reason: 'malformed bus message: not JSON',
      attempts: 0,
      logTail: '',
      createdAt: nowIso(),
    });

    const ls = await ok('dlq', 'ls');
    const lines = ls.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ID +MODULE +EVENT +ATTEMPTS +REASON$/);
    expect(lines).toHaveLength(4);
    expect(row(ls, a)?.slice(1)).toEqual([
      'split',
      (await client.getJob(a)).job.eventId,
      '1',
      'module_output_invalid: invalid output: events[0]: bad',
    ]);
    expect(row(ls, jobless)?.slice(1)).toEqual([
      'split',
      '-',
      '0',
      'malformed bus message: not JSON',
    ]);

    const only = await ok('dlq', 'ls', '--module', 'merge');
    expect(only.trimEnd().split('\n')).toHaveLength(2);
    expect(row(only, b)?.[1]).toBe('merge');
    const json = JSON.parse(await ok('dlq', 'ls', '--module', 'split', '--json')) as {
      deadLetters: { id: string; module: string; reason: string }[];
    };
    expect(json.deadLetters.map((d) => d.id).sort()).toEqual([a, jobless].sort());
    expect(json.deadLetters.find((d) => d.id === a)?.reason).toContain('\n');
  });

  it('redrive and discard one by id, with human output and --json', async () => {
    const [r1, r2, d1, d2] = [
      await deadLetter('split'),
      await deadLetter('split'),
      await deadLetter('split'),
      await deadLetter('split'),
    ] as [string, string, string, string];
    const jobless = newId();
    await api.app.backends.store.addDeadLetter({
      id: jobless,
      jobId: '',
      module: 'split',
      eventId: null,
      reason: 'malformed bus message: not JSON',
      attempts: 0,
      logTail: '',
      createdAt: nowIso(),
    });

    expect(await ok('dlq', 'redrive', r1)).toBe(`redriven: job ${r1} of split is pending again\n`);
    expect(await jobState(r1)).toBe('pending');
    expect(JSON.parse(await ok('dlq', 'redrive', r2, '--json'))).toMatchObject({
      job: { jobId: r2, module: 'split', state: 'pending' },
    });
    expect(await ok('dlq', 'redrive', jobless)).toBe(
      `dead letter ${jobless} removed (it had no job to run again)\n`,
    );

    expect(await ok('dlq', 'discard', d1)).toBe(`discarded ${d1}\n`);
    expect(JSON.parse(await ok('dlq', 'discard', d2, '--json'))).toEqual({ discarded: 1 });
    // Discarding drops the dead letter only: the job stays dead-lettered.
    expect(await jobState(d1)).toBe('dead_lettered');
    expect(await deadLetterIds()).toEqual([]);
  });

  it('an unknown dead letter id fails with exit code 1 and says which', async () => {
    for (const command of ['redrive', 'discard']) {
      const res = await ion('dlq', command, 'nope');
      expect(res.code, `ion dlq ${command} nope`).toBe(1);
      expect(res.stderr).toBe('error: dead letter nope does not exist\n');
    }
  });

  it('usage errors exit with code 2 and touch nothing: no id, an id and --all, --module alone', async () => {
    const id = await deadLetter('split');
    const cases: [string[], string][] = [
      [['dlq', 'redrive'], 'give a dead letter id, or --all [--module M]'],
      [['dlq', 'discard', id, '--all'], 'give either an id or --all, not both'],
      [['dlq', 'redrive', '--module', 'split'], '--module needs --all'],
      [['dlq', 'ls', '--limit', '3'], "unknown option '--limit'"],
    ];
    for (const [args, message] of cases) {
      const res = await ion(...args);
      expect(res.code, `ion ${args.join(' ')}`).toBe(2);
      expect(res.stderr).toContain(message);
    }
    expect(await deadLetterIds()).toEqual([id]);
    expect(await jobState(id)).toBe('dead_lettered');
  });

  it('redrive --all --module acts on that module only; discard --all --json on the rest', async () => {
    const split = [await deadLetter('split'), await deadLetter('split'), await deadLetter('split')];
    const merge = [await deadLetter('merge'), await deadLetter('merge')];

    const redrive = await ion('dlq', 'redrive', '--all', '--module', 'split');
    expect(redrive.code, redrive.stderr).toBe(0);
    expect(redrive.stdout).toBe('redriven 3 dead letters\n');
    expect(redrive.stderr).toBe(''); // one batch: no progress lines
    for (const jobId of split) expect(await jobState(jobId)).toBe('pending');
    expect(await deadLetterIds()).toEqual([...merge].sort());

    expect(JSON.parse(await ok('dlq', 'discard', '--all', '--json'))).toEqual({ discarded: 2 });
    expect(await deadLetterIds()).toEqual([]);
    for (const jobId of merge) expect(await jobState(jobId)).toBe('dead_lettered');
    expect(await ok('dlq', 'redrive', '--all')).toBe('redriven 0 dead letters\n');
  });

  it('redrive --all works through more than one batch, with progress on stderr', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 130; i++) ids.push(await deadLetter('split'));
    const other = await deadLetter('merge');

    const res = await ion('dlq', 'redrive', '--all', '--module', 'split', '--json');
    expect(res.code, res.stderr).toBe(0);
    const body = JSON.parse(res.stdout) as { redriven: number; jobs: { jobId: string }[] };
    expect(body.redriven).toBe(130);
    expect(body.jobs.map((j) => j.jobId).sort()).toEqual([...ids].sort());
    expect(res.stderr).toBe('redriven 100 of 130 so far\nredriven 130 of 130 so far\n');
    expect(await deadLetterIds()).toEqual([other]);

    const discard = await ion('dlq', 'discard', '--all');
    expect(discard.code, discard.stderr).toBe(0);
    expect(discard.stdout).toBe('discarded 1 dead letter\n');
  });
});
