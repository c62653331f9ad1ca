import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ValidationError } from './errors.js';
import { loadPipelineDocument, loadPipelineFile } from './pipeline-file.js';
import {
  DEFAULT_CONCURRENCY,
  DEFAULT_RETRIES,
  DEFAULT_TIMEOUT_MS,
  parsePipeline,
} from './pipeline.js';

function module(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name: 'split',
    subscribes: ['file.uploaded'],
    run: { command: ['python3', 'split.py'] },
    ...overrides,
  };
}

/** Parses expecting a ValidationError; returns it. */
function refusal(doc: unknown): ValidationError {
  try {
    parsePipeline(doc);
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    return err as ValidationError;
  }
  throw new Error('expected parsePipeline to refuse the document');
}

describe('parsePipeline', () => {
  it('fills defaults: retries 3, timeout 10 minutes, concurrency 1, no executor named (the worker decides), no publishes, no env', () => {
    const pipeline = parsePipeline({ modules: [module()] });
    expect(pipeline.modules).toHaveLength(1);
    const spec = pipeline.modules[0]!;
    expect(spec).toEqual({
      name: 'split',
      subscribes: ['file.uploaded'],
      publishes: [],
      run: { command: ['python3', 'split.py'] },
      retries: 3,
      timeoutMs: 600_000,
      concurrency: 1,
      env: {},
    });
    expect([DEFAULT_RETRIES, DEFAULT_TIMEOUT_MS, DEFAULT_CONCURRENCY]).toEqual([3, 600_000, 1]);
  });

  it('keeps the pipeline name when given and omits it otherwise', () => {
    expect(parsePipeline({ name: 'images', modules: [module()] }).name).toBe('images');
    expect('name' in parsePipeline({ modules: [module()] })).toBe(false);
  });

  it('reads timeout "30s" as 30000 ms', () => {
    expect(parsePipeline({ modules: [module({ timeout: '30s' })] }).modules[0]!.timeoutMs).toBe(
      30_000,
    );
  });

  it('reads timeout "1m30s" as 90000 ms', () => {
    expect(parsePipeline({ modules: [module({ timeout: '1m30s' })] }).modules[0]!.timeoutMs).toBe(
      90_000,
    );
  });

  it('reads a numeric timeout as seconds', () => {
    expect(parsePipeline({ modules: [module({ timeout: 45 })] }).modules[0]!.timeoutMs).toBe(
      45_000,
    );
    expect(parsePipeline({ modules: [module({ timeout: 1.5 })] }).modules[0]!.timeoutMs).toBe(1500);
  });

  it('refuses an invalid timeout, naming modules[0].timeout', () => {
    const err = refusal({ modules: [module({ timeout: 'ten minutes' })] });
    expect(err.message).toContain('modules[0].timeout');
    expect(err.issues.map((i) => i.path)).toContain('modules[0].timeout');
  });

  it('refuses a zero or negative timeout, naming the field', () => {
    expect(refusal({ modules: [module({ timeout: -5 })] }).message).toContain('modules[0].timeout');
    expect(refusal({ modules: [module({ timeout: 0 })] }).message).toContain('modules[0].timeout');
  });

  it('refuses a timeout that comes to 0 ms ("0s", or a sub-millisecond number), naming the field', () => {
    expect(refusal({ modules: [module({ timeout: '0s' })] }).message).toContain(
      'modules[0].timeout',
    );
    expect(refusal({ modules: [module({ timeout: 0.0001 })] }).message).toContain(
      'modules[0].timeout',
    );
  });

  it('names an unknown module field, like a misspelt retries', () => {
    const err = refusal({ modules: [module({ retires: 5 })] });
    expect(err.message).toContain('modules[0].retires: unknown field');
  });

  it('names an unknown top-level field', () => {
    expect(refusal({ modules: [module()], modulez: [] }).message).toContain(
      'modulez: unknown field',
    );
  });

  it('refuses a module without run.command, naming the field', () => {
    const err = refusal({ modules: [module({ run: {} })] });
    expect(err.message).toContain('modules[0].run.command');
  });

  it('refuses an empty command', () => {
    expect(refusal({ modules: [module({ run: { command: [] } })] }).message).toContain(
      'modules[0].run.command',
    );
  });

  it('refuses a bad module name, naming the field', () => {
    for (const name of ['Split', '1split', 'has space', '', 'a'.repeat(64)]) {
      expect(refusal({ modules: [module({ name })] }).message).toContain('modules[0].name');
    }
  });

  it('refuses a bad event type, naming the field', () => {
    const err = refusal({ modules: [module({ subscribes: ['ok.type', 'has space'] })] });
    expect(err.message).toContain('modules[0].subscribes[1]');
    const wildcard = refusal({ modules: [module({ publishes: ['files.*'] })] });
    expect(wildcard.message).toContain('modules[0].publishes[0]');
  });

  it('reserves ion.* types: subscribing to ion.trace.settled only, publishing none, naming the field', () => {
    const ok = parsePipeline({ modules: [module({ subscribes: ['ion.trace.settled'] })] });
    expect(ok.modules[0]!.subscribes).toEqual(['ion.trace.settled']);
    const published = refusal({ modules: [module({ publishes: ['done', 'ion.trace.settled'] })] });
    expect(published.message).toContain(
      'modules[0].publishes[1]: "ion.trace.settled" is reserved: event types starting with "ion." are raised by Ion only',
    );
    const unknown = refusal({ modules: [module({ subscribes: ['ion.trace.setled'] })] });
    expect(unknown.message).toContain('modules[0].subscribes[0]: "ion.trace.setled" is reserved');
    expect(unknown.message).toContain('(ion.trace.settled)');
  });

  it('refuses a module that subscribes to nothing', () => {
    expect(refusal({ modules: [module({ subscribes: [] })] }).message).toContain(
      'modules[0].subscribes',
    );
  });

  it('refuses a pipeline with no modules', () => {
    expect(refusal({ modules: [] }).message).toContain('modules');
  });

  it('refuses duplicate module names, naming both declarations', () => {
    const err = refusal({ modules: [module(), module({ name: 'other' }), module()] });
    expect(err.message).toContain('modules[2].name');
    expect(err.message).toContain('"split"');
    expect(err.message).toContain('modules[0]');
  });

  it('turns env numbers and booleans into strings', () => {
    const spec = parsePipeline({
      modules: [module({ env: { THREADS: 4, RATIO: 0.5, DEBUG: true, NAME: 'x' } })],
    }).modules[0]!;
    expect(spec.env).toEqual({ THREADS: '4', RATIO: '0.5', DEBUG: 'true', NAME: 'x' });
  });

  it('refuses an env variable with an invalid name', () => {
    expect(refusal({ modules: [module({ env: { 'BAD-NAME': 'x' } })] }).message).toContain(
      'modules[0].env',
    );
  });

  it('refuses a document that is not an object', () => {
    expect(refusal(null).message).toContain('invalid pipeline');
    expect(refusal([module()]).message).toContain('invalid pipeline');
  });
});

