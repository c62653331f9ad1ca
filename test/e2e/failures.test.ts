import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Job } from '../../src/core/types.js';
import { waitFor } from '../support/wait.js';
import {
  FAILING,
  cleanup,
  cli,
  startIon,
  tempDir,
  writePipeline,
  type IonProcess,
} from './harness.js';

const BAD_KINDS = {
  json: 'is not valid JSON',
  type: 'raises event type "undeclared.type" which the module does not declare',
  missing: 'lists file "nope.txt" which does not exist in out/data',
  dotdot: 'contains ".."',
  absolute: 'is absolute',
  symlink: 'symlink pointing outside out/data',
} as const;

function pipeline(slow: { sleepSeconds: number; timeout: string }): string {
  const bad = Object.keys(BAD_KINDS)
    .map(
      (kind) => `  - name: bad-${kind}
    subscribes: [bad.${kind}]
    publishes: [bad.output]
    run: { command: [sh, ${join(FAILING, 'bad-output.sh')}] }
    retries: 0
    env: { BAD: ${kind} }
`,
    )
    .join('');
  return `modules:
  - name: mutate
    subscribes: [t.mutate]
    run: { command: [sh, -c, 'chmod u+w in/data/input.txt; echo tampered >> in/data/input.txt'] }
    retries: 0
  - name: flaky
    subscribes: [t.flaky]
    run: { command: [sh, ${join(FAILING, 'flaky.sh')}] }
    retries: 2
  - name: slow
    subscribes: [t.slow]
    run: { command: [sh, ${join(FAILING, 'slow.sh')}] }
    timeout: ${slow.timeout}
    retries: 1
    env: { SLEEP_SECONDS: ${slow.sleepSeconds} }
${bad}`;
}

