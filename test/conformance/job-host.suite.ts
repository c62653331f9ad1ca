import { createHash, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { BlobStore } from '../../src/blob/blob-store.js';
import type { IonEvent, ModuleRecord, RunSpec } from '../../src/core/types.js';
import type { JobHost, JobHostResult } from '../../src/executors/job-host.js';
import { waitFor } from '../support/wait.js';

const FAILING = new URL('../../examples/failing/', import.meta.url).pathname;

/** What a host's test file hands to {@link jobHostConformance}; one per describe block. */
export interface JobHostFixture {
  /** A started host whose job directories live under `dataDir/jobs`. */
  host: JobHost;
  /** The real blob store the host prepares from and collects into. */
  blobs: BlobStore;
  dataDir: string;
  /** Whatever of this job is still running or left on the host (containers, processes). */
  leftovers(jobId: string): Promise<string[]>;
  cleanup(): Promise<void>;
}

/** What differs between hosts, declared rather than silently skipped. */
export interface JobHostCapabilities {
  /** The module's view of its job directory: `/ion` in a container; null: the host path. */
  moduleDir: string | null;
  /** `resources.memoryBytes` is enforced (a module past it ends with `module_oom`). */
  enforcesMemory: boolean;
  /** Modules can name an image (a missing one fails with `image_unavailable`). */
  runsImages: boolean;
  /** Inputs are mounted read-only: a write fails in the module itself. */
  readOnlyInputMount: boolean;
  /** Time the factory may take (an engine that builds its images first). Default 60 s. */
  setupTimeoutMs?: number;
}

const BAD_OUTPUTS = {
  json: 'is not valid JSON',
  type: 'raises event type "undeclared.type" which the module does not declare',
  missing: 'lists file "nope.txt" which does not exist in out/data',
  dotdot: 'contains ".."',
  absolute: 'is absolute',
  symlink: 'symlink pointing outside out/data',
} as const;

/**
 * The job host conformance suite: prepare, run and collect of one attempt, on a real blob
 * store, for every host (`local` processes, `docker` containers on podman and on dockerd).
 * Module scripts are POSIX `sh` (and python3 for the memory test), so the runtime image
 * and the host run the same commands.
 */
export function jobHostConformance(
  name: string,
  factory: () => Promise<JobHostFixture>,
  caps: JobHostCapabilities,
): void {
  describe(`JobHost conformance: ${name}`, () => {
    let fixture: JobHostFixture;
    /** Each test's own input blob (a test may corrupt and so lose it). */
    let inputSha: string;
    let inputText: string;
    const jobIds: string[] = [];

    beforeAll(async () => {
      fixture = await factory();
    }, caps.setupTimeoutMs ?? 60_000);
    beforeEach(async () => {
      inputText = `input ${randomUUID()}\n`;
      inputSha = (await fixture.blobs.put(Readable.from([Buffer.from(inputText)]))).sha256;
    });
    afterAll(async () => fixture?.cleanup());

    afterEach(async () => {
      // No container, process or job directory outlives its attempt.
      for (const jobId of jobIds.splice(0)) {
        expect(await fixture.leftovers(jobId), `left behind by ${jobId}`).toEqual([]);
        expect(existsSync(join(fixture.dataDir, 'jobs', jobId)), `job dir of ${jobId}`).toBe(false);
      }
    });

    const moduleOf = (run: RunSpec, extra: Partial<ModuleRecord> = {}): ModuleRecord => ({
      name: 'probe',
      subscribes: ['t.in'],
      publishes: ['child.made'],
      run,
      retries: 0,
      timeoutMs: 30_000,
      concurrency: 1,
      env: {},
      version: 1,
      paused: false,
      createdAt: new Date().toISOString(),
      updatedAt: new Date().toISOString(),
      ...extra,
    });
    const eventOf = (): IonEvent => ({
      eventId: randomUUID(),
      type: 't.in',
      correlationId: randomUUID(),
      parentEventId: null,
      source: 'api',
      sourceJobId: null,
      data: [{ key: 'colour', value: 'blue' }],
      files: [{ path: 'input.txt', sha256: inputSha, size: inputText.length }],
      createdAt: new Date().toISOString(),
    });
    interface Run {
      jobId: string;
      logFile: string;
      workDir: string;
      event: IonEvent;
      result: Promise<JobHostResult>;
    }
    const start = (module: ModuleRecord, signal = new AbortController().signal): Run => {
      const jobId = `job-${randomUUID()}`;
      jobIds.push(jobId);
      const event = eventOf();
      const logFile = join(fixture.dataDir, 'logs', jobId, '1.log');
      const result = fixture.host.run({
        jobId,
        attempt: 1,
        module,
        event,
        baseEnv: { PATH: '/usr/local/bin:/usr/bin:/bin', LANG: 'C.UTF-8' },
        logFile,
        signal,
      });
      return { jobId, logFile, workDir: join(fixture.dataDir, 'jobs', jobId, '1'), event, result };
    };
    const sh = (script: string, extra: Partial<ModuleRecord> = {}): ModuleRecord =>
      moduleOf({ command: ['sh', '-c', script] }, extra);
    const readLog = (run: Run): Promise<string> => readFile(run.logFile, 'utf8').catch(() => '');

    it('collects outputs, insights and child events of a successful module', async () => {
      const run = start(
        sh(`set -e
          cat in/data/input.txt > out/data/result.txt
          printf '[{"key":"lines","value":"1"}]' > out/insights.json
          printf '[{"key":"eventType","value":"child.made"},{"key":"files","value":"result.txt"},{"key":"n","value":"7"}]' > out/events/e1.json
          echo done`),
      );
      const { execution, failure, collected } = await run.result;
      expect(failure).toBeNull();
      expect(execution).toMatchObject({ exitCode: 0, timedOut: false, cancelled: false });
      expect(execution?.logTail).toContain('done');
      expect(collected?.insights).toEqual([{ key: 'lines', value: '1' }]);
      const size = inputText.length;
      expect(collected?.outputs).toEqual([{ path: 'result.txt', sha256: inputSha, size }]);
      expect(collected?.events).toHaveLength(1);
      expect(collected?.events[0]).toMatchObject({
        type: 'child.made',
        fileName: 'e1.json',
        data: [{ key: 'n', value: '7' }],
        files: [{ path: 'result.txt', sha256: inputSha, size }],
      });
    });

    it('reports a non-zero exit without collecting', async () => {
      const run = start(sh('echo failing >&2; exit 3'));
      const { execution, failure, collected } = await run.result;
      expect(failure).toBeNull();
      expect(collected).toBeNull();
      expect(execution).toMatchObject({ exitCode: 3, timedOut: false, cancelled: false });
      expect(execution?.failure).toBeUndefined();
      expect(execution?.logTail).toContain('failing');
    });

    it('stops a module that runs past its timeout', async () => {
      const started = Date.now();
      const run = start(sh('echo begun; sleep 60', { timeoutMs: 1000 }));
      const { execution, collected } = await run.result;
      expect(execution?.timedOut).toBe(true);
      expect(execution?.cancelled).toBe(false);
      expect(collected).toBeNull();
      expect(Date.now() - started).toBeLessThan(20_000);
      expect(execution?.logTail).toMatch(/timed out after 1000 ms/);
    });

    it('stops a running module when its signal is aborted', async () => {
      const abort = new AbortController();
      const run = start(sh('echo begun; sleep 60'), abort.signal);
      await waitFor('the module to start', async () =>
        (await readLog(run)).includes('begun') ? true : undefined,
      );
      abort.abort();
      const { execution, collected } = await run.result;
      expect(execution).toMatchObject({ cancelled: true, timedOut: false });
      expect(collected).toBeNull();
    });

    it('streams the log while the module runs', async () => {
      const run = start(
        sh('echo first line; while [ ! -e go ]; do sleep 0.05; done; echo second line >&2'),
      );
      // The first line is in the file while the module still waits for `go`.
      await waitFor('the first line in the log file', async () =>
        (await readLog(run)).includes('first line') ? true : undefined,
      );
      expect(await readLog(run)).not.toContain('second line');
      await writeFile(join(run.workDir, 'go'), '');
      const { execution } = await run.result;
      expect(execution?.exitCode).toBe(0);
      expect(await readLog(run)).toBe('first line\nsecond line\n');
      expect(execution?.logTail).toBe('first line\nsecond line\n');
    });

    it('gives the module the contract variables, its directory as working dir, and no worker secret', async () => {
      process.env.ION_TEST_WORKER_SECRET = 'hunter2';
      try {
        const run = start(
          sh(`set -e
            printf '[{"key":"base","value":"%s"},{"key":"ion_base","value":"%s"},{"key":"pwd","value":"%s"},{"key":"event","value":"%s"},{"key":"type","value":"%s"},{"key":"module","value":"%s"},{"key":"attempt","value":"%s"},{"key":"secret","value":"%s"},{"key":"meta","value":"%s"}]' \
              "$HANDLER_BASE_DIR" "$ION_BASE_DIR" "$(pwd)" "$ION_EVENT_ID" "$ION_EVENT_TYPE" "$ION_MODULE" "$ION_ATTEMPT" "\${ION_TEST_WORKER_SECRET:-none}" "$(test -f "$HANDLER_BASE_DIR/in/eventmeta.json" && echo yes)" > out/insights.json`),
        );
        const { collected, failure } = await run.result;
        expect(failure).toBeNull();
        const dir = caps.moduleDir ?? run.workDir;
        expect(
          Object.fromEntries((collected?.insights ?? []).map((i) => [i.key, i.value])),
        ).toEqual({
          base: dir,
          ion_base: dir,
          pwd: dir,
          event: run.event.eventId,
          type: 't.in',
          module: 'probe',
          attempt: '1',
          secret: 'none',
          meta: 'yes',
        });
      } finally {
        delete process.env.ION_TEST_WORKER_SECRET;
      }
    });

    it('keeps inputs read-only: the store never serves an input a module changed', async () => {
      const run = start(
        sh('chmod u+w in/data/input.txt 2>/dev/null; echo tampered >> in/data/input.txt'),
      );
      const { execution, failure, collected } = await run.result;
      expect(collected).toBeNull();
      if (caps.readOnlyInputMount) {
        // The write itself fails inside the container: the blob is untouched.
        expect(execution?.exitCode).not.toBe(0);
        expect(execution?.logTail).toMatch(/read-only file system/i);
        expect(await fixture.blobs.verify(inputSha)).toBe(true);
      } else {
        // A host process (as root) can write through the hard link: the attempt fails and
        // the corrupted blob is dropped from the store.
        expect(failure?.code).toBe('module_output_invalid');
        expect(failure?.message).toMatch(/modified its input in\/data\/input.txt/);
        expect(await fixture.blobs.verify(inputSha)).toBe(false);
      }
    });

    it('stores a large output file whole', async () => {
      const size = 48 * 1024 * 1024;
      const run = start(sh(`head -c ${size} /dev/zero > out/data/big.bin`));
      const { collected, failure } = await run.result;
      expect(failure).toBeNull();
      const sha = createHash('sha256').update(Buffer.alloc(size)).digest('hex');
      expect(collected?.outputs).toEqual([{ path: 'big.bin', sha256: sha, size }]);
      expect(await fixture.blobs.stat(sha)).toEqual({ sha256: sha, size });
    });

    for (const [kind, message] of Object.entries(BAD_OUTPUTS)) {
      it(`refuses bad output: ${kind}`, async () => {
        const run = start(
          moduleOf(
            { command: ['sh', join(FAILING, 'bad-output.sh')] },
            { env: { BAD: kind }, publishes: ['bad.output'] },
          ),
        );
        const { execution, failure, collected } = await run.result;
        expect(execution?.exitCode).toBe(0);
        expect(collected).toBeNull();
        expect(failure?.code).toBe('module_output_invalid');
        expect(failure?.kind).toBe('module');
        expect(failure?.message).toContain(message);
      });
    }

    it.skipIf(!caps.enforcesMemory)(
      'ends a module that allocates past its memory limit with module_oom',
      async () => {
        const run = start(
          moduleOf(
            {
              command: [
                'python3',
                '-c',
                'import time\nb=[]\nwhile True:\n  b.append(bytearray(16*1024*1024))\n  time.sleep(0.01)',
              ],
            },
            { resources: { memoryBytes: 64 * 1024 * 1024 } },
          ),
        );
        const { execution, collected } = await run.result;
        expect(collected).toBeNull();
        expect(execution?.failure?.code).toBe('module_oom');
        expect(execution?.failure?.message).toMatch(/memory/);
      },
    );

    it.skipIf(!caps.runsImages)(
      'fails a module whose image does not exist with image_unavailable, slowly retried',
      async () => {
        const image = `ion-test/no-such-image:${randomUUID().slice(0, 8)}`;
        const run = start(moduleOf({ image, pull: 'never' }));
        const { execution, collected } = await run.result;
        expect(collected).toBeNull();
        expect(execution?.failure?.code).toBe('image_unavailable');
        expect(execution?.failure?.message).toContain(image);
        expect(execution?.failure?.retryAfterMs).toBeGreaterThan(0);
      },
    );
  });
}
