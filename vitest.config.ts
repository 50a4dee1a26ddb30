import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 20_000,
    hookTimeout: 600_000,
    // End-to-end suites share one Asterisk and fixed ports: run files one after another.
    fileParallelism: false,
  },
});
