import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { IonClient } from '../../src/api/client.js';
import { IonApp } from '../../src/app/ion-app.js';
import { createLogger } from '../../src/app/logger.js';
import { formatLiveMessage, reconnectDelayMs } from '../../src/cli/commands/watch.js';
import { loadConfig } from '../../src/config/config.js';
import type { Scope } from '../../src/core/tokens.js';
import { ROOT } from '../e2e/harness.js';
import { BASE_ENV, ion as cli, type CliResult } from './run-cli.js';
import { runChild, startApiApp, type ApiApp } from '../support/api-app.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';
import { StopWaiting, waitFor } from '../support/wait.js';

// Against an API listening on loopback: the real `ion watch` process (the live stream,
// with reconnection through a TCP proxy that drops connections), `ion token ... --remote`
// against a server with auth on, and `ion blob put`.

const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function apiApp(): Promise<{ api: ApiApp; url: string; client: IonClient }> {
  const api = await startApiApp('ion-cli-watch-', 1024 * 1024);
  cleanups.push(() => api.stop());
  const { port } = api.app.server!.server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;
  return { api, url, client: new IonClient(url) };
}

/** A running `ion watch`: its output so far, and a way to stop it as Ctrl-C does. */
interface Watcher {
  stdout(): string;
  stderr(): string;
  /** The lines of stdout so far, parsed as JSON (for `--json`). */
  messages(): Record<string, unknown>[];
  /** SIGINT, then the exit code. */
  interrupt(): Promise<number | null>;
}

function exited(proc: ChildProcess): Promise<number | null> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(proc.exitCode);
  return new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
}

/** Starts `ion watch ARGS` and waits until it says it is watching (connected). */
async function startWatch(apiUrl: string, args: string[], env = BASE_ENV): Promise<Watcher> {
  const proc = spawn(process.execPath, [join(ROOT, 'bin/ion.js'), 'watch', ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env, ION_API_URL: apiUrl },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  cleanups.push(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL');
      await exited(proc);
    }
  });
  await waitFor(`ion watch to connect (stderr: ${stderr})`, () => {
    if (proc.exitCode !== null)
      throw new StopWaiting(`ion watch exited with ${proc.exitCode}: ${stderr}`);
    return stderr.includes('watching; press Ctrl-C to stop') ? true : undefined;
  });
  return {
    stdout: () => stdout,
    stderr: () => stderr,
    messages: () =>
      stdout
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as Record<string, unknown>),
    async interrupt() {
      proc.kill('SIGINT');
      return exited(proc);
    },
  };
}

