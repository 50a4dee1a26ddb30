import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    testTimeout: 20_000,
    hookTimeout: 600_000,
    globalSetup: ['test/support/global-setup.ts'],
    projects: [
      {
        extends: true,
        // Free ports and temporary files of their own: side by side, one file per core.
        test: { name: 'unit', include: ['test/unit/**/*.test.ts'], maxWorkers: Math.max(2, availableParallelism()) },
      },
      {
        extends: true,
        // The HTTP API over real HTTP: each file starts its own processes on free ports; one file at a
        // time, beside the unit files, since several start vnum api and vnum serve at once.
        test: { name: 'api', include: ['test/api/**/*.test.ts'], maxWorkers: 1 },
      },
      {
        extends: true,
        // After the unit files, one file at a time: the e2e suites share fixed ports and one
        // Asterisk, and the reliability campaign measures the router's CPU and memory.
        test: { name: 'reliability', include: ['test/reliability/**/*.test.ts'], maxWorkers: 1, sequence: { groupOrder: 1 } },
      },
      {
        extends: true,
        test: { name: 'e2e', include: ['test/e2e/**/*.test.ts'], maxWorkers: 1, sequence: { groupOrder: 1 } },
      },
      {
        extends: true,
        // A private PostgreSQL per file and hosts as network namespaces: one file at a time, after the unit files.
        test: { name: 'cluster', include: ['test/cluster/**/*.test.ts'], maxWorkers: 1, sequence: { groupOrder: 1 } },
      },
    ],
  },
});
