import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ExecutionSpec, Executor } from '../../src/executors/executor.js';

/** What an executor adapter's test file hands to {@link executorConformance}. */
export interface ExecutorFixture {
  executor: Executor;
  /** Closes the executor and removes whatever the factory created. */
  cleanup(): Promise<void>;
}

/** Capabilities that differ between adapters. */
export interface ExecutorConformanceOptions {
  /**
   * True when the module's processes live in the test's pid namespace (local processes), so
   * the suite can check with `process.kill(pid, 0)` that processes are gone. False for
   * containers and pods, whose pids mean nothing here. Default true.
   */
  sharesPidNamespace?: boolean;
}

/**
 * The executor conformance suite, run against every adapter (local, container, Kubernetes).
 * Commands are plain `sh`, so any image with a POSIX shell and coreutils passes. `factory` is
 * called once per test and must return a started executor.
 */
export function executorConformance(
  name: string,
  factory: () => Promise<ExecutorFixture>,
  options: ExecutorConformanceOptions = {},
): void {
  const sharesPids = options.sharesPidNamespace ?? true;

  describe(`Executor conformance: ${name}`, () => {
    let fixture: ExecutorFixture;
    let executor: Executor;
    let root: string;
    let workDir: string;

    beforeEach(async () => {
      fixture = await factory();
      executor = fixture.executor;
      root = await mkdtemp(join(tmpdir(), 'ion-exec-suite-'));
      workDir = join(root, 'job');
      await mkdirp(workDir);
    });

    afterEach(async () => {
      await fixture.cleanup();
      await rm(root, { recursive: true, force: true });
    });

    const spec = (
      overrides: Partial<ExecutionSpec> & Pick<ExecutionSpec, 'command'>,
    ): ExecutionSpec => ({
      jobId: `job-${randomUUID()}`,
      attempt: 1,
      workDir,
      env: { PATH: '/usr/local/bin:/usr/bin:/bin' },
      timeoutMs: 30_000,
      logFile: join(root, 'logs', 'attempt-1.log'),
      signal: new AbortController().signal,
      ...overrides,
    });
    const sh = (script: string, overrides: Partial<ExecutionSpec> = {}): ExecutionSpec =>
      spec({ command: ['sh', '-c', script], ...overrides });

    it('reports exit code 0 of a successful run', async () => {
      const result = await executor.run(sh('exit 0'));
      expect(result).toMatchObject({
        exitCode: 0,
        signal: null,
        timedOut: false,
        cancelled: false,
      });
      expect(result.durationMs).toBeGreaterThanOrEqual(0);
    });

    it('reports a non-zero exit code without throwing', async () => {
      const result = await executor.run(sh('exit 3'));
      expect(result).toMatchObject({
        exitCode: 3,
        signal: null,
        timedOut: false,
        cancelled: false,
      });
    });

    it('gives the module exactly the env it was given, nothing from the parent', async () => {
      const secret = `ION_SUITE_SECRET_${randomUUID().replaceAll('-', '')}`;
      process.env[secret] = 'leaked';
      try {
        const env = {
          PATH: '/usr/local/bin:/usr/bin:/bin',
          ION_GIVEN: 'given value',
          ION_EMPTY: '',
        };
        const result = await executor.run(spec({ command: ['env'], env }));
        expect(result.exitCode).toBe(0);
        const seen = parseEnv(await readFile(join(root, 'logs', 'attempt-1.log'), 'utf8'));
        expect(seen.get('ION_GIVEN')).toBe('given value');
        expect(seen.get('ION_EMPTY')).toBe('');
        expect(seen.has(secret)).toBe(false);
        const inherited = Object.keys(process.env).filter((key) => !(key in env) && seen.has(key));
        expect(inherited).toEqual([]);
      } finally {
        delete process.env[secret];
      }
    });

    it('runs in workDir', async () => {
      await writeFile(join(workDir, 'input.txt'), 'from the job dir');
      const result = await executor.run(sh('cat input.txt > copy.txt'));
      expect(result.exitCode).toBe(0);
      expect(await readFile(join(workDir, 'copy.txt'), 'utf8')).toBe('from the job dir');
    });

    it('appends stdout and stderr to the log file and the log tail', async () => {
      const logFile = join(root, 'deep', 'logs', 'run.log');
      await mkdirp(join(root, 'deep', 'logs'));
      await writeFile(logFile, 'earlier attempt\n');
      const result = await executor.run(
        sh('echo to-stdout; echo to-stderr >&2; exit 4', { logFile }),
      );
      expect(result.exitCode).toBe(4);
      const log = await readFile(logFile, 'utf8');
      expect(log.startsWith('earlier attempt\n')).toBe(true);
      expect(log).toContain('to-stdout\n');
      expect(log).toContain('to-stderr\n');
      expect(result.logTail).toContain('to-stdout');
      expect(result.logTail).toContain('to-stderr');
    });

    it('creates the parent directories of the log file', async () => {
      const logFile = join(root, 'not', 'yet', 'there.log');
      await executor.run(sh('echo hello', { logFile }));
      expect(await readFile(logFile, 'utf8')).toContain('hello');
    });

    it('keeps the whole output in the file but only the last few KiB in the tail, as valid text', async () => {
      // 40,000 lines of "é" (3 bytes each): a tail cut anywhere may split a character.
      const result = await executor.run(sh('yes é | head -n 40000; echo END-MARKER'));
      expect(result.exitCode).toBe(0);
      const log = await readFile(join(root, 'logs', 'attempt-1.log'), 'utf8');
      expect(log.length).toBe(40_000 * 2 + 'END-MARKER\n'.length);
      expect(result.logTail.length).toBeGreaterThan(0);
      expect(result.logTail.length).toBeLessThan(64 * 1024);
      expect(result.logTail.trimEnd().endsWith('END-MARKER')).toBe(true);
      expect(result.logTail).not.toContain('\uFFFD');
    });

    it('kills the run and its grandchildren on timeout', async () => {
      const started = Date.now();
      const result = await executor.run(
        sh('sleep 100 & echo $! > grandchild.pid; wait', { timeoutMs: 1000 }),
      );
      expect(result.timedOut).toBe(true);
      expect(result.cancelled).toBe(false);
      expect(result.exitCode).not.toBe(0);
      expect(Date.now() - started).toBeLessThan(20_000);
      if (sharesPids) await expectProcessGone(await readPid(join(workDir, 'grandchild.pid')));
    });

    it('kills on timeout a run that ignores SIGTERM', async () => {
      const started = Date.now();
      const result = await executor.run(
        sh('trap "" TERM; sleep 100 & echo $! > grandchild.pid; while :; do sleep 1; done', {
          timeoutMs: 1000,
        }),
      );
      expect(result.timedOut).toBe(true);
      expect(result.exitCode).not.toBe(0);
      expect(Date.now() - started).toBeLessThan(30_000);
      if (sharesPids) await expectProcessGone(await readPid(join(workDir, 'grandchild.pid')));
    });

    it('ends the run when its main process exits and kills what it left running', async () => {
      const started = Date.now();
      const result = await executor.run(sh('sleep 100 & echo $! > background.pid; echo main-done'));
      expect(result).toMatchObject({ exitCode: 0, timedOut: false, cancelled: false });
      expect(result.logTail).toContain('main-done');
      expect(Date.now() - started).toBeLessThan(30_000);
      if (sharesPids) await expectProcessGone(await readPid(join(workDir, 'background.pid')));
    });

    it('cancels a running job when its signal is aborted', async () => {
      const controller = new AbortController();
      const running = executor.run(
        sh('sleep 100 & echo $! > grandchild.pid; echo started > started.txt; wait', {
          signal: controller.signal,
        }),
      );
      await waitFor(
        async () => (await readFile(join(workDir, 'started.txt'), 'utf8').catch(() => '')) !== '',
      );
      controller.abort();
      const result = await running;
      expect(result).toMatchObject({ cancelled: true, timedOut: false });
      expect(result.exitCode).not.toBe(0);
      if (sharesPids) await expectProcessGone(await readPid(join(workDir, 'grandchild.pid')));
    });

    it('does not start a job whose signal is already aborted', async () => {
      const controller = new AbortController();
      controller.abort();
      const result = await executor.run(sh('echo ran > ran.txt', { signal: controller.signal }));
      expect(result.cancelled).toBe(true);
      expect(result.exitCode).not.toBe(0);
      await expect(readFile(join(workDir, 'ran.txt'), 'utf8')).rejects.toMatchObject({
        code: 'ENOENT',
      });
    });

    it('resolves with exit code 127 and a clear log line when the command does not exist', async () => {
      const missing = `ion-no-such-command-${randomUUID().slice(0, 8)}`;
      const result = await executor.run(spec({ command: [missing, 'arg'] }));
      expect(result).toMatchObject({ exitCode: 127, timedOut: false, cancelled: false });
      expect(result.logTail).toContain(missing);
      expect(result.logTail).toMatch(/not found/i);
      expect(await readFile(join(root, 'logs', 'attempt-1.log'), 'utf8')).toContain(missing);
    });

    it('resolves with exit code 126 when the command is not executable', async () => {
      await writeFile(join(workDir, 'script.sh'), '#!/bin/sh\necho hi\n');
      await chmod(join(workDir, 'script.sh'), 0o644);
      const result = await executor.run(spec({ command: ['./script.sh'] }));
      expect(result).toMatchObject({ exitCode: 126, timedOut: false, cancelled: false });
      expect(result.logTail).toContain('script.sh');
    });

    it('close kills active runs, which resolve as cancelled, and is idempotent', async () => {
      const running = executor.run(sh('echo started > started.txt; sleep 100'));
      await waitFor(
        async () => (await readFile(join(workDir, 'started.txt'), 'utf8').catch(() => '')) !== '',
      );
      await executor.close();
      const result = await running;
      expect(result.cancelled).toBe(true);
      expect(result.exitCode).not.toBe(0);
      await expect(executor.close()).resolves.toBeUndefined();
      await expect(executor.run(sh('exit 0'))).rejects.toThrow();
    });
  });
}

/** Polls `condition` until true, failing after `deadlineMs`. */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  deadlineMs = 10_000,
): Promise<void> {
  const until = Date.now() + deadlineMs;
  while (!(await condition())) {
    if (Date.now() > until) throw new Error(`condition not met within ${deadlineMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function expectProcessGone(pid: number): Promise<void> {
  await waitFor(() => !isAlive(pid));
  expect(isAlive(pid)).toBe(false);
}

/**
 * Whether `pid` names a live process. A zombie counts as dead: it runs nothing, and where
 * PID 1 does not reap orphans (a bare container) it would otherwise linger forever.
 */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}

async function readPid(path: string): Promise<number> {
  const pid = Number.parseInt(await readFile(path, 'utf8'), 10);
  expect(pid).toBeGreaterThan(1);
  return pid;
}

function parseEnv(text: string): Map<string, string> {
  const vars = new Map<string, string>();
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) vars.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return vars;
}

async function mkdirp(path: string): Promise<void> {
  await mkdir(path, { recursive: true });
}
