import { access, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FsBlobStore } from '../blob/fs/fs-blob-store.js';
import { ValidationError } from '../core/errors.js';
import type { FileRef, IonEvent, KeyValue } from '../core/types.js';
import { prepareJobDir, type MaterializeFn } from './prepare.js';

let root: string;
let blobs: FsBlobStore;
let materialize: MaterializeFn;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'ion-prepare-'));
  blobs = new FsBlobStore({ dir: join(root, 'blobs') });
  await blobs.start();
  materialize = (sha, dest) => blobs.materialize(sha, dest);
});

afterEach(async () => {
  await blobs.close();
  await rm(root, { recursive: true, force: true });
});

function event(data: KeyValue[], files: FileRef[]): IonEvent {
  return {
    eventId: 'evt-1',
    type: 'thing.happened',
    correlationId: 'evt-1',
    parentEventId: null,
    source: 'api',
    sourceJobId: null,
    data,
    files,
    createdAt: new Date(0).toISOString(),
  };
}

async function stored(path: string, content: string): Promise<FileRef> {
  const ref = await blobs.put(Readable.from([Buffer.from(content)]));
  return { path, ...ref };
}

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  );

describe('prepareJobDir', () => {
  it('puts the event files in in/data at their nested relative paths', async () => {
    const base = join(root, 'job');
    const files = [
      await stored('top.txt', 'top'),
      await stored('a/b/deep.bin', 'deep'),
      await stored('a/side.txt', 'side'),
    ];
    const layout = await prepareJobDir(base, event([], files), materialize);
    expect(layout.inData).toBe(join(base, 'in', 'data'));
    expect(await readFile(join(base, 'in', 'data', 'top.txt'), 'utf8')).toBe('top');
    expect(await readFile(join(base, 'in', 'data', 'a', 'b', 'deep.bin'), 'utf8')).toBe('deep');
    expect(await readFile(join(base, 'in', 'data', 'a', 'side.txt'), 'utf8')).toBe('side');
  });

  it('writes in/eventmeta.json as the ordered key/value array', async () => {
    const base = join(root, 'job');
    const data = [
      { key: 'zeta', value: '1' },
      { key: 'alpha', value: 'two' },
      { key: 'zeta2', value: '' },
    ];
    const layout = await prepareJobDir(base, event(data, []), materialize);
    expect(layout.eventMeta).toBe(join(base, 'in', 'eventmeta.json'));
    expect(JSON.parse(await readFile(layout.eventMeta, 'utf8'))).toEqual(data);
  });

  it('writes in/eventmeta.json as an empty array when the event has no metadata', async () => {
    const base = join(root, 'job');
    await prepareJobDir(base, event([], []), materialize);
    expect(JSON.parse(await readFile(join(base, 'in', 'eventmeta.json'), 'utf8'))).toEqual([]);
  });

  it('creates out/data and out/events empty and no insights file', async () => {
    const base = join(root, 'job');
    await prepareJobDir(
      base,
      event([{ key: 'k', value: 'v' }], [await stored('f.txt', 'x')]),
      materialize,
    );
    expect(await readdir(join(base, 'out', 'data'))).toEqual([]);
    expect(await readdir(join(base, 'out', 'events'))).toEqual([]);
    expect(await exists(join(base, 'out', 'insights.json'))).toBe(false);
    expect((await readdir(join(base, 'in', 'data'))).sort()).toEqual(['f.txt']);
  });

  it('wipes an existing job directory first, so nothing of a previous attempt remains', async () => {
    const base = join(root, 'job');
    await mkdir(join(base, 'out', 'data', 'old'), { recursive: true });
    await writeFile(join(base, 'out', 'data', 'old', 'leftover.txt'), 'old');
    await mkdir(join(base, 'out', 'events'), { recursive: true });
    await writeFile(join(base, 'out', 'events', 'stale.json'), '[]');
    await writeFile(join(base, 'out', 'insights.json'), '[]');
    await mkdir(join(base, 'in', 'data'), { recursive: true });
    await writeFile(join(base, 'in', 'data', 'previous-input.txt'), 'old');
    await writeFile(join(base, 'scratch.tmp'), 'junk');

    await prepareJobDir(base, event([], [await stored('new.txt', 'new')]), materialize);

    expect(await readdir(join(base, 'out', 'data'))).toEqual([]);
    expect(await readdir(join(base, 'out', 'events'))).toEqual([]);
    expect(await exists(join(base, 'out', 'insights.json'))).toBe(false);
    expect(await readdir(join(base, 'in', 'data'))).toEqual(['new.txt']);
    expect((await readdir(base)).sort()).toEqual(['in', 'out']);
  });

  it('refuses a stored file path with ".." and writes nothing outside the job directory', async () => {
    const base = join(root, 'job');
    const ref = await stored('../../escaped.txt', 'evil');
    const err: unknown = await prepareJobDir(base, event([], [ref]), materialize).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as Error).message).toContain('../../escaped.txt');
    expect((err as Error).message).toContain('..');
    expect(await exists(join(root, 'escaped.txt'))).toBe(false);
    expect(await exists(join(base, 'in', 'escaped.txt'))).toBe(false);
  });

  it('refuses a stored absolute file path', async () => {
    const base = join(root, 'job');
    const target = join(root, 'abs.txt');
    const ref = await stored(target, 'evil');
    await expect(prepareJobDir(base, event([], [ref]), materialize)).rejects.toBeInstanceOf(
      ValidationError,
    );
    expect(await exists(target)).toBe(false);
  });
});
