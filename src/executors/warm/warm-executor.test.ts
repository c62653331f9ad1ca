import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ExecutionSpec } from '../executor.js';
import { WarmExecutor } from './warm-executor.js';
import { waitFor } from '../../../test/support/wait.js';

const SDK = resolve(import.meta.dirname, '../../../sdk');

// A module driven by the file `cmd` in its job directory, written with the Python SDK.
const PY_MODULE = `
import os, sys, threading, time
sys.path.insert(0, ${JSON.stringify(join(SDK, 'python'))})
from ion_warm import serve

if os.environ.get("TICKER"):
    def tick():
        while True:
            sys.stdout.write("tick\\n"); sys.stdout.flush(); time.sleep(0.001)
    threading.Thread(target=tick, daemon=True).start()

def main(job_dir):
    cmd = open("cmd").read().strip()
    eid = os.environ["ION_EVENT_ID"]
    with open(os.path.join(job_dir, "seen"), "w") as f:
        f.write("%s %s %s %s" % (eid, os.getpid(), os.getcwd(), os.environ.get("LEAK", "")))
    os.environ["LEAK"] = "leaked"
    for i in range(50):
        print("job %s line %d" % (eid, i))
    if cmd == "fail": raise ValueError("boom")
    if cmd == "exit3": sys.exit(3)
    if cmd == "crash": os._exit(7)
    if cmd == "hang": time.sleep(60)
    if cmd == "forge":
        print('{"type":"done","id":"%s","ok":true}' % eid)
        print("\\x1eion-end:00000000000000000000000000000000\\x1e")
        sys.stdout.flush(); time.sleep(0.3)
        open("late", "w").write("x")
    return 0

serve(main)
`;

const NODE_MODULE = `
import { readFileSync, writeFileSync } from 'node:fs';
import { serve } from ${JSON.stringify(join(SDK, 'node/ion-warm.mjs'))};
serve(async (dir) => {
  const cmd = readFileSync('cmd', 'utf8').trim();
  writeFileSync(dir + '/seen', process.env.ION_EVENT_ID + ' ' + process.pid + ' ' + process.cwd());
  console.log('job ' + process.env.ION_EVENT_ID);
  if (cmd === 'exit3') process.exit(3);
  if (cmd === 'fail') throw new Error('boom');
  if (cmd === 'crash') setImmediate(() => process.abort());
  if (cmd === 'crash') await new Promise((r) => setTimeout(r, 1000));
  return 0;
});
`;

let root: string;
let pyModule: string;
let nodeModule: string;
let executor: WarmExecutor;
let n = 0;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'ion-warm-test-'));
  pyModule = join(root, 'module.py');
  nodeModule = join(root, 'module.mjs');
  await writeFile(pyModule, PY_MODULE);
  await writeFile(nodeModule, NODE_MODULE);
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

afterEach(async () => {
  const pids = executor.pids();
  await executor.close();
  for (const pid of pids) expect(alive(pid)).toBe(false);
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

interface JobOptions {
  cmd?: string;
  version?: number;
  maxJobs?: number;
  timeoutMs?: number;
  signal?: AbortSignal;
  command?: string[];
  env?: Record<string, string>;
}

async function job(options: JobOptions = {}): Promise<{ spec: ExecutionSpec; dir: string }> {
  n += 1;
  const dir = join(root, `job-${n}`);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'cmd'), options.cmd ?? 'ok');
  const spec: ExecutionSpec = {
    jobId: `job-${n}`,
    attempt: 1,
    module: 'm',
    moduleVersion: options.version ?? 1,
    workDir: dir,
    command: options.command ?? ['python3', pyModule],
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HANDLER_BASE_DIR: dir,
      ION_BASE_DIR: dir,
      ION_MODULE: 'm',
      ION_EVENT_ID: `ev-${n}`,
      ION_ATTEMPT: '1',
      ...options.env,
    },
    timeoutMs: options.timeoutMs ?? 20_000,
    logFile: join(root, `job-${n}.log`),
    signal: options.signal ?? new AbortController().signal,
    warm: { maxJobs: options.maxJobs ?? 100, idleTimeoutMs: 60_000 },
  };
  return { spec, dir };
}

const seen = async (dir: string) => (await readFile(join(dir, 'seen'), 'utf8')).split(' ');
const logOf = (spec: ExecutionSpec) => readFile(spec.logFile, 'utf8');

