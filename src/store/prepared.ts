import type { Db } from './db.js';

/**
 * Statements prepared once per connection: `prepare` runs on a connection's
 * first use, and the statements live as long as the connection does.
 */
export function perConnection<T>(prepare: (db: Db) => T): (db: Db) => T {
  const cache = new WeakMap<Db, T>();
  return (db) => {
    let prepared = cache.get(db);
    if (prepared === undefined) {
      prepared = prepare(db);
      cache.set(db, prepared);
    }
    return prepared;
  };
}
