import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsBlobStore } from '../../src/blob/fs/fs-blob-store.js';
import { ModuleOutputError } from '../../src/core/errors.js';
import { collectJobDir } from '../../src/handler/collect.js';
import { jobLayout } from '../../src/handler/layout.js';

/**
 * Property-based bad-input campaign for module output (issue 12): random out/ trees with
 * random file names, deep folders, symlinks (inside, outside, dangling, to folders), random
 * event files and insights. Collect must either store a consistent result or refuse with a
 * ModuleOutputError that names the offending file under out/; never another error, never a
 * file from outside the job directory. Fixed seed, bounded runs.
 */

const SEED = 1204;
const RUNS = 120;

/** A path segment: plain, unicode, dotted, long (up to the 255-byte limit) or hostile. */
const segment = fc.oneof(
  fc.stringMatching(/^[a-z0-9_-]{1,12}$/),
  fc.constantFrom('.hidden', 'ü-naïve', '名前', 'a b', 'x'.repeat(200), "it's", '$(rm)', '-rf'),
);
const relPath = fc.array(segment, { minLength: 1, maxLength: 6 }).map((parts) => parts.join('/'));
const deepPath = fc
  .integer({ min: 20, max: 40 })
  .map((n) => Array.from({ length: n }, (_, i) => `d${i}`).join('/') + '/leaf.txt');

/** Every way collect refuses output: each refusal must say one of these about a named file. */
const REFUSALS = [
  /is a symlink pointing outside out\/data$/,
  /is a symlink to a missing target$/,
  /is not a regular file$/,
  /is not valid JSON: /,
  /must be a JSON array of/,
  /must be an object with "key" and "value"$/,
  /\.key must be a non-empty string$/,
  /\.value must be a string$/,
  /has no eventType$/,
  /raises event type ".*" which the module does not declare in publishes/,
  /lists file ".*" which (does not exist in out\/data|is empty|contains|is absolute|does not name a file)/,
  /lists ".*" which is a directory in out\/data; list files$/,
  /has unknown field ".*" \(allowed: eventType, files, data\)$/,
  /\.files must be an array of paths or a comma-separated string$/,
  /\.data must be an object of string values$/,
  /\.data\..* must be a string$/,
  /must be a regular file$/,
];

type Entry =
  { kind: 'file'; path: string; content: string } | { kind: 'link'; path: string; target: string };

const entry: fc.Arbitrary<Entry> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('file' as const),
      path: fc.oneof(relPath, deepPath),
      content: fc.string({ maxLength: 64 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('link' as const),
      path: relPath,
      // Inside out/data, climbing out, absolute, dangling.
      target: fc.oneof(
        relPath,
        fc.constantFrom(
          '../../in/eventmeta.json',
          '/etc/passwd',
          '../secret',
          'missing/nowhere',
          '.',
        ),
      ),
    }),
  },
);

const kv = fc.record({
  key: fc.string({ maxLength: 10 }),
  value: fc.oneof(
    fc.string({ maxLength: 10 }),
    fc.integer(),
    fc.boolean(),
    fc.constant(null),
    fc.object(),
  ),
});
const eventDoc = fc.oneof(
  fc.array(
    fc.oneof(
      kv,
      fc.record({
        key: fc.constant('eventType'),
        value: fc.constantFrom('ok.type', 'undeclared', ''),
      }),
      fc.record({
        key: fc.constant('files'),
        value: fc.oneof(relPath, fc.constantFrom('../x', '/etc/passwd', ',,', 'a/../../b')),
      }),
    ),
    { maxLength: 6 },
  ),
  fc.record(
    {
      eventType: fc.constantFrom('ok.type', 'undeclared'),
      files: fc.oneof(fc.array(relPath, { maxLength: 3 }), fc.string()),
      data: fc.oneof(
        fc.dictionary(fc.string({ maxLength: 6 }), fc.string({ maxLength: 6 })),
        fc.anything(),
      ),
    },
    { requiredKeys: [] },
  ),
  fc.anything(),
);
const rawJson = fc.oneof(
  eventDoc.map((d) => JSON.stringify(d) ?? 'null'),
  fc.constantFrom('', '   \n', '{', '[{"key": "a", "value": "b"}', 'null', '[1,2,3]'),
  fc.string({ maxLength: 40 }),
);

