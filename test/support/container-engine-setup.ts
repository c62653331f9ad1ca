import { randomUUID } from 'node:crypto';
import { stopEnginesStartedBy } from './container-engine.js';

/**
 * vitest global setup: names this run, so a container engine that `podmanEngine()` or
 * `dockerEngine()` starts during it is recorded as this run's (the forks inherit the
 * environment), and stops those engines, and only those, when the run ends. Starts nothing
 * itself: a run without container tests pays nothing. ION_KEEP_ENGINES=1 leaves them running.
 */
export default function setup(): () => Promise<void> {
  const owner = `vitest-${process.pid}-${randomUUID().slice(0, 8)}`;
  process.env.ION_ENGINE_OWNER = owner;
  return async () => {
    if (process.env.ION_KEEP_ENGINES === '1') return;
    await stopEnginesStartedBy(owner);
  };
}
