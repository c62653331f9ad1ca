import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { ROOT, sleep } from './procs.js';

export interface S3rverHandle {
  endpoint: string;
  pid: number | undefined;
  /** Errors s3rver threw and survived (its own races), for the report. */
  errors(): string[];
  stop(): Promise<void>;
}

/**
 * s3rver in a child process on 127.0.0.1 and a random port, storing objects in `directory`
 * (the soak mounts a tmpfs there to fill it). In its own process so an emulator crash cannot
 * end the soak.
 */
export async function startS3rverIn(directory: string): Promise<S3rverHandle> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(ROOT, 'soak/s3rver-child.ts'), directory],
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (out = (out + c.toString()).slice(-100_000)));
  const deadline = Date.now() + 30_000;
  let endpoint: string | undefined;
  while (endpoint === undefined) {
    endpoint = /s3rver listening on (\S+)/.exec(out)?.[1];
    if (child.exitCode !== null) throw new Error(`s3rver exited: ${out}`);
    if (Date.now() > deadline) throw new Error(`s3rver did not start: ${out}`);
    await sleep(50);
  }
  return {
    endpoint,
    pid: child.pid,
    errors: () => out.split('\n').filter((l) => l.startsWith('s3rver: uncaught')),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((res) => child.once('exit', res));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
