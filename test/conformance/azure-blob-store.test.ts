import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll } from 'vitest';
import { AzureBlobStore } from '../../src/blob/azure/azure-blob-store.js';
import { startAzurite, type RunningAzurite } from '../support/emulators.js';
import { blobStoreConformance } from './blob-store.suite.js';

/**
 * Started once for the file. A start failure is not thrown from beforeAll (vitest would
 * then report the tests as skipped) but from the factory, so every test fails with it.
 */
let azurite: Promise<RunningAzurite>;

beforeAll(async () => {
  azurite = startAzurite();
  await azurite.catch(() => undefined);
});

afterAll(async () => {
  await azurite.then(
    (running) => running.stop(),
    () => undefined,
  );
});

blobStoreConformance('AzureBlobStore', async () => {
  const { connectionString } = await azurite;
  const blobs = new AzureBlobStore({
    connectionString,
    container: `ion-test-${randomBytes(6).toString('hex')}`,
  });
  await blobs.start();
  return {
    blobs,
    async cleanup() {
      await blobs.close();
    },
  };
});
