import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LocalExecutor } from '../../src/executors/local/local-executor.js';
import { executorConformance } from './executor.suite.js';

executorConformance('local', async () => {
  const executor = new LocalExecutor({ killGraceMs: 500 });
  await executor.start();
  return { executor, cleanup: () => executor.close() };
});

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
