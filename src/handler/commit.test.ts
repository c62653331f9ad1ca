import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ModuleOutputError } from '../core/errors.js';
import { readJobOutputs, type CommitPlan } from './commit.js';

let base: string;
let outside: string;

beforeEach(async () => {
  base = await mkdtemp(join(tmpdir(), 'ion-commit-'));
  outside = await mkdtemp(join(tmpdir(), 'ion-commit-outside-'));
  for (const dir of ['in/data', 'out/data', 'out/events'])
    await mkdir(join(base, dir), { recursive: true });
  await writeFile(join(base, 'in', 'eventmeta.json'), '[]');
});

afterEach(async () => {
  await rm(base, { recursive: true, force: true });
  await rm(outside, { recursive: true, force: true });
});

async function put(rel: string, content: string): Promise<void> {
  const path = join(base, rel);
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, content);
}

const dataFile = (rel: string, content = `content of ${rel}`) =>
  put(join('out', 'data', rel), content);
const eventFile = (name: string, doc: unknown) =>
  put(join('out', 'events', name), typeof doc === 'string' ? doc : JSON.stringify(doc));
const insightsFile = (content: string) => put(join('out', 'insights.json'), content);

/** Runs readJobOutputs expecting a ModuleOutputError and returns its message. */
async function outputError(publishes: readonly string[] = ['done']): Promise<string> {
  const err: unknown = await readJobOutputs(base, publishes).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ModuleOutputError);
  expect((err as ModuleOutputError).code).toBe('module_output_invalid');
  return (err as ModuleOutputError).message;
}

const paths = (plan: CommitPlan) => plan.files.map((f) => f.path).sort();

describe('readJobOutputs: event files in the contract array form', () => {
  it('reads eventType, comma-separated files including subfolders, and ignores empty segments', async () => {
    await dataFile('img1.png');
    await dataFile('subdir/img2.png');
    await dataFile('a/b/c.txt');
    await eventFile('e1.json', [
      { key: 'eventType', value: 'face_detected' },
      { key: 'files', value: 'img1.png,,subdir/img2.png,a/b/c.txt,' },
    ]);
    const plan = await readJobOutputs(base, ['face_detected']);
    expect(plan.events).toHaveLength(1);
    expect(plan.events[0]).toMatchObject({
      fileName: 'e1.json',
      type: 'face_detected',
      files: ['img1.png', 'subdir/img2.png', 'a/b/c.txt'],
    });
  });

  it('trims spaces around file names and lists a repeated file once', async () => {
    await dataFile('x.txt');
    await dataFile('y.txt');
    await eventFile('e.json', [
      { key: 'eventType', value: 'done' },
      { key: 'files', value: ' x.txt , y.txt,x.txt' },
    ]);
    const plan = await readJobOutputs(base, ['done']);
    expect(plan.events[0]!.files).toEqual(['x.txt', 'y.txt']);
  });

  it('keeps every other key as metadata, in the order the module wrote it', async () => {
    await eventFile('e.json', [
      { key: 'zeta', value: '1' },
      { key: 'eventType', value: 'done' },
      { key: 'alpha', value: '2' },
      { key: 'mid', value: 'three' },
    ]);
    const plan = await readJobOutputs(base, ['done']);
    expect(plan.events[0]!.data).toEqual([
      { key: 'zeta', value: '1' },
      { key: 'alpha', value: '2' },
      { key: 'mid', value: 'three' },
    ]);
    expect(plan.events[0]!.files).toEqual([]);
  });

  it('raises no events when out/events is empty, and persists every out/data file', async () => {
    await dataFile('one.txt');
    await dataFile('deep/er/two.txt');
    const plan = await readJobOutputs(base, ['done']);
    expect(plan.events).toEqual([]);
    expect(paths(plan)).toEqual(['deep/er/two.txt', 'one.txt']);
    const two = plan.files.find((f) => f.path === 'deep/er/two.txt');
    expect(two?.absPath).toBe(join(base, 'out', 'data', 'deep', 'er', 'two.txt'));
  });
});

describe('readJobOutputs: the object form extension', () => {
  it('accepts files as an array and data as an object', async () => {
    await dataFile('sub/a.txt');
    await dataFile('b.txt');
    await eventFile('obj.json', {
      eventType: 'done',
      files: ['sub/a.txt', 'b.txt'],
      data: { colour: 'red', size: 'big' },
    });
    const plan = await readJobOutputs(base, ['done']);
    expect(plan.events[0]).toMatchObject({
      type: 'done',
      files: ['sub/a.txt', 'b.txt'],
      data: [
        { key: 'colour', value: 'red' },
        { key: 'size', value: 'big' },
      ],
    });
  });

  it('accepts an object with only eventType', async () => {
    await eventFile('obj.json', { eventType: 'done' });
    const plan = await readJobOutputs(base, ['done']);
    expect(plan.events[0]).toMatchObject({ type: 'done', files: [], data: [] });
  });

  it('refuses an unknown field in the object form, naming it', async () => {
    await eventFile('obj.json', { eventType: 'done', metadata: { a: 'b' } });
    const message = await outputError();
    expect(message).toContain('out/events/obj.json');
    expect(message).toContain('metadata');
  });

  it('refuses a data value that is an object, naming the key', async () => {
    await eventFile('obj.json', { eventType: 'done', data: { nested: { a: 1 } } });
    const message = await outputError();
    expect(message).toContain('out/events/obj.json');
    expect(message).toContain('nested');
  });
});

