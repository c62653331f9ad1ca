import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LocalExecutor } from '../../src/executors/local/local-executor.js';
import { executorConformance } from './executor.suite.js';
import { waitFor } from '../support/wait.js';

// Every place a process can be spawned from passes the whole suite.
for (const spawnOn of ['inline', 'thread', 'process'] as const) {
  executorConformance(`local (spawned ${spawnOn})`, async () => {
    const executor = new LocalExecutor({ killGraceMs: 500, spawnOn });
    await executor.start();
    return { executor, cleanup: () => executor.close() };
  });
}

describe('LocalExecutor specifics', () => {
  let root: string;
  let executor: LocalExecutor;

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'ion-local-exec-'));
    executor = new LocalExecutor({ logTailBytes: 100 });
  });

  afterEach(async () => {
    await executor.close();
    await rm(root, { recursive: true, force: true });
  });

  const base = {
    jobId: 'job-1',
    attempt: 1,
    timeoutMs: 10_000,
    signal: new AbortController().signal,
  };

  it('passes exactly the given environment, no variable added', async () => {
    const logFile = join(root, 'env.log');
    const env = { PATH: '/usr/bin:/bin', ION_ONLY: 'yes' };
    const result = await executor.run({ ...base, workDir: root, command: ['env'], env, logFile });
    expect(result.exitCode).toBe(0);
    const lines = (await readFile(logFile, 'utf8')).trim().split('\n').sort();
    expect(lines).toEqual(['ION_ONLY=yes', 'PATH=/usr/bin:/bin']);
  });

  it('keeps at most logTailBytes bytes of output in the tail', async () => {
    const logFile = join(root, 'tail.log');
    const command = ['sh', '-c', 'i=0; while [ $i -lt 500 ]; do echo "line $i"; i=$((i+1)); done'];
    const result = await executor.run({
      ...base,
      workDir: root,
      command,
      env: { PATH: '/usr/bin:/bin' },
      logFile,
    });
    expect(Buffer.byteLength(result.logTail)).toBeLessThanOrEqual(100);
    expect(result.logTail.endsWith('line 499\n')).toBe(true);
    expect((await readFile(logFile, 'utf8')).split('\n')).toHaveLength(501);
  });

  it('rejects a missing workDir as a platform fault', async () => {
    const spec = {
      ...base,
      workDir: join(root, 'nope'),
      command: ['true'],
      env: {},
      logFile: join(root, 'x.log'),
    };
    await expect(executor.run(spec)).rejects.toMatchObject({ code: 'not_found' });
  });

  it('rejects an empty command', async () => {
    const spec = { ...base, workDir: root, command: [], env: {}, logFile: join(root, 'x.log') };
    await expect(executor.run(spec)).rejects.toMatchObject({ code: 'validation_failed' });
  });
});

describe('LocalExecutor: the child writes its log file directly', () => {
  let root: string;
  let executor: LocalExecutor;

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'ion-local-exec-fd-'));
    executor = new LocalExecutor({ logTailBytes: 100, killGraceMs: 500 });
  });

  afterEach(async () => {
    await executor.close();
    await rm(root, { recursive: true, force: true });
  });

  const spec = (script: string, logFile: string, timeoutMs = 10_000) => ({
    jobId: 'job-1',
    attempt: 1,
    timeoutMs,
    signal: new AbortController().signal,
    workDir: root,
    command: ['sh', '-c', script],
    env: { PATH: '/usr/bin:/bin' },
    logFile,
  });

  it('gives the child the log file itself as stdout and stderr, not a pipe', async () => {
    const logFile = join(root, 'fd.log');
    const script =
      'for f in /dev/stdout /dev/stderr; do if [ -f $f ]; then echo file; else echo other; fi; done';
    const result = await executor.run(spec(script, logFile));
    expect(result.exitCode).toBe(0);
    expect(await readFile(logFile, 'utf8')).toBe('file\nfile\n');
  });

  it('puts only what this run wrote in the tail, not earlier content of the file', async () => {
    const logFile = join(root, 'append.log');
    await writeFile(logFile, 'x'.repeat(500) + '\nearlier attempt\n');
    const result = await executor.run(spec('echo this run', logFile));
    expect(result.logTail).toBe('this run\n');
    expect(await readFile(logFile, 'utf8')).toMatch(/earlier attempt\nthis run\n$/);
  });

  it("appends Ion's timeout note on a line of its own, to the file and the tail", async () => {
    const logFile = join(root, 'timeout.log');
    const result = await executor.run(spec('printf partial; sleep 100', logFile, 300));
    expect(result.timedOut).toBe(true);
    expect(result.logTail).toMatch(/^partial\n\[ion\] timed out after 300 ms/);
    expect(await readFile(logFile, 'utf8')).toBe(result.logTail);
  });

  it('does not wait for a descendant that escaped the process group and holds the log file', async () => {
    const logFile = join(root, 'escaped.log');
    const started = Date.now();
    const result = await executor.run(
      spec(
        'setsid sh -c "echo \\$\\$ > escaped.pid; exec sleep 30" & sleep 0.2; echo main-done',
        logFile,
      ),
    );
    const pid = Number.parseInt(await readFile(join(root, 'escaped.pid'), 'utf8'), 10);
    try {
      expect(result.exitCode).toBe(0);
      expect(result.logTail).toContain('main-done');
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      if (pid > 1) process.kill(pid, 'SIGKILL');
    }
  });
});