describe('ion watch', () => {
  it('prints, as JSON lines, an event published after it started; Ctrl-C exits 0', async () => {
    const { url, client } = await apiApp();
    const before = await client.publish({ type: 'watch.before' });
    const watch = await startWatch(url, ['--json']);
    const { eventId } = await client.publish({ type: 'watch.test', data: { k: 'v' } });
    const message = await waitFor('the event on stdout', () =>
      watch.messages().find((m) => m.eventId === eventId),
    );
    expect(message).toMatchObject({ type: 'watch.test', source: 'api', data: { k: 'v' } });
    // What existed before it started is not news.
    expect(watch.messages().map((m) => m.eventId)).not.toContain(before.eventId);
    expect(await watch.interrupt()).toBe(0);
  });

  it('--module shows only that module: its jobs and the events it raised, as human lines', async () => {
    const { api, url } = await apiApp();
    const watch = await startWatch(url, ['--module', 'split']);
    // A root event (source api) and another module's job: neither is split's.
    const { event: root } = await api.app.control.publish({ type: 'doc.new' });
    await runChild(api.app.backends.store, root, 'merge', [], 'merged');
    const child = await runChild(api.app.backends.store, root, 'split', [], 'part.ready');
    // Events are sent in creation order: once split's child is out, the others were decided.
    await waitFor('the child event line', () =>
      watch.stdout().includes(child.eventId) ? true : undefined,
    );
    const lines = watch.stdout().trimEnd().split('\n');
    expect(lines.some((l) => / job {3}split {2}\S+ succeeded \(attempt 1\)$/.test(l))).toBe(true);
    expect(lines).toContainEqual(
      expect.stringMatching(
        new RegExp(`^\\d\\d:\\d\\d:\\d\\d event part\\.ready ${child.eventId} from split$`),
      ),
    );
    expect(watch.stdout()).not.toMatch(/ from api$/m);
    expect(watch.stdout()).not.toContain('merge');
    expect(await watch.interrupt()).toBe(0);
  });

  it('--correlation-id shows only that trace: its jobs and events, as JSON lines', async () => {
    const { api, url } = await apiApp();
    const store = api.app.backends.store;
    const { event: mine } = await api.app.control.publish({ type: 'doc.new' });
    const watch = await startWatch(url, ['--json', '--correlation-id', mine.correlationId]);
    // Another trace changes first, then this one: once this one's child is out, the other
    // trace's job and event (earlier in both feeds) have been decided.
    const { event: other } = await api.app.control.publish({ type: 'doc.new' });
    const otherChild = await runChild(store, other, 'split');
    const child = await runChild(store, mine, 'split');
    await waitFor('the child event of this trace', () =>
      watch.messages().some((m) => m.eventId === child.eventId) ? true : undefined,
    );
    const messages = watch.messages();
    expect(messages.some((m) => m.jobId !== undefined && m.eventId === mine.eventId)).toBe(true);
    expect(new Set(messages.map((m) => m.correlationId))).toEqual(new Set([mine.correlationId]));
    expect(messages.map((m) => m.eventId)).not.toContain(otherChild.eventId);
    expect(await watch.interrupt()).toBe(0);
  });

  it('reconnects after the connection drops and gets, with Last-Event-ID, what it missed', async () => {
    const { api, url } = await apiApp();
    const proxy: TcpProxy = await startTcpProxy(Number(new URL(url).port));
    cleanups.push(() => proxy.close());
    const watch = await startWatch(`http://127.0.0.1:${proxy.port}`, ['--json']);
    const { event: first } = await api.app.control.publish({ type: 'before.drop' });
    await waitFor('the first event', () =>
      watch.messages().some((m) => m.eventId === first.eventId) ? true : undefined,
    );

    proxy.pause();
    await waitFor('ion watch to notice the drop', () =>
      watch.stderr().includes('connection lost') && proxy.refused > 0 ? true : undefined,
    );
    // Published while ion watch cannot connect: a fresh stream would treat it as old news.
    const { event: missed } = await api.app.control.publish({ type: 'during.drop' });
    proxy.resume();

    await waitFor('the missed event after reconnecting', () =>
      watch.messages().some((m) => m.eventId === missed.eventId) ? true : undefined,
    );
    expect(watch.stderr()).toContain('reconnected');
    const ids = watch.messages().map((m) => m.eventId);
    expect(ids.filter((id) => id === first.eventId)).toHaveLength(1);
    expect(await watch.interrupt()).toBe(0);
  });

  it('an invalid filter ends with error: and exit code 1 (a 4xx is not retried)', async () => {
    const { url } = await apiApp();
    const res = await cli(['watch', '--module', ''], { apiUrl: url, env: BASE_ENV });
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/^error: .*module/m);
  });
});

