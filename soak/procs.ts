import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { readdir, readFile, readlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';

/** The repository root and the `ion` binary the soak starts. */
export const ROOT = resolve(import.meta.dirname, '..');
export const BIN = join(ROOT, 'bin/ion.js');

/** Settings that make failure paths quick: short leases and retry delays. */
export const SOAK_ENV = {
  ION_LEASE_MS: '3000',
  ION_RETRY_BASE_DELAY_MS: '100',
  ION_RETRY_MAX_DELAY_MS: '1000',
  ION_SHUTDOWN_GRACE_MS: '3000',
};

/**
 * One `ion` process (up, server or worker) whose output goes to a log file under the soak's
 * directory (every start appends to the same file, so the token scan sees everything), and
 * which can be killed and started again with the same arguments.
 */
export class IonProc {
  proc: ChildProcess | undefined;
  private tail = '';
  private log: WriteStream;
  starts = 0;

  constructor(
    readonly name: string,
    private readonly args: string[],
    private readonly env: Record<string, string>,
    readonly logPath: string,
    private readonly ready: RegExp,
  ) {
    this.log = createWriteStream(logPath, { flags: 'a' });
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  get running(): boolean {
    return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Starts the process and waits for its ready line; returns the line's match. */
  async start(timeoutMs = 90_000): Promise<RegExpExecArray> {
    this.tail = '';
    this.starts += 1;
    const child = spawn(process.execPath, [BIN, ...this.args], {
      cwd: ROOT,
      env: { ...process.env, ...SOAK_ENV, ...this.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc = child;
    const onData = (chunk: Buffer): void => {
      this.log.write(chunk);
      this.tail = (this.tail + chunk.toString()).slice(-20_000);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const match = this.ready.exec(this.tail);
      if (match !== null) return match;
      if (child.exitCode !== null || child.signalCode !== null)
        throw new Error(
          `${this.name} exited (${child.exitCode ?? child.signalCode}): ${this.tail}`,
        );
      if (Date.now() > deadline)
        throw new Error(`${this.name} not ready within ${timeoutMs} ms: ${this.tail}`);
      await sleep(100);
    }
  }

  /** SIGKILL and wait for the exit. */
  async kill(): Promise<void> {
    await this.signal('SIGKILL');
  }

  /** SIGTERM, wait for the exit (SIGKILL after `graceMs`). */
  async stop(graceMs = 30_000): Promise<void> {
    const child = this.proc;
    if (child === undefined || !this.running) return;
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await this.signal('SIGTERM');
    clearTimeout(timer);
  }

  private async signal(signal: NodeJS.Signals): Promise<void> {
    const child = this.proc;
    if (child === undefined || !this.running) return;
    const exited = new Promise<void>((res) => child.once('exit', () => res()));
    child.kill(signal);
    await exited;
  }

  output(): string {
    return this.tail;
  }

  async close(): Promise<void> {
    await new Promise<void>((res) => this.log.end(() => res()));
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((res) => setTimeout(res, ms));
}

/** A live process seen in /proc. */
export interface ProcInfo {
  pid: number;
  ppid: number;
  pgid: number;
  cwd: string;
  cmdline: string;
}

/** Every process readable in /proc (those that vanish while reading are skipped). */
export async function listProcesses(): Promise<ProcInfo[]> {
  const out: ProcInfo[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (fields[0] === 'Z') continue;
      const cmdline = (await readFile(`/proc/${entry}/cmdline`, 'utf8')).replaceAll('\0', ' ');
      const cwd = await readlink(`/proc/${entry}/cwd`).catch(() => '');
      out.push({
        pid: Number(entry),
        ppid: Number(fields[1]),
        pgid: Number(fields[2]),
        cwd,
        cmdline: cmdline.trim(),
      });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** Processes whose working directory or command line lies under `dir`, this one excepted. */
export async function processesUnder(dir: string): Promise<ProcInfo[]> {
  return (await listProcesses()).filter(
    (p) => p.pid !== process.pid && (p.cwd.startsWith(dir) || p.cmdline.includes(dir)),
  );
}
