/**
 * The object-storage emulators as the bench uses them: s3rver in a child process (see
 * bench/s3rver-child.ts; `startS3rver` of test/support runs it in-process, which would count
 * its memory and CPU as Ion's) and Azurite (already a child process in test/support).
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { startAzurite } from '../test/support/emulators.js';

export { startAzurite };
export { S3RVER_CREDENTIALS } from '../test/support/emulators.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

export interface ChildS3rver {
  endpoint: string;
  pid: number;
  stop(): Promise<void>;
}

export async function startS3rverChild(timeoutMs = 30_000): Promise<ChildS3rver> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/s3rver-child.ts'], {
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const lines = createInterface({ input: child.stdout });
  const endpoint = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('s3rver child did not start')), timeoutMs);
    lines.once('line', (line) => {
      clearTimeout(timer);
      resolve((JSON.parse(line) as { endpoint: string }).endpoint);
    });
    void exited.then(() => reject(new Error('s3rver child exited before listening')));
  });
  return {
    endpoint,
    pid: child.pid!,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const killTimer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(killTimer);
    },
  };
}