describe('ion watch output', () => {
  const at = '2024-05-01T12:00:01.000Z';
  const time = () => '12:00:01';

  it('formats job and event messages as one line each', () => {
    const job = {
      jobId: 'j1',
      module: 'split',
      state: 'running',
      attempts: 1,
      updatedAt: at,
      lastError: null,
    };
    expect(formatLiveMessage({ event: 'job', id: 'x', data: JSON.stringify(job) }, time)).toBe(
      '12:00:01 job   split  j1 running (attempt 1)',
    );
    const failed = { ...job, state: 'failed', attempts: 2, lastError: 'exit code 2\nboom' };
    expect(formatLiveMessage({ event: 'job', id: 'x', data: JSON.stringify(failed) }, time)).toBe(
      '12:00:01 job   split  j1 failed (attempt 2): exit code 2 boom',
    );
    const event = { eventId: 'e1', type: 'doc.new', source: 'api', createdAt: at };
    expect(formatLiveMessage({ event: 'event', id: 'x', data: JSON.stringify(event) }, time)).toBe(
      '12:00:01 event doc.new e1 from api',
    );
    expect(formatLiveMessage({ event: 'other', id: 'x', data: 'a\nb' }, time)).toBe('other a b');
  });

  it('backs off 250 ms, doubling, to at most 5 s', () => {
    expect([0, 1, 2, 3, 4, 5, 50].map(reconnectDelayMs)).toEqual([
      250, 500, 1000, 2000, 4000, 5000, 5000,
    ]);
  });
});

describe('ion token --remote', () => {
  /** An API with auth on (relay, no workers) and a first admin token, made on the store. */
  async function authApp() {
    const dir = await mkdtemp(join(tmpdir(), 'ion-cli-token-'));
    const config = loadConfig({ flags: { dataDir: dir, api: { port: 0, auth: 'on' } } });
    const app = await IonApp.create(
      config,
      createLogger('silent'),
      { api: true, relay: true, workers: false },
      {},
    );
    const url = (await app.start())!;
    cleanups.push(async () => {
      await app.stop();
      await rm(dir, { recursive: true, force: true });
    });
    const made = async (scopes: Scope[]) =>
      (await app.tokens.create({ name: scopes.join('+'), scopes })).token;
    const admin = await made(['admin']);
    const ion = (token: string, ...args: string[]): Promise<CliResult> =>
      cli(args, { apiUrl: url, env: { ...BASE_ENV, ION_TOKEN: token } });
    return { url, admin, made, ion };
  }

  it('creates, lists and revokes tokens through the API, with the local output', async () => {
    const { url, admin, ion } = await authApp();

    const created = await ion(
      admin,
      'token',
      'create',
      '--remote',
      '--name',
      'ci',
      '--scope',
      'read',
    );
    expect(created.code, created.stderr).toBe(0);
    const [summary, value, hint] = created.stdout.trimEnd().split('\n');
    const id = /^created token (\S+) \(ci; scopes read\)$/.exec(summary ?? '')?.[1];
    expect(id).toBeDefined();
    expect(value).toMatch(/^ion_[A-Za-z0-9_-]{43}$/);
    expect(hint).toBe('store it now: Ion keeps only its hash and cannot show it again.');
    // The new token works, with its scope.
    expect(await new IonClient(url, value).listModules()).toEqual([]);

    const json = await ion(
      admin,
      'token',
      'create',
      '--remote',
      '--name',
      'p',
      '--scope',
      'publish',
      '--json',
    );
    expect(json.code, json.stderr).toBe(0);
    const record = JSON.parse(json.stdout) as Record<string, unknown>;
    expect(Object.keys(record)).toEqual([
      'token',
      'id',
      'name',
      'scopes',
      'createdAt',
      'lastUsedAt',
      'revokedAt',
    ]);
    expect(record).toMatchObject({ name: 'p', scopes: ['publish'], revokedAt: null });

    const ls = await ion(admin, 'token', 'ls', '--remote');
    expect(ls.code, ls.stderr).toBe(0);
    expect(ls.stdout.split('\n')[0]).toMatch(/^ID +NAME +SCOPES +CREATED +LAST USED +REVOKED$/);
    expect(ls.stdout).toContain(id);
    expect(ls.stdout).not.toContain(value);
    const lsJson = JSON.parse((await ion(admin, 'token', 'ls', '--remote', '--json')).stdout) as {
      tokens: { id: string; name: string }[];
    };
    expect(lsJson.tokens.map((t) => t.name)).toEqual(['admin', 'ci', 'p']);

    const revoked = await ion(admin, 'token', 'revoke', '--remote', id!);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(revoked.stdout).toMatch(new RegExp(`^revoked ${id} \\(ci\\) at \\S+\\n$`));
    await expect(new IonClient(url, value).listModules()).rejects.toThrow(/invalid or revoked/);
    const missing = await ion(admin, 'token', 'revoke', '--remote', 'nope');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe('error: token nope does not exist\n');
  });

  it('a token without the admin scope is refused with exit code 1 and says why', async () => {
    const { made, ion } = await authApp();
    const read = await made(['read']);
    for (const args of [
      ['ls'],
      ['create', '--name', 'x', '--scope', 'read'],
      ['revoke', 'some-id'],
    ]) {
      const res = await ion(read, 'token', ...args, '--remote');
      expect(res.code, `ion token ${args.join(' ')}`).toBe(1);
      expect(res.stderr).toMatch(
        /^error: \S+ \/v1\/tokens\S* needs a token with scope "admin" \(this token has read\)\n$/,
      );
      expect(res.stdout).toBe('');
    }
    const none = await ion('', 'token', 'ls', '--remote');
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('error: this API needs a token');
  });

  it('API flags without --remote, and store flags with it, are usage errors', async () => {
    const { url, admin, ion } = await authApp();
    const apiFlag = await ion(admin, 'token', 'ls', '--api-url', url);
    expect(apiFlag.code).toBe(2);
    expect(apiFlag.stderr).toContain('--api-url need --remote');
    const storeFlag = await ion(admin, 'token', 'ls', '--remote', '--data-dir', '/tmp/x');
    expect(storeFlag.code).toBe(2);
    expect(storeFlag.stderr).toContain('--data-dir open the store directly: not with --remote');
  });

  it('ion watch with auth on needs a token: without one it ends with exit code 1', async () => {
    const { url, made } = await authApp();
    const res = await cli(['watch'], { apiUrl: url, env: BASE_ENV });
    expect(res.code).toBe(1);
    expect(res.stderr).toBe('error: this API needs a token: send Authorization: Bearer <token>\n');
    const watch = await startWatch(url, ['--json'], {
      ...BASE_ENV,
      ION_TOKEN: await made(['read']),
    });
    expect(await watch.interrupt()).toBe(0);
  });
});

