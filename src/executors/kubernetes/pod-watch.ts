import { open } from 'node:fs/promises';
import type { V1Pod } from '@kubernetes/client-node';

const LOG_TAIL_BYTES = 4096;

/** What one stage of the pod's life ended with. */
export type Stage<T> = T | 'deadline' | 'aborted' | { podEnded: string };

/** Follows one pod's states and lets the host wait for the next stage. */
export class PodWatch {
  pod: V1Pod | null = null;
  private gone = false;
  private wake: (() => void) | null = null;

  update(pod: V1Pod | null): void {
    if (pod === null) this.gone = true;
    else this.pod = pod;
    this.wake?.();
  }

  /** Waits until `pick` gives a value, the pod ends without it, the deadline passes or `signal` aborts. */
  async until<T>(
    pick: (pod: V1Pod | null) => T | undefined,
    signal: AbortSignal,
    deadlineAt: number,
  ): Promise<Stage<T>> {
    for (;;) {
      const value = pick(this.pod);
      if (value !== undefined) return value;
      const phase = this.pod?.status?.phase;
      if (this.gone) return { podEnded: 'the pod was deleted' };
      if (phase === 'Failed' || phase === 'Succeeded')
        return {
          podEnded: `pod ${phase.toLowerCase()}${this.pod?.status?.reason ? ` (${this.pod.status.reason}: ${this.pod.status.message ?? ''})` : ''}`,
        };
      if (signal.aborted) return 'aborted';
      if (Date.now() >= deadlineAt) return 'deadline';
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          signal.removeEventListener('abort', done);
          this.wake = null;
          resolve();
        };
        const timer = Number.isFinite(deadlineAt)
          ? setTimeout(done, Math.max(0, deadlineAt - Date.now()))
          : undefined;
        signal.addEventListener('abort', done);
        this.wake = done;
      });
    }
  }
}

export async function appendLog(logFile: string, text: string): Promise<void> {
  const handle = await open(logFile, 'a');
  try {
    await handle.write(text.endsWith('\n') ? text : `${text}\n`);
  } finally {
    await handle.close();
  }
}

export async function tail(logFile: string): Promise<string> {
  const handle = await open(logFile, 'r').catch(() => null);
  if (handle === null) return '';
  try {
    const { size } = await handle.stat();
    const length = Math.min(size, LOG_TAIL_BYTES);
    const buf = Buffer.alloc(length);
    await handle.read(buf, 0, length, size - length);
    return buf.toString('utf8');
  } finally {
    await handle.close();
  }
}
