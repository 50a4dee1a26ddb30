import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/**
 * vnum's version, from its package.json: ../../../package.json from
 * dist/src/cli/version.js (the package as installed and run),
 * ../../package.json from src/cli/version.ts (the tests run the sources).
 */
export const VERSION = ((): string => {
  for (const path of ['../../../package.json', '../../package.json']) {
    try {
      const pkg = require(path) as { name?: string; version?: string };
      if (pkg.name === 'vnum' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // not this one
    }
  }
  throw new Error('vnum cannot find its package.json');
})();