describe('readJobOutputs: insights', () => {
  it('has no insights when out/insights.json is missing', async () => {
    const plan = await readJobOutputs(base, []);
    expect(plan.insights).toEqual([]);
  });

  it('has no insights when out/insights.json is empty', async () => {
    await insightsFile('');
    const plan = await readJobOutputs(base, []);
    expect(plan.insights).toEqual([]);
  });

  it('reads a valid insights array in order', async () => {
    await insightsFile(
      JSON.stringify([
        { key: 'colour', value: 'red' },
        { key: 'faces', value: '3' },
      ]),
    );
    const plan = await readJobOutputs(base, []);
    expect(plan.insights).toEqual([
      { key: 'colour', value: 'red' },
      { key: 'faces', value: '3' },
    ]);
  });

  it('turns a number value into its string form', async () => {
    await insightsFile(JSON.stringify([{ key: 'faces', value: 3 }]));
    const plan = await readJobOutputs(base, []);
    expect(plan.insights).toEqual([{ key: 'faces', value: '3' }]);
  });

  it('fails on invalid JSON, naming the file', async () => {
    await insightsFile('[{"key": "a", "value": ');
    const message = await outputError();
    expect(message).toContain('out/insights.json');
    expect(message).toContain('not valid JSON');
  });

  it('fails when the document is not an array, naming the file', async () => {
    await insightsFile(JSON.stringify({ colour: 'red' }));
    const message = await outputError();
    expect(message).toContain('out/insights.json');
    expect(message).toContain('array');
  });

  it('fails when a value is not a string, naming the file and the entry', async () => {
    await insightsFile(
      JSON.stringify([
        { key: 'ok', value: 'fine' },
        { key: 'bad', value: { nested: true } },
      ]),
    );
    const message = await outputError();
    expect(message).toContain('out/insights.json[1]');
    expect(message).toContain('value');
  });

  it('fails when a value is null', async () => {
    await insightsFile(JSON.stringify([{ key: 'bad', value: null }]));
    const message = await outputError();
    expect(message).toContain('out/insights.json[0].value');
  });

  it('fails when a key is missing', async () => {
    await insightsFile(JSON.stringify([{ value: 'x' }]));
    const message = await outputError();
    expect(message).toContain('out/insights.json[0].key');
  });
});

describe('readJobOutputs: bad event files fail with ModuleOutputError naming the file and the problem', () => {
  it('invalid JSON', async () => {
    await eventFile('broken.json', '[{"key": "eventType", ');
    const message = await outputError();
    expect(message).toContain('out/events/broken.json');
    expect(message).toContain('not valid JSON');
  });

  it('missing eventType', async () => {
    await eventFile('nokind.json', [{ key: 'colour', value: 'red' }]);
    const message = await outputError();
    expect(message).toContain('out/events/nokind.json');
    expect(message).toContain('eventType');
  });

  it('an event type the module does not declare in publishes', async () => {
    await eventFile('other.json', [{ key: 'eventType', value: 'something_else' }]);
    const message = await outputError(['done', 'also_done']);
    expect(message).toContain('out/events/other.json');
    expect(message).toContain('"something_else"');
    expect(message).toContain('publishes');
    expect(message).toContain('done, also_done');
  });

  it('an event type when the module declares no publishes at all', async () => {
    await eventFile('e.json', [{ key: 'eventType', value: 'done' }]);
    const message = await outputError([]);
    expect(message).toContain('out/events/e.json');
    expect(message).toContain('none declared');
  });

  it('a listed file that does not exist in out/data', async () => {
    await dataFile('present.txt');
    await eventFile('e.json', [
      { key: 'eventType', value: 'done' },
      { key: 'files', value: 'present.txt,missing.txt' },
    ]);
    const message = await outputError();
    expect(message).toContain('out/events/e.json');
    expect(message).toContain('"missing.txt"');
    expect(message).toContain('does not exist');
  });

  it('a listed file with ".." that climbs out of out/data', async () => {
    await put('in/data/secret.txt', 'input');
    await eventFile('e.json', [
      { key: 'eventType', value: 'done' },
      { key: 'files', value: '../../in/data/secret.txt' },
    ]);
    const message = await outputError();
    expect(message).toContain('out/events/e.json');
    expect(message).toContain('..');
  });

  it('a listed file with ".." even when it would land back inside out/data', async () => {
    await dataFile('a.txt');
    await eventFile('e.json', { eventType: 'done', files: ['sub/../a.txt'] });
    const message = await outputError();
    expect(message).toContain('out/events/e.json');
    expect(message).toContain('".."');
  });

  it('a listed file given as an absolute path', async () => {
    await dataFile('a.txt');
    await eventFile('e.json', { eventType: 'done', files: [join(base, 'out', 'data', 'a.txt')] });
    const message = await outputError();
    expect(message).toContain('out/events/e.json');
    expect(message).toContain('absolute');
  });

  it('a listed directory instead of a file', async () => {
    await dataFile('folder/inside.txt');
    await eventFile('e.json', [
      { key: 'eventType', value: 'done' },
      { key: 'files', value: 'folder' },
    ]);
    const message = await outputError();
    expect(message).toContain('out/events/e.json');
    expect(message).toContain('"folder"');
    expect(message).toContain('directory');
  });

  it('a document that is neither an array nor an object', async () => {
    await eventFile('e.json', '"just a string"');
    const message = await outputError();
    expect(message).toContain('out/events/e.json');
  });

  it('a pair whose value is not a string', async () => {
    await eventFile('e.json', [
      { key: 'eventType', value: 'done' },
      { key: 'obj', value: [1, 2] },
    ]);
    const message = await outputError();
    expect(message).toContain('out/events/e.json[1].value');
  });

  it('a directory in out/events whose name ends in .json', async () => {
    await mkdir(join(base, 'out', 'events', 'dir.json'));
    const message = await outputError();
    expect(message).toContain('out/events/dir.json');
  });

  it('one bad event file fails the whole output even when others are valid', async () => {
    await eventFile('a.json', [{ key: 'eventType', value: 'done' }]);
    await eventFile('b.json', [{ key: 'eventType', value: 'undeclared' }]);
    const message = await outputError();
    expect(message).toContain('out/events/b.json');
  });
});

