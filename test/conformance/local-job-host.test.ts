import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { FsBlobStore } from '../../src/blob/fs/fs-blob-store.js';
import { DirJobHost } from '../../src/executors/dir-job-host.js';
import { LocalExecutor } from '../../src/executors/local/local-executor.js';
import { jobHostConformance } from './job-host.suite.js';

jobHostConformance(
  'DirJobHost + LocalExecutor',
  async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'ion-local-host-'));
    const blobs = new FsBlobStore({ dir: join(dataDir, 'blobs') });
    await blobs.start();
    const host = new DirJobHost({
      kind: 'local',
      executor: new LocalExecutor({ killGraceMs: 500 }),
      blobs,
      dataDir,
      keepJobDirs: false,
      logger: pino({ level: 'silent' }),
    });
    await host.start();
    return {
      host,
      blobs,
      dataDir,
      // The local executor kills the whole process group when the run ends: the job
      // directory check of the suite covers what this host can leave behind.
      leftovers: () => Promise.resolve([]),
      cleanup: async () => {
        await host.close();
        await blobs.close();
        await rm(dataDir, { recursive: true, force: true });
      },
    };
  },
  { moduleDir: null, enforcesMemory: false, runsImages: false, readOnlyInputMount: false },
);
