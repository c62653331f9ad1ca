import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * The soak's pipeline: fan-out, a two-step chain, a module that fails on some inputs, a
 * module that needs retries, a module that never exits, a module that floods its output, and
 * a canary used to measure recovery. Every module first leaves a marker file
 * `<module>.<eventId>.<attempt>` in `$MARKERS`: the checker reads them, independently of the
 * store, to prove that no module ran again after its job succeeded.
 */

/** How many soak.item events soak-fan raises per root. */
export const FAN_OUT = 3;
/** Bytes the flood module writes as fast as it can. */
export const FLOOD_BYTES = 64 * 1024 * 1024;

/** What each module must leave behind, for the checker. */
export const MODULES = {
  fan: 'soak-fan',
  chain1: 'soak-chain1',
  chain2: 'soak-chain2',
  flaky: 'soak-flaky',
  picky: 'soak-picky',
  hang: 'soak-hang',
  flood: 'soak-flood',
  canary: 'soak-canary',
} as const;

/** The children a succeeded job of a module must have raised: [event type, count]. */
export const CHILDREN: Record<string, [string, number] | undefined> = {
  [MODULES.fan]: ['soak.item', FAN_OUT],
  [MODULES.chain1]: ['soak.chained', 1],
};

/** The marker holds the run's start time (ms since the epoch), to compare with the store's. */
const MARK = 'date +%s%3N > "$MARKERS/$ION_MODULE.$ION_EVENT_ID.$ION_ATTEMPT"';
/** Every successful run stores one insight `run` = attempt: two rows for a job = a duplicate effect. */
const INSIGHT = `printf '[{"key":"run","value":"%s"}]' "$ION_ATTEMPT" > out/insights.json`;

const SCRIPTS: Record<string, string> = {
  fan: `set -eu
${MARK}
ls -R in/data > out/data/listing.txt
wc -c in/eventmeta.json >> out/data/listing.txt
for i in $(seq 1 ${FAN_OUT}); do
  printf '[{"key":"eventType","value":"soak.item"},{"key":"n","value":"%s"},{"key":"files","value":"listing.txt"}]' "$i" > "out/events/item-$i.json"
done
${INSIGHT}
`,
  chain1: `set -eu
${MARK}
sleep 0.4
find in/data -type f -exec sha256sum {} + > out/data/sums.txt
echo "$ION_EVENT_ID" >> out/data/sums.txt
printf '[{"key":"eventType","value":"soak.chained"},{"key":"n","value":"1"},{"key":"files","value":"sums.txt"}]' > out/events/chained.json
${INSIGHT}
`,
  chain2: `set -eu
${MARK}
test -s in/data/sums.txt
${INSIGHT}
`,
  // Fails its first attempt on about half the events (by the first hex digit of the id).
  flaky: `set -eu
${MARK}
case "$ION_EVENT_ID" in
  [0-7]*) if [ "$ION_ATTEMPT" = 1 ]; then echo "soak-flaky: failing attempt 1 on purpose" >&2; exit 3; fi ;;
esac
${INSIGHT}
`,
  // class=bad: exits 3 every time; class=badout: writes an event file that is not JSON.
  picky: `set -eu
${MARK}
if grep -Eq '"value": *"bad"' in/eventmeta.json; then echo "soak-picky: refusing a bad input" >&2; exit 3; fi
if grep -Eq '"value": *"badout"' in/eventmeta.json; then echo '{not json' > out/events/broken.json; exit 0; fi
${INSIGHT}
`,
  // Never exits, and leaves a second process in its group: the timeout must kill both.
  hang: `${MARK}
sleep 100000 &
sleep 100000
`,
  // Writes FLOOD_BYTES as fast as it can, in 1 MiB blocks, never syncing.
  flood: `set -eu
${MARK}
dd if=/dev/zero of=out/data/flood.bin bs=1048576 count=${FLOOD_BYTES / 1048576} 2>/dev/null
head -c 65536 /dev/urandom > out/data/noise.bin
${INSIGHT}
`,
  canary: `set -eu
${MARK}
${INSIGHT}
`,
};

/** Writes the module scripts and the pipeline file under `dir`; returns the pipeline's path. */
export async function writeSoakPipeline(dir: string, markers: string): Promise<string> {
  await mkdir(join(dir, 'modules'), { recursive: true });
  await mkdir(markers, { recursive: true });
  for (const [name, body] of Object.entries(SCRIPTS)) {
    const path = join(dir, 'modules', `${name}.sh`);
    await writeFile(path, body);
    await chmod(path, 0o755);
  }
  const run = (name: string): string =>
    `{ command: [sh, ${JSON.stringify(join(dir, 'modules', `${name}.sh`))}] }`;
  const env = `{ MARKERS: ${JSON.stringify(markers)} }`;
  const yaml = `modules:
  - name: ${MODULES.fan}
    subscribes: [soak.root]
    publishes: [soak.item]
    run: ${run('fan')}
    env: ${env}
    retries: 10
    timeout: 60s
    concurrency: 2
  - name: ${MODULES.chain1}
    subscribes: [soak.item]
    publishes: [soak.chained]
    run: ${run('chain1')}
    env: ${env}
    retries: 10
    timeout: 60s
    concurrency: 3
  - name: ${MODULES.chain2}
    subscribes: [soak.chained]
    run: ${run('chain2')}
    env: ${env}
    retries: 10
    timeout: 60s
    concurrency: 2
  - name: ${MODULES.flaky}
    subscribes: [soak.item]
    run: ${run('flaky')}
    env: ${env}
    retries: 10
    timeout: 60s
    concurrency: 2
  - name: ${MODULES.picky}
    subscribes: [soak.root]
    run: ${run('picky')}
    env: ${env}
    retries: 1
    timeout: 60s
    concurrency: 2
  - name: ${MODULES.hang}
    subscribes: [soak.hang]
    run: ${run('hang')}
    env: ${env}
    retries: 0
    timeout: 2s
  - name: ${MODULES.flood}
    subscribes: [soak.flood]
    run: ${run('flood')}
    env: ${env}
    retries: 10
    timeout: 120s
  - name: ${MODULES.canary}
    subscribes: [soak.canary]
    run: ${run('canary')}
    env: ${env}
    retries: 10
    timeout: 60s
    concurrency: 2
`;
  const path = join(dir, 'ion.yaml');
  await writeFile(path, yaml);
  return path;
}