const scenario = fc.record({
  entries: fc.array(entry, { maxLength: 8 }),
  events: fc.array(
    fc.record({
      name: fc.oneof(
        fc.stringMatching(/^[a-z0-9]{1,8}\.json$/),
        fc.constantFrom('x.txt', 'e.JSON'),
      ),
      body: rawJson,
    }),
    { maxLength: 4 },
  ),
  insights: fc.option(
    fc.oneof(
      fc.array(kv, { maxLength: 4 }).map((a) => JSON.stringify(a)),
      rawJson,
    ),
    { nil: undefined },
  ),
});

describe('collect under random module output', () => {
  let root: string;
  let blobs: FsBlobStore;

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'ion-prop-out-'));
    blobs = new FsBlobStore({ dir: join(root, 'blobs') });
    await blobs.start();
  });
  afterAll(async () => {
    await blobs.close();
    await rm(root, { recursive: true, force: true });
  });

  it('stores a consistent result or refuses with a ModuleOutputError naming a file under out/', async () => {
    let run = 0;
    let accepted = 0;
    const refusals = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(scenario, async ({ entries, events, insights }) => {
        const base = join(root, `job-${run++}`);
        const layout = jobLayout(base);
        await mkdir(layout.outData, { recursive: true });
        await mkdir(layout.outEvents, { recursive: true });
        await mkdir(dirname(layout.eventMeta), { recursive: true });
        await writeFile(layout.eventMeta, '[]');
        for (const e of entries) {
          const abs = join(layout.outData, e.path);
          await mkdir(dirname(abs), { recursive: true }).catch(() => undefined);
          if (e.kind === 'file') await writeFile(abs, e.content).catch(() => undefined);
          else await symlink(e.target, abs).catch(() => undefined);
        }
        for (const e of events) await writeFile(join(layout.outEvents, e.name), e.body);
        if (insights !== undefined) await writeFile(layout.insights, insights);

        let result;
        try {
          result = await collectJobDir(base, ['ok.type'], (path) => blobs.putFile(path));
        } catch (err) {
          expect(err, String(err)).toBeInstanceOf(ModuleOutputError);
          expect((err as Error).message).toMatch(/^out\/|^out\/data/);
          const kind = REFUSALS.find((r) => r.test((err as Error).message));
          expect(kind, `an unclassified refusal: ${(err as Error).message}`).toBeDefined();
          refusals.set(kind!.source, (refusals.get(kind!.source) ?? 0) + 1);
          return;
        }
        accepted += 1;
        // Every stored output holds what the job directory held inside out/data, nothing else.
        const secret = await readFile('/etc/passwd', 'utf8').catch(() => '\0never');
        for (const out of result.outputs) {
          const stored = await readStream(await blobs.get(out.sha256));
          expect(createHash('sha256').update(stored).digest('hex')).toBe(out.sha256);
          expect(stored.toString('utf8')).not.toBe(secret);
          expect(out.path.startsWith('/') || out.path.split('/').includes('..')).toBe(false);
        }
        const stored = new Set(result.outputs.map((o) => `${o.path}:${o.sha256}`));
        for (const event of result.events) {
          expect(event.type).toBe('ok.type');
          for (const f of event.files) expect(stored.has(`${f.path}:${f.sha256}`)).toBe(true);
        }
        for (const insight of result.insights) expect(typeof insight.value).toBe('string');
      }),
      { seed: SEED, numRuns: RUNS, endOnFailure: true },
    );
    // The campaign must reach both outcomes, or it tests nothing.
    expect(accepted).toBeGreaterThan(0);
    expect(refusals.size).toBeGreaterThan(3);
    console.log(
      `module output: ${accepted} accepted, refused by kind:`,
      Object.fromEntries(refusals),
    );
  });
});

async function readStream(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}
