import { NotFoundError, IonError, errorMessage } from '../core/errors.js';
import type { ControlDeps } from './control-deps.js';

/** The answer of one backend to a readiness probe. */
export type BackendCheck =
  { ok: true; latencyMs: number } | { ok: false; latencyMs: number; error: string };

export interface Readiness {
  ready: boolean;
  checks: { bus: BackendCheck; store: BackendCheck; blobs: BackendCheck };
}

/**
 * The bus probe sends to this subscription, which can never exist: subscriptions are named
 * after modules and a module name must start with a lower-case letter.
 */
const PROBE_SUBSCRIPTION = '_ion_readiness_probe';
/** Content address probed in the blob store: the sha256 of no bytes; present or not. */
const PROBE_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/**
 * Asks every backend a cheap, read-only question, each bounded by `timeoutMs`:
 * the store its modules revision, the blob store whether a fixed address exists, and the
 * bus to send to a subscription that cannot exist (it must answer "not found", which
 * needs a round trip to the broker but stores nothing).
 */
export async function readiness(
  { bus, store, blobs }: Pick<ControlDeps, 'bus' | 'store' | 'blobs'>,
  timeoutMs = 2000,
): Promise<Readiness> {
  const [busCheck, storeCheck, blobsCheck] = await Promise.all([
    probe(timeoutMs, async () => {
      try {
        await bus.sendTo(PROBE_SUBSCRIPTION, {
          id: 'readiness-probe',
          topic: 'ion.probe',
          body: '',
        });
      } catch (err) {
        if (err instanceof NotFoundError) return;
        throw err;
      }
    }),
    probe(timeoutMs, () => store.modulesRevision()),
    probe(timeoutMs, () => blobs.stat(PROBE_SHA256)),
  ]);
  return {
    ready: busCheck.ok && storeCheck.ok && blobsCheck.ok,
    checks: { bus: busCheck, store: storeCheck, blobs: blobsCheck },
  };
}

/** Runs one readiness probe with a deadline; never throws. */
async function probe(timeoutMs: number, fn: () => Promise<unknown>): Promise<BackendCheck> {
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(
      () => reject(new IonError('timeout', `no answer within ${timeoutMs}ms`)),
      timeoutMs,
    );
  });
  const attempt = fn();
  attempt.catch(() => undefined); // a late failure after the deadline is not unhandled
  try {
    await Promise.race([attempt, deadline]);
    return { ok: true, latencyMs: Date.now() - started };
  } catch (err) {
    const code = err instanceof IonError ? err.code : 'unavailable';
    return { ok: false, latencyMs: Date.now() - started, error: `${code}: ${errorMessage(err)}` };
  } finally {
    clearTimeout(timer);
  }
}
