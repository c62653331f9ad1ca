import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ValidationError } from '../core/errors.js';
import type { IonEvent } from '../core/types.js';
import { jobLayout, type JobLayout } from './layout.js';
import { normaliseRelativePath } from './safe-path.js';

/** Where prepare gets input files from: the blob store in a worker, the API in `ion dev run`. */
export type MaterializeFn = (sha256: string, destPath: string) => Promise<void>;

/**
 * Prepare: lays out a fresh job directory for one event per the module contract. `in/data`
 * receives the event's files at their relative paths, `in/eventmeta.json` its metadata as a
 * key/value array (an empty array when there is none), and the three outputs start empty.
 */
export async function prepareJobDir(
  base: string,
  event: IonEvent,
  materialize: MaterializeFn,
): Promise<JobLayout> {
  const layout = jobLayout(base);
  // Empty the directory rather than remove it: in a pod it is a volume's mount point, which
  // cannot be removed (EBUSY).
  await mkdir(base, { recursive: true });
  await Promise.all(
    (await readdir(base)).map((entry) => rm(join(base, entry), { recursive: true, force: true })),
  );
  await Promise.all([
    mkdir(layout.inData, { recursive: true }),
    mkdir(layout.outData, { recursive: true }),
    mkdir(layout.outEvents, { recursive: true }),
  ]);
  for (const file of event.files) {
    const checked = normaliseRelativePath(file.path, 'in/data');
    // Paths were validated when the event was stored; this guards against a tampered store.
    if (!checked.ok)
      throw new ValidationError(
        `event ${event.eventId} carries file "${file.path}" which ${checked.reason}`,
      );
    const dest = join(layout.inData, checked.path);
    await mkdir(dirname(dest), { recursive: true });
    await materialize(file.sha256, dest);
  }
  await writeFile(
    layout.eventMeta,
    JSON.stringify(
      event.data.map(({ key, value }) => ({ key, value })),
      null,
      2,
    ),
  );
  return layout;
}
