import { open, rm, rmdir, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BlobStore } from '../blob/blob-store.js';
import type { Logger } from 'pino';
import type { Delivery } from '../bus/event-bus.js';
import { errorMessage, IonError } from '../core/errors.js';
import { retryDelayMs } from './backoff.js';
import type { DocumentStore, LogProgress, RenewResult } from '../store/document-store.js';

export function leaseFromNow(leaseMs: number): string {
  return new Date(Date.now() + leaseMs).toISOString();
}

/** How often a running job's leases are pushed out: a third of the lease, so two may fail. */
function leaseEveryMsFor(leaseMs: number): number {
  return Math.max(50, Math.floor(leaseMs / 3));
}

/** How much of a running attempt's log is kept live in the store, for `logs --follow`. */
const LIVE_TAIL_BYTES = 64 * 1024;
/** How often a running job reports its log progress and looks for a cancel request. */
const PROGRESS_INTERVAL_MS = 1000;

/** Where a running attempt's log is written, until it is kept in the blob store. */
export function attemptLogFile(dataDir: string, jobId: string, attempt: number): string {
  return join(dataDir, 'logs', jobId, `${attempt}.log`);
}

/** The size of a running attempt's log file and its last bytes; null when there is none yet. */
async function readLogProgress(logFile: string): Promise<LogProgress | null> {
  const handle = await open(logFile, 'r').catch(() => null);
  if (handle === null) return null;
  try {
    const { size } = await handle.stat();
    const length = Math.min(size, LIVE_TAIL_BYTES);
    const buf = Buffer.alloc(length);
    const { bytesRead } = await handle.read(buf, 0, length, size - length);
    // Start on a character boundary, so the stored text re-encodes to exactly the bytes it
    // stands for and a follower can count bytes (UTF-8 output; other bytes come out replaced).
    let start = 0;
    while (start < Math.min(3, bytesRead) && length < size && (buf[start]! & 0xc0) === 0x80)
      start += 1;
    return { logSize: size, logTail: buf.subarray(start, bytesRead).toString('utf8') };
  } finally {
    await handle.close();
  }
}

export interface AttemptWatch {
  store: DocumentStore;
  delivery: Delivery;
  jobId: string;
  attempt: number;
  leaseMs: number;
  /**
   * When the delivery was received (ms since the epoch): both leases were taken at or after
   * it, so a start that took a while has already spent that much of them.
   */
  heldSince: number;
  logFile: string;
  log: Logger;
  /** Aborted when a cancel request is seen. */
  stop: AbortController;
}

/** What the runner tells a watch: the module has exited, then the attempt is recorded. */
export interface AttemptWatchHandle {
  /**
   * The module has exited: from now on the attempt closing is this worker's own doing, not
   * news, and a cancel request has nothing left to stop. The leases are still kept, so a
   * slow commit does not let another worker claim the job.
   */
  ran(): void;
  /** The attempt is recorded and its delivery settled: stops the watch. */
  end(): void;
}

/**
 * While a job runs and until its end is recorded, keeps both leases alive (the bus
 * delivery's and the attempt's); while the module runs, also reports how far its log has
 * got and watches for a cancel request (aborting `stop`).
 */
export function watchAttempt(watch: AttemptWatch): AttemptWatchHandle {
  const { store, delivery, jobId, attempt, leaseMs, heldSince, logFile, log, stop } = watch;
  const leaseEveryMs = leaseEveryMsFor(leaseMs);
  const extend = (): void => {
    delivery
      .extend()
      .catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'lease extension failed'));
  };
  const lease = setInterval(extend, leaseEveryMs);
  let lastSize = -1;
  let running = true;
  let renewedAt = heldSince;
  let renewing = false;
  const renew = async (): Promise<void> => {
    const progress = await readLogProgress(logFile).catch(() => null);
    const changed = progress !== null && progress.logSize !== lastSize;
    let found: RenewResult;
    if (changed || Date.now() - renewedAt >= leaseEveryMs) {
      // A write only when there is news or the lease is due; otherwise a read of the flag.
      found = await store.renewAttempt(
        jobId,
        attempt,
        leaseFromNow(leaseMs),
        changed ? progress : undefined,
      );
      renewedAt = Date.now();
      if (changed) lastSize = progress.logSize;
    } else {
      const job = await store.getJob(jobId);
      found = job?.cancelRequestedAt == null ? 'held' : 'cancel_requested';
    }
    if (found === 'closed' && running)
      log.warn({ jobId, attempt }, 'attempt was closed elsewhere while it ran');
    if (found === 'cancel_requested' && running && !stop.signal.aborted) {
      log.info({ jobId, attempt }, 'cancel requested; stopping the module');
      stop.abort();
    }
  };
  const tick = (): void => {
    if (renewing) return;
    renewing = true;
    renew()
      .catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'attempt lease renewal failed'))
      .finally(() => {
        renewing = false;
      });
  };
  const progress = setInterval(tick, Math.min(PROGRESS_INTERVAL_MS, leaseEveryMs));
  if (Date.now() - heldSince >= leaseEveryMs) {
    // The start was slow (a busy store, a loaded machine): waiting a whole interval more
    // could let the leases lapse and another worker claim the job while it runs here.
    extend();
    tick();
  }
  return {
    ran: () => {
      running = false;
    },
    end: () => {
      clearInterval(lease);
      clearInterval(progress);
    },
  };
}

/** Tries to store a log while the blob store is briefly unavailable (a full disk, a restart). */
const KEEP_LOG_TRIES = 5;

/**
 * Moves the attempt's log into the blob store so any server can serve it later. A retryable
 * failure (the blob store unavailable) is tried again with backoff, about 15 s in all. When
 * the log still cannot be stored, the file is removed all the same, with a warning: the
 * attempt keeps the log's tail in the store, and a file no attempt will ever claim would stay
 * in the data dir for good (the soak found 7 after a run with a full blob disk).
 */
export async function keepAttemptLog(
  blobs: BlobStore,
  logger: Logger,
  logFile: string,
  delayMs: (failures: number) => number = (n) => retryDelayMs(n, 1000, 8000),
): Promise<string | null> {
  let ref: string | null = null;
  for (let tries = 1; ; tries += 1) {
    try {
      const info = await stat(logFile).catch(() => null);
      // An empty log is fully described by the (empty) tail stored with the attempt.
      ref = info === null || info.size === 0 ? null : (await blobs.putFile(logFile)).sha256;
      break;
    } catch (err) {
      if (tries < KEEP_LOG_TRIES && err instanceof IonError && err.retryable) {
        await sleep(delayMs(tries));
        continue;
      }
      logger.warn(
        { err: errorMessage(err), logFile, tries },
        'could not keep the attempt log; only its tail is stored with the attempt',
      );
      break;
    }
  }
  await rm(logFile, { force: true }).catch(() => undefined);
  await rmdir(dirname(logFile)).catch(() => undefined); // only when no other log is left
  return ref;
}
