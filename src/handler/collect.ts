import { SymlinkRefused } from '../blob/hashing.js';
import { ModuleOutputError } from '../core/errors.js';
import type { FileRef, KeyValue } from '../core/types.js';
import { readJobOutputs } from './commit.js';

/** Where collect stores output files: the blob store's `putFile`, wherever collect runs. */
export type StoreFileFn = (absPath: string) => Promise<{ sha256: string; size: number }>;

/** One event the module raised, with its files already stored. */
export interface CollectedEvent {
  /** The event file's name in out/events (part of the deterministic child id). */
  fileName: string;
  type: string;
  data: KeyValue[];
  files: FileRef[];
}

/**
 * What collect returns for one successful run: plain JSON, so it crosses a process or pod
 * boundary (`ion handler collect` prints it) unchanged. The worker turns `events` into child
 * events (their ids derive from the job) and commits everything in one transaction.
 */
export interface CollectedOutputs {
  /** Every file left in out/data, stored in the blob store. */
  outputs: FileRef[];
  insights: KeyValue[];
  events: CollectedEvent[];
}

/**
 * Collect: reads and validates what the module left in its job directory (out/data,
 * out/insights.json, out/events), stores its files, and returns the serialisable result.
 * Throws ModuleOutputError (the module's fault) with a message naming the file and the problem.
 */
export async function collectJobDir(
  base: string,
  publishes: readonly string[],
  storeFile: StoreFileFn,
): Promise<CollectedOutputs> {
  const plan = await readJobOutputs(base, publishes);
  const refs = new Map<string, FileRef>();
  for (const file of plan.files) {
    const ref = await storeFile(file.absPath).catch((err: unknown) => {
      // Checked as a regular file a moment ago, a symlink now: something the module left
      // running swapped it. The stores never follow it; the attempt fails on the module.
      if (err instanceof SymlinkRefused)
        throw new ModuleOutputError(
          `out/data/${file.path} was replaced by a symbolic link after it was checked; only regular files are stored`,
          { cause: err },
        );
      throw err;
    });
    refs.set(file.path, { path: file.path, sha256: ref.sha256, size: ref.size });
  }
  return {
    outputs: [...refs.values()],
    insights: plan.insights,
    events: plan.events.map((raised) => ({
      fileName: raised.fileName,
      type: raised.type,
      data: raised.data,
      files: raised.files.map((p) => refs.get(p)!),
    })),
  };
}
