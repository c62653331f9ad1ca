import type { Socket } from 'node:net';
import type { ExecutionFailure, ExecutionSpec } from '../executor.js';
import { MarkedStream, type JobLog } from './job-log.js';
import {
  LineSplitter,
  endMark,
  parseModuleMessage,
  type JobMessage,
  type ModuleMessage,
} from './protocol.js';

/** What a warm slot reports, in order. */
export type WarmEvent =
  | { kind: 'message'; message: ModuleMessage }
  | { kind: 'violation'; reason: string }
  | {
      kind: 'exit';
      code: number | null;
      signal: NodeJS.Signals | null;
      /** Set when the end has a cause of its own (a container killed out of memory). */
      failure?: ExecutionFailure;
    }
  | { kind: 'error'; err: Error };

export interface WarmSlotOptions {
  key: string;
  module: string;
  version: number;
  /** Output written while no job is in flight. */
  outside: (chunk: Buffer) => void;
}

/**
 * One warm slot: a long-lived module (a process, or a container) that takes one job at a
 * time over the control channel. The pool and the job's lifecycle live in `WarmExecutor`;
 * a slot only knows how to start, talk to, lay out a job for, and end its module.
 *
 * This base holds what every kind shares: the control connection (one JSON line per
 * message), stdout and stderr routed to the job in flight up to its end mark, and the
 * events the executor awaits one by one. A subclass feeds {@link streams} and calls
 * {@link listen} with the control connection once it has one, and {@link emit} for the end.
 */
export abstract class WarmSlot {
  readonly key: string;
  readonly module: string;
  readonly version: number;
  /** Jobs handed to this slot so far. */
  jobs = 0;
  ready = false;
  idleTimer: NodeJS.Timeout | undefined;
  /** How Ion's notes in the job's log name this kind of slot ("warm process"). */
  abstract readonly noun: string;
  /** Settles once the module is gone and its output closed. */
  abstract readonly ended: Promise<void>;
  protected readonly streams: [MarkedStream, MarkedStream];
  protected control: Socket | null = null;
  private readonly queue: WarmEvent[] = [];
  private waiter: ((event: WarmEvent) => void) | null = null;

  constructor(options: WarmSlotOptions) {
    this.key = options.key;
    this.module = options.module;
    this.version = options.version;
    this.streams = [new MarkedStream(options.outside), new MarkedStream(options.outside)];
  }

  /** The process id or container id, for Ion's notes and diagnostics. */
  abstract get id(): string;

  /** The process id, for a slot that is a host process. */
  get pid(): number | undefined {
    return undefined;
  }

  abstract get alive(): boolean;

  /** Ends the module now (timeout, cancel, a broken protocol); settles when it is gone. */
  abstract kill(): Promise<void>;

  /** Asks the module to exit (end of file on its control channel), then kills it if it lingers. */
  abstract stop(): Promise<void>;

  /** Removes what the slot owned on the host (its directories) once it ended. */
  abstract dispose(): Promise<void>;

  /**
   * Lays the prepared job directory out where the module sees it and returns that path (the
   * `dir` of the job message). A host process sees `workDir` itself.
   */
  enter(workDir: string): Promise<string> {
    return Promise.resolve(workDir);
  }

  /** After the job (whatever its end): its outputs and inputs are back under `workDir`. */
  leave(workDir: string): Promise<void> {
    void workDir;
    return Promise.resolve();
  }

  /** Reads module messages from the control connection. */
  protected listen(control: Socket): void {
    this.control = control;
    const splitter = new LineSplitter();
    control.on('data', (chunk: Buffer) => {
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
    // A write to a module that just died fails with EPIPE: its exit is reported instead.
    control.on('error', () => undefined);
  }

  /** The next event; events are queued, so none is lost between two awaits. */
  next(): Promise<WarmEvent> {
    const queued = this.queue.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return new Promise((resolve) => (this.waiter = resolve));
  }

  protected emit(event: WarmEvent): void {
    const waiter = this.waiter;
    if (waiter !== null) {
      this.waiter = null;
      waiter(event);
    } else this.queue.push(event);
  }

  /** Routes the module's output to `log` until the job's end mark appears on each stream. */
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
}

/** What a launcher needs to start one slot. */
export interface WarmLaunch {
  key: string;
  module: string;
  version: number;
  spec: ExecutionSpec;
  /** The environment the module starts with (the job's own variables come per job). */
  processEnv: Record<string, string>;
  outside: (chunk: Buffer) => void;
}

/** A slot that could not start, as the attempt's result says it (a missing image ...). */
export interface WarmRefusal {
  refused: true;
  exitCode: number | null;
  message: string;
  failure?: ExecutionFailure;
}

/**
 * Starts warm slots of one kind: host processes (`WarmProcessLauncher`) or containers
 * (`docker/warm-container-launcher.ts`). The executor keys its pool by module, version,
 * environment and {@link identity}.
 */
export interface WarmLauncher {
  /** The executor kind it reports (`warm`, `docker-warm`). */
  readonly kind: string;
  start(): Promise<void>;
  /** Called after every slot ended. */
  close(): Promise<void>;
  /** The module's view of a job directory (`workDir` itself, or `/ion`). */
  moduleDir(workDir: string): string;
  /** Throws a ValidationError for a spec this launcher cannot run. */
  check(spec: ExecutionSpec): void;
  /** What, beyond module, version and environment, makes two runs share a slot. */
  identity(spec: ExecutionSpec): unknown;
  launch(launch: WarmLaunch): Promise<WarmSlot | WarmRefusal>;
}

export function isRefusal(value: WarmSlot | WarmRefusal): value is WarmRefusal {
  return 'refused' in value;
}
