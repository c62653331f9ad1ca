import { defineConfig } from 'vitest/config';

/**
 * Two projects: `unit` (unit, conformance, API route tests) runs files in parallel; `e2e`
 * (real `ion` processes: a server and three workers per distributed test) runs one file at
 * a time, so two clusters never compete for the machine's two cores and turn deadlines
 * into flakes. `npm test` runs both, one after the other.
 */
export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Names the run so the container engines it starts are stopped when it ends (and only those).
    globalSetup: ['test/support/container-engine-setup.ts'],
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['src/**/*.test.ts', 'src/**/*.test.tsx', 'test/**/*.test.ts'],
          exclude: ['test/e2e/**'],
        },
      },
      {
        extends: true,
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          fileParallelism: false,
          testTimeout: 180_000,
        },
      },
    ],
  },
});
