import type { Db } from './db.js';

/**
 * `prepare(db)` made once per connection and kept with it (a prepared
 * statement costs a parse each time it is made): `const statements =
 * perConnection((db) => ({ byId: db.prepare(…) }))`, then `statements(db).byId`.
 */
export function perConnection<T>(prepare: (db: Db) => T): (db: Db) => T {
  const made = new WeakMap<Db, T>();
  return (db) => {
    let value = made.get(db);
    if (value === undefined) {
      value = prepare(db);
      made.set(db, value);
    }
    return value;
  };
}
