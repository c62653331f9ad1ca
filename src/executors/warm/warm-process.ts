import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ValidationError } from '../../core/errors.js';
import type { ExecutionSpec } from '../executor.js';
import { CONTROL_FD } from './protocol.js';
import { WarmSlot, type WarmLaunch, type WarmLauncher, type WarmSlotOptions } from './warm-slot.js';

export type { WarmEvent } from './warm-slot.js';

export interface WarmProcessOptions extends WarmSlotOptions {
  program: string;
  args: string[];
  env: Record<string, string>;
  /** The process's own directory (its working directory between jobs). */
  home: string;
  killGraceMs: number;
}

/**
 * One long-lived module process: its own process group, stdout and stderr as pipes routed
 * to the log of the job in flight, and the control socket on fd 3.
 */
export class WarmProcess extends WarmSlot {
  readonly noun = 'warm process';
  readonly home: string;
  readonly ended: Promise<void>;
  private readonly child: ChildProcess;
  private exited = false;
  private readonly killGraceMs: number;

  constructor(options: WarmProcessOptions) {
    super(options);
    this.home = options.home;
    this.killGraceMs = options.killGraceMs;
    this.child = spawn(options.program, options.args, {
      cwd: options.home,
      env: { ...options.env, ION_CONTROL_FD: String(CONTROL_FD), ION_WARM: '1' },
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    });
    const control = (this.child.stdio[CONTROL_FD] as Socket | null) ?? null;
    if (control !== null) this.listen(control);
    this.child.stdout?.on('data', (chunk: Buffer) => this.streams[0].push(chunk));
    this.child.stderr?.on('data', (chunk: Buffer) => this.streams[1].push(chunk));
    for (const stream of [this.child.stdout, this.child.stderr])
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

  get id(): string {
    return String(this.child.pid ?? '?');
  }

  override get pid(): number | undefined {
    return this.child.pid;
  }

  get alive(): boolean {
    return !this.exited;
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

  async dispose(): Promise<void> {
    await rm(this.home, { recursive: true, force: true }).catch(() => undefined);
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

/** Starts warm modules as host processes, each with a directory of its own under `homeDir`. */
export class WarmProcessLauncher implements WarmLauncher {
  readonly kind = 'warm';

  constructor(private readonly options: { homeDir?: string; killGraceMs: number }) {}

  async start(): Promise<void> {}

  async close(): Promise<void> {}

  moduleDir(workDir: string): string {
    return workDir;
  }

  check(spec: ExecutionSpec): void {
    const program = spec.command[0] ?? spec.args?.[0];
    if (program === undefined || program === '')
      throw new ValidationError('warm executor: empty command', [
        { path: 'command', message: 'must not be empty' },
      ]);
  }

  identity(spec: ExecutionSpec): unknown {
    return [...spec.command, ...(spec.args ?? [])];
  }

  async launch(launch: WarmLaunch): Promise<WarmProcess> {
    const { spec, module } = launch;
    const [program, ...args] = [...spec.command, ...(spec.args ?? [])];
    const home = await mkdtemp(join(this.options.homeDir ?? tmpdir(), `ion-warm-${module}-`));
    return new WarmProcess({
      key: launch.key,
      module,
      version: launch.version,
      outside: launch.outside,
      program: program!,
      args,
      env: launch.processEnv,
      home,
      killGraceMs: this.options.killGraceMs,
    });
  }
}