describe('pipeline files', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ion-pipeline-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('resolves relative command arguments against the pipeline file directory when the file exists there', async () => {
    await mkdir(join(dir, 'modules'));
    await writeFile(join(dir, 'modules', 'split.py'), 'print(1)');
    await writeFile(join(dir, 'run.sh'), '#!/bin/sh');
    const file = join(dir, 'ion.yaml');
    await writeFile(
      file,
      [
        'modules:',
        '  - name: split',
        '    subscribes: [file.uploaded]',
        '    run:',
        '      command: [python3, modules/split.py, modules/missing.py, --verbose, /abs/path.py]',
        '  - name: shell',
        '    subscribes: [file.uploaded]',
        '    run:',
        '      command: [./run.sh, run.sh]',
        '',
      ].join('\n'),
    );
    const pipeline = loadPipelineFile(file);
    expect(pipeline.modules[0]!.run.command).toEqual([
      'python3',
      join(dir, 'modules', 'split.py'),
      'modules/missing.py',
      '--verbose',
      '/abs/path.py',
    ]);
    expect(pipeline.modules[1]!.run.command).toEqual([join(dir, 'run.sh'), join(dir, 'run.sh')]);
  });

  it('looks a bare program name up on PATH even when a file of that name sits beside the pipeline', async () => {
    await writeFile(join(dir, 'python3'), '');
    const file = join(dir, 'ion.yaml');
    await writeFile(
      file,
      'modules:\n  - name: a\n    subscribes: [x]\n    run: { command: [python3] }\n',
    );
    expect(loadPipelineFile(file).modules[0]!.run.command).toEqual(['python3']);
  });

  it('loadPipelineDocument returns the document unvalidated, with paths resolved', async () => {
    await writeFile(join(dir, 'tool.py'), '');
    const file = join(dir, 'ion.yaml');
    await writeFile(
      file,
      'modules:\n  - name: BAD\n    retires: 1\n    run: { command: [python3, tool.py] }\n',
    );
    const doc = loadPipelineDocument(file) as {
      modules: { name: string; retires: number; run: { command: string[] } }[];
    };
    expect(doc.modules[0]!.name).toBe('BAD');
    expect(doc.modules[0]!.retires).toBe(1);
    expect(doc.modules[0]!.run.command).toEqual(['python3', join(dir, 'tool.py')]);
  });

  it('names the file and the field when the pipeline is invalid', () => {
    const file = join(dir, 'bad.yaml');
    return writeFile(
      file,
      'modules:\n  - name: a\n    subscribes: [x]\n    run: { command: [echo] }\n    timeout: forever\n',
    ).then(() => {
      expect(() => loadPipelineFile(file)).toThrow(ValidationError);
      expect(() => loadPipelineFile(file)).toThrow(`invalid pipeline file ${file}`);
      expect(() => loadPipelineFile(file)).toThrow('modules[0].timeout');
    });
  });

  it('names the file on a YAML syntax error', async () => {
    const file = join(dir, 'broken.yaml');
    await writeFile(file, 'modules:\n  - name: a\n    run: { command: [echo\n  bad: : :\n');
    expect(() => loadPipelineFile(file)).toThrow(ValidationError);
    expect(() => loadPipelineFile(file)).toThrow(file);
    expect(() => loadPipelineFile(file)).toThrow(/not valid YAML/);
  });

  it('names the file when it cannot be read', () => {
    const file = join(dir, 'absent.yaml');
    expect(() => loadPipelineFile(file)).toThrow(ValidationError);
    expect(() => loadPipelineFile(file)).toThrow(file);
  });

  it('accepts JSON', async () => {
    const file = join(dir, 'ion.json');
    await writeFile(
      file,
      JSON.stringify({
        modules: [
          {
            name: 'j',
            subscribes: ['a.b'],
            publishes: ['c'],
            run: { command: ['echo', 'hi'] },
            timeout: '2s',
            retries: 0,
          },
        ],
      }),
    );
    const pipeline = loadPipelineFile(file);
    expect(pipeline.modules[0]).toMatchObject({
      name: 'j',
      subscribes: ['a.b'],
      publishes: ['c'],
      run: { command: ['echo', 'hi'] },
      timeoutMs: 2000,
      retries: 0,
    });
  });
});