describe('readJobOutputs: symlinks in out/data', () => {
  it('refuses a symlink pointing to /etc/passwd', async () => {
    await symlink('/etc/passwd', join(base, 'out', 'data', 'passwd'));
    const message = await outputError();
    expect(message).toContain('out/data/passwd');
    expect(message).toContain('outside');
  });

  it('refuses a symlink pointing to a temp file outside the job directory, even if no event lists it', async () => {
    const target = join(outside, 'leak.txt');
    await writeFile(target, 'not yours');
    await mkdir(join(base, 'out', 'data', 'sub'), { recursive: true });
    await symlink(target, join(base, 'out', 'data', 'sub', 'leak.txt'));
    const message = await outputError();
    expect(message).toContain('out/data/sub/leak.txt');
    expect(message).toContain('outside');
  });

  it('refuses a symlink pointing to a directory outside', async () => {
    await symlink(outside, join(base, 'out', 'data', 'elsewhere'));
    const message = await outputError();
    expect(message).toContain('out/data/elsewhere');
    expect(message).toContain('outside');
  });

  it('refuses a relative symlink that climbs out to in/data', async () => {
    await put('in/data/input.txt', 'input');
    await symlink('../../in/data/input.txt', join(base, 'out', 'data', 'sneaky.txt'));
    const message = await outputError();
    expect(message).toContain('out/data/sneaky.txt');
  });

  it('refuses a dangling symlink', async () => {
    await symlink(join(outside, 'gone.txt'), join(base, 'out', 'data', 'dangling'));
    const message = await outputError();
    expect(message).toContain('out/data/dangling');
  });

  it('allows a symlink pointing to a file inside out/data and persists the real file', async () => {
    await dataFile('real/original.txt', 'the bytes');
    await symlink('real/original.txt', join(base, 'out', 'data', 'alias.txt'));
    await eventFile('e.json', [
      { key: 'eventType', value: 'done' },
      { key: 'files', value: 'alias.txt' },
    ]);
    const plan = await readJobOutputs(base, ['done']);
    expect(plan.events[0]!.files).toEqual(['alias.txt']);
    const alias = plan.files.find((f) => f.path === 'alias.txt');
    expect(alias?.absPath).toBe(join(base, 'out', 'data', 'real', 'original.txt'));
  });
});

describe('readJobOutputs: the events directory', () => {
  it('returns events sorted by file name whatever the creation order', async () => {
    for (const name of ['c.json', 'a.json', '10.json', 'b.json', '2.json']) {
      await eventFile(name, [
        { key: 'eventType', value: 'done' },
        { key: 'name', value: name },
      ]);
    }
    const plan = await readJobOutputs(base, ['done']);
    const names = plan.events.map((e) => e.fileName);
    expect(names).toEqual(['10.json', '2.json', 'a.json', 'b.json', 'c.json']);
    expect(plan.events.map((e) => e.data[0]!.value)).toEqual(names);
  });

  it('ignores files that do not end in .json', async () => {
    await eventFile('keep.json', [{ key: 'eventType', value: 'done' }]);
    await eventFile('notes.txt', 'this is not JSON at all');
    await eventFile('backup.json.bak', 'neither is this');
    await eventFile('README', '{');
    const plan = await readJobOutputs(base, ['done']);
    expect(plan.events.map((e) => e.fileName)).toEqual(['keep.json']);
  });
});
