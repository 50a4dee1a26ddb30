import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 20_000,
    hookTimeout: 600_000,
    // Every process of the run stops with it, even when it is interrupted.
    globalSetup: ['test/support/global-setup.ts'],
    // End-to-end suites share one Asterisk and fixed ports: run files one after another.
    fileParallelism: false,
  },
});