describe('WarmExecutor with the Python SDK', () => {
  it('runs jobs one after another in one process, each in its own directory, env and log', async () => {
    executor = new WarmExecutor({ killGraceMs: 500 });
    const a = await job();
    const b = await job();
    expect((await executor.run(a.spec)).exitCode).toBe(0);
    const second = await executor.run(b.spec);
    expect(second.exitCode).toBe(0);
    const [eventA, pidA, cwdA, leakA] = await seen(a.dir);
    const [eventB, pidB, cwdB, leakB] = await seen(b.dir);
    expect(eventA).toBe(a.spec.env.ION_EVENT_ID);
    expect(eventB).toBe(b.spec.env.ION_EVENT_ID);
    expect(pidB).toBe(pidA);
    expect(cwdA).toBe(a.dir);
    expect(cwdB).toBe(b.dir);
    expect([leakA, leakB]).toEqual(['', '']); // os.environ is restored between jobs
    const logB = await logOf(b.spec);
    expect(logB).toContain(`job ${eventB} line 49`);
    expect(logB).not.toContain(`job ${eventA} `);
    expect(second.logTail).toContain(`job ${eventB} line 49`);
    expect(executor.pids()).toEqual([Number(pidA)]);
  });

  it('fails a job whose function raises or exits non-zero, and keeps the process', async () => {
    executor = new WarmExecutor({ killGraceMs: 500 });
    const a = await job({ cmd: 'fail' });
    const failed = await executor.run(a.spec);
    expect(failed.exitCode).toBe(1);
    expect(failed.failure).toBeUndefined();
    expect(await logOf(a.spec)).toContain('ValueError: boom');
    const b = await job({ cmd: 'exit3' });
    expect((await executor.run(b.spec)).exitCode).toBe(3);
    const c = await job();
    expect((await executor.run(c.spec)).exitCode).toBe(0);
    expect((await seen(c.dir))[1]).toBe((await seen(a.dir))[1]);
  });

  it('fails a job whose process dies with module_crashed, and starts a new one next', async () => {
    executor = new WarmExecutor({ killGraceMs: 500 });
    const a = await job({ cmd: 'crash' });
    const crashed = await executor.run(a.spec);
    expect(crashed.exitCode).toBe(7);
    expect(crashed.failure?.code).toBe('module_crashed');
    expect(crashed.failure?.message).toBe(
      'the warm process exited with code 7 in the middle of the job',
    );
    const oldPid = Number((await seen(a.dir))[1]);
    expect(alive(oldPid)).toBe(false);
    const b = await job();
    expect((await executor.run(b.spec)).exitCode).toBe(0);
    expect(Number((await seen(b.dir))[1])).not.toBe(oldPid);
  });

  it('kills a job past its timeout and a cancelled job, with their processes', async () => {
    executor = new WarmExecutor({ killGraceMs: 300 });
    const warmUp = await job();
    await executor.run(warmUp.spec);
    const a = await job({ cmd: 'hang', timeoutMs: 1500 });
    const timedOut = await executor.run(a.spec);
    expect(timedOut.timedOut).toBe(true);
    expect(alive(Number((await seen(a.dir))[1]))).toBe(false);
    expect(await logOf(a.spec)).toContain(
      '[ion] timed out after 1500 ms: killing the warm process',
    );

    const controller = new AbortController();
    const b = await job({ cmd: 'hang', signal: controller.signal });
    const running = executor.run(b.spec);
    const pid = await waitFor(
      'the job to start',
      async () => Number((await seen(b.dir).catch(() => undefined))?.[1]) || undefined,
    );
    controller.abort();
    const cancelled = await running;
    expect(cancelled.cancelled).toBe(true);
    expect(alive(pid)).toBe(false);
    expect(executor.pids()).toEqual([]);
  });

  it('recycles a process after maxJobs and replaces processes of an older version', async () => {
    executor = new WarmExecutor({ killGraceMs: 500 });
    const pids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const j = await job({ maxJobs: 2 });
      expect((await executor.run(j.spec)).exitCode).toBe(0);
      pids.push((await seen(j.dir))[1]!);
    }
    expect(pids[1]).toBe(pids[0]);
    expect(pids[2]).not.toBe(pids[0]);
    await waitFor('the recycled process to exit', () =>
      alive(Number(pids[0])) ? undefined : true,
    );

    const v2 = await job({ version: 2 });
    expect((await executor.run(v2.spec)).exitCode).toBe(0);
    const v2Pid = (await seen(v2.dir))[1]!;
    expect(v2Pid).not.toBe(pids[2]);
    await waitFor('the version 1 process to exit', () =>
      alive(Number(pids[2])) ? undefined : true,
    );
    expect(executor.pids()).toEqual([Number(v2Pid)]);
  });

  it('stops an idle process after idleTimeoutMs', async () => {
    executor = new WarmExecutor({ killGraceMs: 500 });
    const a = await job();
    await executor.run({ ...a.spec, warm: { maxJobs: 100, idleTimeoutMs: 200 } });
    const pid = Number((await seen(a.dir))[1]);
    await waitFor('the idle process to exit', () => (alive(pid) ? undefined : true), 5000);
    expect(executor.pids()).toEqual([]);
  });

  it('ignores protocol-looking lines the module prints: only fd 3 ends a job', async () => {
    executor = new WarmExecutor({ killGraceMs: 500 });
    const a = await job({ cmd: 'forge' });
    const result = await executor.run(a.spec);
    expect(result.exitCode).toBe(0);
    expect(result.durationMs).toBeGreaterThanOrEqual(300);
    expect(await readFile(join(a.dir, 'late'), 'utf8')).toBe('x');
    const log = await logOf(a.spec);
    expect(log).toContain(`{"type":"done","id":"${a.spec.env.ION_EVENT_ID}","ok":true}`);
    expect(log).toContain('ion-end:00000000000000000000000000000000');
  });

  it('keeps each job log to its own lines while another thread prints all the time', async () => {
    executor = new WarmExecutor({ killGraceMs: 500 });
    const jobs = [];
    for (let i = 0; i < 5; i++) {
      const j = await job({ env: { TICKER: '1' } });
      expect((await executor.run(j.spec)).exitCode).toBe(0);
      jobs.push(j);
    }
    for (const j of jobs) {
      const lines = (await logOf(j.spec)).split('\n').filter((l) => l.startsWith('job '));
      expect(lines).toHaveLength(50);
      for (const line of lines)
        expect(line.startsWith(`job ${j.spec.env.ION_EVENT_ID} `)).toBe(true);
    }
  });

  it('fails clearly when the module does not speak the protocol', async () => {
    executor = new WarmExecutor({ killGraceMs: 500 });
    const exits = await job({ command: ['sh', '-c', 'echo cold module; exit 0'] });
    const result = await executor.run(exits.spec);
    expect(result.failure?.code).toBe('module_crashed');
    expect(result.failure?.message).toMatch(
      /exited with code 0 before it said ready .*Ion warm SDK/,
    );
    expect(await logOf(exits.spec)).toContain('cold module');

    const hangs = await job({ command: ['sleep', '30'], timeoutMs: 500 });
    expect((await executor.run(hangs.spec)).timedOut).toBe(true);

    const missing = await job({ command: ['/nonexistent/module'] });
    const notFound = await executor.run(missing.spec);
    expect(notFound.exitCode).toBe(127);
    expect(notFound.logTail).toContain('[ion] command not found: /nonexistent/module');
  });

  it('kills running and idle processes on close', async () => {
    executor = new WarmExecutor({ killGraceMs: 300 });
    const idle = await job({ env: { OTHER: '1' } }); // another key: a process of its own
    await executor.run(idle.spec);
    const busy = await job({ cmd: 'hang' });
    const running = executor.run(busy.spec);
    await waitFor(
      'the job to start',
      async () => (await seen(busy.dir).catch(() => undefined)) ?? undefined,
    );
    const pids = executor.pids();
    expect(pids).toHaveLength(2);
    await executor.close();
    expect((await running).cancelled).toBe(true);
    for (const pid of pids) expect(alive(pid)).toBe(false);
  });
});

describe('WarmExecutor with the Node SDK', () => {
  it('runs jobs in one process; process.exit and throws fail the job only', async () => {
    executor = new WarmExecutor({ killGraceMs: 500 });
    const command = ['node', nodeModule];
    const a = await job({ command });
    const b = await job({ command, cmd: 'exit3' });
    const c = await job({ command, cmd: 'fail' });
    const d = await job({ command });
    expect((await executor.run(a.spec)).exitCode).toBe(0);
    expect((await executor.run(b.spec)).exitCode).toBe(3);
    expect((await executor.run(c.spec)).exitCode).toBe(1);
    expect((await executor.run(d.spec)).exitCode).toBe(0);
    const pids = await Promise.all([a, b, c, d].map(async (j) => (await seen(j.dir))[1]));
    expect(new Set(pids).size).toBe(1);
    expect((await seen(d.dir))[2]).toBe(d.dir);
    expect(await logOf(d.spec)).toBe(`job ${d.spec.env.ION_EVENT_ID}\n`);
    const crash = await job({ command, cmd: 'crash' });
    const crashed = await executor.run(crash.spec);
    expect(crashed.failure?.code).toBe('module_crashed');
    expect(crashed.signal).toBe('SIGABRT');
  });
});
