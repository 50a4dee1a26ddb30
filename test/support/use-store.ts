import { afterEach, beforeEach } from 'vitest';
import type { Db } from '../../src/store/db.js';
import { londonDids, seedPool, tempDb } from './store.js';

/**
 * A fresh temporary store for each test of the calling suite, with `dids`
 * London numbers in its pool, removed after the test. Read `db`, `path` and
 * `dir` inside a test: they are that test's store.
 */
export function useStore(options: { dids?: number } = {}): { readonly db: Db; readonly path: string; readonly dir: string } {
  let current: ReturnType<typeof tempDb> | undefined;
  beforeEach(() => {
    current = tempDb();
    if (options.dids) seedPool(current.db, londonDids(options.dids));
  });
  afterEach(() => {
    current?.cleanup();
    current = undefined;
  });
  const store = (): ReturnType<typeof tempDb> => {
    if (!current) throw new Error('the store exists only inside a test');
    return current;
  };
  return {
    get db() {
      return store().db;
    },
    get path() {
      return store().path;
    },
    get dir() {
      return store().dir;
    },
  };
}