describe('parsePipeline: containers, resources and warm modules', () => {
  const base = { name: 'm', subscribes: ['a'] };
  const one = (extra: Record<string, unknown>) =>
    parsePipeline({ modules: [{ ...base, ...extra }] }).modules[0]!;

  it('takes an image without a command, with pull, network, user, args and resources', () => {
    const spec = one({
      executor: 'docker',
      run: {
        image: 'ion/runtime:local',
        args: ['-c', 'true'],
        pull: 'never',
        network: 'bridge',
        user: '1000:1000',
      },
      resources: { cpu: '500m', memory: '256Mi', gpu: 1 },
    });
    expect(spec.executor).toBe('docker');
    expect(spec.run).toEqual({
      image: 'ion/runtime:local',
      args: ['-c', 'true'],
      pull: 'never',
      network: 'bridge',
      user: '1000:1000',
    });
    expect(spec.resources).toEqual({ cpu: 0.5, memoryBytes: 256 * 2 ** 20, gpu: 1 });
  });

  it('reads memory sizes the way Docker (512m) and Kubernetes (512M, 512Mi) write them', () => {
    expect(one({ run: { image: 'x' }, resources: { memory: '512m' } }).resources?.memoryBytes).toBe(
      512 * 2 ** 20,
    );
    expect(one({ run: { image: 'x' }, resources: { memory: '512M' } }).resources?.memoryBytes).toBe(
      512e6,
    );
    expect(one({ run: { image: 'x' }, resources: { memory: 1024 } }).resources?.memoryBytes).toBe(
      1024,
    );
  });

  it('refuses an image on the local executor, naming run.image', () => {
    expect(() => one({ executor: 'local', run: { image: 'x' } })).toThrow(
      /modules\[0\]\.run\.image: a module with an image cannot run on the local executor/,
    );
  });

  it('refuses a run with neither command nor image, naming run.command', () => {
    expect(() => one({ run: {} })).toThrow(
      /modules\[0\]\.run\.command: is required unless run\.image/,
    );
  });

  it('refuses bad resources and executors with the field named', () => {
    expect(() => one({ run: { image: 'x' }, resources: { memory: 'lots' } })).toThrow(
      /resources\.memory: must be a size/,
    );
    expect(() => one({ run: { image: 'x' }, resources: { cpu: '-1' } })).toThrow(
      /resources\.cpu: must be a number of cores/,
    );
    expect(() => one({ run: { image: 'x' }, executor: 'batch' })).toThrow(/modules\[0\]\.executor/);
  });

  it('takes warm: true with defaults, or its maxJobs and idleTimeout', () => {
    expect(one({ run: { command: ['x'] }, warm: true }).warm).toEqual({
      maxJobs: 100,
      idleTimeoutMs: 300_000,
    });
    expect(one({ run: { command: ['x'] }, warm: { maxJobs: 5, idleTimeout: '10s' } }).warm).toEqual(
      { maxJobs: 5, idleTimeoutMs: 10_000 },
    );
    expect(one({ run: { command: ['x'] }, warm: false }).warm).toBeUndefined();
  });
});