describe('LocalExecutor with a launcher process', () => {
  let root: string;
  let executor: LocalExecutor;

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'ion-launcher-'));
    executor = new LocalExecutor({ spawnOn: 'process', killGraceMs: 500 });
  });

  afterEach(async () => {
    await executor.close();
    await rm(root, { recursive: true, force: true });
  });

  const alive = (pid: number): boolean => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };

  it('ends every one of many short runs in twelve lanes (an exit can arrive before its listener)', async () => {
    // Several exit messages can come in one IPC callback, before the awaiting run attached
    // its listener; this lost runs until the child kept its end for a late listener.
    for (const spawnOn of ['thread', 'process'] as const) {
      const many = new LocalExecutor({ spawnOn });
      try {
        // Twelve lanes, each starting its next run as soon as the last one ended.
        let next = 0;
        const exitCodes: (number | null)[] = [];
        const lane = async (): Promise<void> => {
          for (let i = next++; i < 600; i = next++) {
            const result = await many.run({
              jobId: `j${i}`,
              attempt: 1,
              timeoutMs: 60_000,
              signal: new AbortController().signal,
              workDir: root,
              command: ['sh', '-c', 'echo hi'],
              env: { PATH: '/usr/bin:/bin' },
              logFile: join(root, `${spawnOn}-${i}.log`),
            });
            exitCodes.push(result.exitCode);
          }
        };
        await Promise.all(Array.from({ length: 12 }, lane));
        expect(exitCodes.filter((code) => code === 0)).toHaveLength(600);
      } finally {
        await many.close();
      }
    }
  });

  it('ends the runs of a launcher that died, kills their processes, and starts a new one', async () => {
    const spec = (name: string, script: string) => ({
      jobId: name,
      attempt: 1,
      timeoutMs: 60_000,
      signal: new AbortController().signal,
      workDir: root,
      command: ['sh', '-c', script],
      env: { PATH: '/usr/bin:/bin' },
      logFile: join(root, `${name}.log`),
    });
    // The module records its parent (the launcher) and itself, then waits.
    const running = executor.run(
      spec('long', 'echo $PPID > launcher.pid; echo $$ > self.pid; exec sleep 60'),
    );
    const read = async (file: string) =>
      waitFor(`${file} written`, async () => {
        const text = await readFile(join(root, file), 'utf8').catch(() => '');
        return text.trim() === '' ? undefined : Number(text.trim());
      });
    const launcher = await read('launcher.pid');
    const module = await read('self.pid');
    expect(launcher).not.toBe(process.pid); // not spawned by Ion itself
    process.kill(launcher, 'SIGKILL');
    const result = await running;
    expect(result).toMatchObject({ exitCode: null, signal: 'SIGKILL', timedOut: false });
    await waitFor('the module process to be gone', () => (alive(module) ? undefined : true));

    const next = await executor.run(spec('next', 'echo again'));
    expect(next.exitCode).toBe(0);
    expect(next.logTail).toContain('again');
  });
});
