/**
 * The benches' trivial three-stage pipeline: `bench.start` → stage1 → `bench.s1` → stage2 →
 * `bench.s2` → stage3, each stage an `sh` script. `start` is what every stage runs first
 * (usually an insight recording when it started); stages 1 and 2 then raise one event.
 */

/** `start`, then one event of `type` raised from `out/events/`. */
export function raiseScript(start: string, type: string): string {
  return `${start}; printf '[{"key":"eventType","value":"${type}"}]' > out/events/e.json`;
}

/** One stage module of the bench pipelines. */
export function benchModule(
  name: string,
  subscribes: string,
  publishes: string[],
  script: string,
  concurrency: number,
): unknown {
  return {
    name,
    subscribes: [subscribes],
    publishes,
    run: { command: ['sh', '-c', script] },
    retries: 0,
    timeout: '60s',
    concurrency,
  };
}

/** The three-stage pipeline whose stages run `start` (stages 1 and 2 then raise an event). */
export function threeStagePipeline(start: string, concurrency: number): unknown {
  return {
    modules: [
      benchModule(
        'stage1',
        'bench.start',
        ['bench.s1'],
        raiseScript(start, 'bench.s1'),
        concurrency,
      ),
      benchModule('stage2', 'bench.s1', ['bench.s2'], raiseScript(start, 'bench.s2'), concurrency),
      benchModule('stage3', 'bench.s2', [], start, concurrency),
    ],
  };
}
