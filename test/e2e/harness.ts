import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { IonClient } from '../../src/api/client.js';
import { StopWaiting, waitFor } from '../support/wait.js';

export const ROOT = resolve(import.meta.dirname, '../..');
const BIN = join(ROOT, 'bin/ion.js');

/** Settings that make failure paths fast in tests: short leases and retry delays. */
export const FAST_ENV = {
  ION_LEASE_MS: '1500',
  ION_RETRY_BASE_DELAY_MS: '50',
  ION_RETRY_MAX_DELAY_MS: '200',
  ION_SHUTDOWN_GRACE_MS: '2000',
};

/** A real `ion up` process on a random port with its own data directory. */
export interface IonProcess {
  url: string;
  dataDir: string;
  proc: ChildProcess;
  client: IonClient;
  output(): string;
  /** SIGTERM and wait for exit; returns the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL and wait for exit. */
  kill(): Promise<void>;
}

export async function tempDir(prefix = 'ion-e2e-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

function exited(proc: ChildProcess): Promise<number | null> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(proc.exitCode);
  return new Promise((res) => proc.once('exit', (code) => res(code)));
}

export async function startIon(
  options: { dataDir?: string; env?: Record<string, string>; args?: string[] } = {},
): Promise<IonProcess> {
  const dataDir = options.dataDir ?? (await tempDir());
  const proc = spawn(
    process.execPath,
    [BIN, 'up', '--data-dir', dataDir, '--port', '0', ...(options.args ?? [])],
    {
      cwd: ROOT,
      env: { ...process.env, ...FAST_ENV, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  proc.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  proc.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const url = await waitFor(
    `ion up to print its URL (output so far: ${out})`,
    () => {
      if (proc.exitCode !== null)
        throw new StopWaiting(`ion up exited with ${proc.exitCode}: ${out}`);
      return /Ion is up at (https?:\/\/\S+)/.exec(out)?.[1];
    },
    30_000,
  );
  return {
    url,
    dataDir,
    proc,
    client: new IonClient(url),
    output: () => out,
    async stop() {
      proc.kill('SIGTERM');
      return exited(proc);
    },
    async kill() {
      proc.kill('SIGKILL');
      await exited(proc);
    },
  };
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the real `ion` CLI as a separate process. */
export function cli(
  args: string[],
  options: { apiUrl?: string; env?: Record<string, string>; cwd?: string } = {},
): Promise<CliResult> {
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    ...options.env,
  };
  if (options.apiUrl !== undefined) env.ION_API_URL = options.apiUrl;
  return new Promise((res, rej) => {
    const proc = spawn(process.execPath, [BIN, ...args], {
      cwd: options.cwd ?? ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    proc.once('error', rej);
    proc.once('exit', (code) => res({ code, stdout, stderr }));
  });
}

/** Writes a pipeline file into `dir` and returns its path. */
export async function writePipeline(dir: string, yaml: string, name = 'ion.yaml'): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, yaml);
  return path;
}

export async function cleanup(...dirs: string[]): Promise<void> {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
}

export const FAILING = join(ROOT, 'examples/failing');