describe('ion blob put', () => {
  it('uploads a file, prints its sha256 and size, and ion blob get returns it', async () => {
    const { api, url } = await apiApp();
    const src = join(api.dir, 'in.bin');
    const content = Buffer.from(Array.from({ length: 70_000 }, (_, i) => i % 251));
    await writeFile(src, content);
    const put = await cli(['blob', 'put', src], { apiUrl: url, env: BASE_ENV });
    expect(put.code, put.stderr).toBe(0);
    const match = /^([0-9a-f]{64}) (\d+)\n$/.exec(put.stdout);
    expect(match?.[2]).toBe(String(content.length));
    // Not a terminal: no progress line.
    expect(put.stderr).toBe('');

    const json = await cli(['blob', 'put', src, '--json'], { apiUrl: url, env: BASE_ENV });
    expect(JSON.parse(json.stdout)).toEqual({ sha256: match![1], size: content.length });

    const out = join(api.dir, 'out.bin');
    const got = await cli(['blob', 'get', match![1]!, '-o', out], { apiUrl: url, env: BASE_ENV });
    expect(got.code, got.stderr).toBe(0);
    expect((await readFile(out)).equals(content)).toBe(true);

    const missing = await cli(['blob', 'put', join(api.dir, 'nope')], {
      apiUrl: url,
      env: BASE_ENV,
    });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('no such file');
  });
});