describe('failure handling on a real ion up process', () => {
  let ion: IonProcess;
  let dir: string;

  beforeAll(async () => {
    dir = await tempDir();
    ion = await startIon();
    const applied = await cli(
      ['apply', '-f', await writePipeline(dir, pipeline({ sleepSeconds: 30, timeout: '1s' }))],
      { apiUrl: ion.url },
    );
    expect(applied.code, applied.stderr).toBe(0);
  });

  afterAll(async () => {
    await ion?.stop();
    await cleanup(dir, ion?.dataDir ?? '');
  });

  let last: Job | undefined;
  const jobOf = (module: string, eventId: string, states: Job['state'][]) =>
    waitFor(
      `${module} job in ${states.join('/')}`,
      async () => {
        const [job] = await ion.client.listJobs({ module, eventId });
        last = job;
        return job !== undefined && job.eventId === eventId && states.includes(job.state)
          ? job
          : undefined;
      },
      90_000,
    );

  it('retries a module that fails once, then it succeeds', async () => {
    const { eventId } = await ion.client.publish({ type: 't.flaky' });
    const job = await jobOf('flaky', eventId, ['succeeded']);
    expect(job.attempts).toBe(2);
    const { attempts } = await ion.client.getJob(job.jobId);
    expect(attempts.map((a) => a.outcome)).toEqual(['failed', 'succeeded']);
    expect(attempts[0]!.errorCode).toBe('module_failed');
    expect(attempts[0]!.exitCode).toBe(3);
    const firstLog = await cli(['job', 'logs', job.jobId, '--attempt', '1'], { apiUrl: ion.url });
    expect(firstLog.stdout.length).toBeGreaterThan(0);
  });

  it('kills a module over its timeout, retries, dead-letters, then redrives it to success after a fix', async () => {
    const { eventId } = await ion.client.publish({ type: 't.slow' });
    const dead = await jobOf('slow', eventId, ['dead_lettered']).catch((err: unknown) => {
      throw new Error(`${String(err)}; last seen: ${JSON.stringify(last)}\n${ion.output()}`);
    });
    expect(dead.attempts).toBe(2);
    const { attempts } = await ion.client.getJob(dead.jobId);
    expect(attempts.every((a) => a.errorCode === 'module_timeout')).toBe(true);
    expect(attempts.every((a) => (a.durationMs ?? 0) < 20_000)).toBe(true); // killed, not slept out

    const listed = await cli(['dlq', 'ls', '--module', 'slow', '--json'], { apiUrl: ion.url });
    const { deadLetters } = JSON.parse(listed.stdout) as {
      deadLetters: { id: string; eventId: string; reason: string }[];
    };
    const letter = deadLetters.find((d) => d.eventId === eventId)!;
    expect(letter.reason).toContain('module_timeout');

    // The fix: a new version of the module that finishes in time.
    const fixed = await cli(
      [
        'apply',
        '-f',
        await writePipeline(dir, pipeline({ sleepSeconds: 0, timeout: '20s' }), 'fixed.yaml'),
        '--json',
      ],
      { apiUrl: ion.url },
    );
    const result = JSON.parse(fixed.stdout) as {
      modules: { name: string; version: number; change: string }[];
    };
    expect(result.modules.find((m) => m.name === 'slow')).toMatchObject({
      version: 2,
      change: 'updated',
    });

    const redriven = await cli(['dlq', 'redrive', letter.id], { apiUrl: ion.url });
    expect(redriven.code, redriven.stderr).toBe(0);
    const done = await jobOf('slow', eventId, ['succeeded']);
    expect(done.attempts).toBe(3);
    expect(done.moduleVersion).toBe(2);
    expect(
      (await ion.client.listDeadLetters({ module: 'slow' })).some((d) => d.eventId === eventId),
    ).toBe(false);
  });

  it.each(Object.entries(BAD_KINDS))(
    'fails the attempt on bad module output (%s) with a clear message and keeps serving',
    async (kind, message) => {
      const { eventId, correlationId } = await ion.client.publish({ type: `bad.${kind}` });
      const job = await jobOf(`bad-${kind}`, eventId, ['dead_lettered']);
      const { attempts } = await ion.client.getJob(job.jobId);
      expect(attempts).toHaveLength(1);
      expect(attempts[0]!.errorCode).toBe('module_output_invalid');
      expect(attempts[0]!.error).toContain(message);
      const trace = await ion.client.trace(correlationId);
      expect(trace.events).toHaveLength(1); // nothing of the failed attempt was published
      expect((await ion.client.health()).status).toBe('ok');
    },
  );

  it('fails a module that modifies its (hard-linked) input in place and never serves the changed bytes', async () => {
    const file = join(dir, 'input.txt');
    await writeFile(file, 'original content\n');
    const ref = await ion.client.uploadFile(file);
    const { eventId } = await ion.client.publish({
      type: 't.mutate',
      files: [{ path: 'input.txt', sha256: ref.sha256 }],
    });
    const job = await jobOf('mutate', eventId, ['dead_lettered']);
    const { attempts } = await ion.client.getJob(job.jobId);
    expect(attempts[0]!.error).toContain('modified its input in/data/input.txt in place');
    // The blob store holds either the original bytes or nothing under that address.
    const served = await ion.client.downloadBlob(ref.sha256).then(
      async (stream) => Buffer.concat(await stream.toArray()).toString(),
      () => null,
    );
    expect(served === null || served === 'original content\n').toBe(true);
  });

  it('refuses an invalid pipeline file with a message naming the field', async () => {
    const badTimeout = await writePipeline(
      dir,
      'modules:\n  - name: x\n    subscribes: [a]\n    run: { command: [true] }\n    timeout: soon\n',
      'bad1.yaml',
    );
    const r1 = await cli(['apply', '-f', badTimeout], { apiUrl: ion.url });
    expect(r1.code).toBe(1);
    expect(r1.stderr).toContain('modules[0].timeout');
    expect(r1.stderr).not.toMatch(/\n\s+at /);

    const unknownField = await writePipeline(
      dir,
      'modules:\n  - name: x\n    subscribes: [a]\n    run: { command: [true] }\n    retires: 3\n',
      'bad2.yaml',
    );
    const r2 = await cli(['apply', '-f', unknownField], { apiUrl: ion.url });
    expect(r2.code).toBe(1);
    expect(r2.stderr).toContain('modules[0].retires: unknown field');

    const notYaml = await writePipeline(dir, 'modules: [\n  - {', 'bad3.yaml');
    const r3 = await cli(['apply', '-f', notYaml], { apiUrl: ion.url });
    expect(r3.code).toBe(1);
    expect(r3.stderr).toContain('bad3.yaml');
    expect((await ion.client.listModules()).some((m) => m.name === 'x')).toBe(false);
  });

  it('exits 2 on a usage error', async () => {
    const r = await cli(['event', 'publish'], { apiUrl: ion.url });
    expect(r.code).toBe(2);
  });
});
