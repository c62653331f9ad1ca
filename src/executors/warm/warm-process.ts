import { spawn, type ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import { MarkedStream, type JobLog } from './job-log.js';
import {
  CONTROL_FD,
  LineSplitter,
  endMark,
  parseModuleMessage,
  type JobMessage,
  type ModuleMessage,
} from './protocol.js';

/** What a warm process reports, in order. */
export type WarmEvent =
  | { kind: 'message'; message: ModuleMessage }
  | { kind: 'violation'; reason: string }
  | { kind: 'exit'; code: number | null; signal: NodeJS.Signals | null }
  | { kind: 'error'; err: Error };

export interface WarmProcessOptions {
  key: string;
  module: string;
  version: number;
  program: string;
  args: string[];
  env: Record<string, string>;
  /** The process's own directory (its working directory between jobs). */
  home: string;
  killGraceMs: number;
  /** Output written while no job is in flight. */
  outside: (chunk: Buffer) => void;
}

/**
 * One long-lived module process: its own process group, stdout and stderr as pipes routed
 * to the log of the job in flight, and the control socket on fd 3. It reports its messages,
 * protocol violations and its end as {@link WarmEvent}s that the executor awaits one by one.
 */
export class WarmProcess {
  readonly key: string;
  readonly module: string;
  readonly version: number;
  readonly home: string;
  /** Jobs handed to this process so far. */
  jobs = 0;
  ready = false;
  idleTimer: NodeJS.Timeout | undefined;
  /** Settles once the process exited, its group was killed and its pipes closed. */
  readonly ended: Promise<void>;
  private readonly child: ChildProcess;
  private readonly control: Socket | null;
  private readonly streams: [MarkedStream, MarkedStream];
  private readonly queue: WarmEvent[] = [];
  private waiter: ((event: WarmEvent) => void) | null = null;
  private exited = false;
  private readonly killGraceMs: number;

  constructor(options: WarmProcessOptions) {
    this.key = options.key;
    this.module = options.module;
    this.version = options.version;
    this.home = options.home;
    this.killGraceMs = options.killGraceMs;
    this.streams = [new MarkedStream(options.outside), new MarkedStream(options.outside)];
    this.child = spawn(options.program, options.args, {
      cwd: options.home,
      env: { ...options.env, ION_CONTROL_FD: String(CONTROL_FD), ION_WARM: '1' },
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    });
    this.control = (this.child.stdio[CONTROL_FD] as Socket | null) ?? null;
    this.child.stdout?.on('data', (chunk: Buffer) => this.streams[0].push(chunk));
    this.child.stderr?.on('data', (chunk: Buffer) => this.streams[1].push(chunk));
    const splitter = new LineSplitter();
    this.control?.on('data', (chunk: Buffer) => {
      let lines: string[];
      try {
        lines = splitter.push(chunk);
      } catch (err) {
        this.emit({ kind: 'violation', reason: (err as Error).message });
        return;
      }
      for (const line of lines) {
        const message = parseModuleMessage(line);
        this.emit(
          typeof message === 'string'
            ? { kind: 'violation', reason: message }
            : { kind: 'message', message },
        );
      }
    });
    // A write to a process that just died fails with EPIPE: its exit is reported instead.
    for (const stream of [this.control, this.child.stdout, this.child.stderr])
      stream?.on('error', () => undefined);
    this.ended = new Promise<void>((resolve) => {
      this.child.once('error', (err) => {
        if (this.child.pid !== undefined) return; // a failed kill: the exit still comes
        this.exited = true;
        this.emit({ kind: 'error', err });
        resolve();
      });
      this.child.once('exit', (code, signal) => {
        this.exited = true;
        // Whatever the process left in its group goes with it, so no pipe stays open.
        this.killGroup('SIGKILL');
        const closed = new Promise((res) => this.child.once('close', res));
        const deadline = new Promise((res) => setTimeout(res, 1000).unref());
        void Promise.race([closed, deadline]).then(() => {
          for (const stream of this.streams) stream.flush();
          this.control?.destroy();
          this.emit({ kind: 'exit', code, signal });
          resolve();
        });
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get alive(): boolean {
    return !this.exited;
  }

  /** The next event; events are queued, so none is lost between two awaits. */
  next(): Promise<WarmEvent> {
    const queued = this.queue.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return new Promise((resolve) => (this.waiter = resolve));
  }

  private emit(event: WarmEvent): void {
    const waiter = this.waiter;
    if (waiter !== null) {
      this.waiter = null;
      waiter(event);
    } else this.queue.push(event);
  }

  /** Routes the process's output to `log` until the job's end mark appears on each stream. */
  attach(log: JobLog, mark: string): void {
    const bytes = endMark(mark);
    for (const stream of this.streams) stream.begin(log, bytes);
  }

  /** Both streams carried the job's end mark. */
  get outputMarked(): boolean {
    return this.streams.every((stream) => stream.marked);
  }

  /** Ends the job's log: bytes still held back go to it, later output goes outside. */
  detach(): void {
    for (const stream of this.streams) stream.flush();
  }

  send(job: JobMessage): void {
    this.control?.write(`${JSON.stringify(job)}\n`);
  }

  /** SIGTERM to the group, SIGKILL after the grace period; settles when it is gone. */
  async kill(): Promise<void> {
    if (!this.exited) {
      this.killGroup('SIGTERM');
      const timer = setTimeout(() => this.killGroup('SIGKILL'), this.killGraceMs);
      await this.ended;
      clearTimeout(timer);
    }
    await this.ended;
  }

  /** Asks the process to exit (end of file on its control socket), then kills it if it lingers. */
  async stop(): Promise<void> {
    clearTimeout(this.idleTimer);
    if (!this.exited) {
      this.control?.end();
      const timer = setTimeout(() => void this.kill(), this.killGraceMs);
      await this.ended;
      clearTimeout(timer);
    }
    await this.ended;
  }

  private killGroup(signal: NodeJS.Signals): void {
    if (this.child.pid === undefined) return;
    try {
      process.kill(-this.child.pid, signal);
    } catch {
      // ESRCH: the group is gone already.
    }
  }
}
