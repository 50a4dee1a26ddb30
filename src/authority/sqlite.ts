import { createApiKey, listApiKeys, revokeApiKey, verifyApiKey } from '../access/api-keys.js';
import { amiWatching, listCalls, listRouterStatus, openCallCount, requestSessionHangup } from '../calls/store.js';
import { addToPool, importedState, operatorState, poolPage, retireNumber } from '../pool/pool.js';
import { decideRoute, type BridgeLookup } from '../routing/decide.js';
import { storeBridgeLookup } from '../routing/lookup.js';
import { createSession, getSession, listSessions, releaseSession } from '../session/sessions.js';
import { collectStats } from '../stats.js';
import { openDb, schemaVersion, storeError, writeTransaction, type Db, type OpenMode } from '../store/db.js';
import type { Authority, StoreCheck } from './authority.js';

/**
 * The authority on one SQLite file: the single box. Each method is the
 * domain's own function on one connection, inside the same transactions the
 * CLI uses; SQLite's failures come out as the store's codes. better-sqlite3
 * is synchronous, so a method runs to its end before the promise settles:
 * requests in one process are serialised, and other processes (the CLI,
 * `vnum serve`'s call log) take turns through SQLite's locks.
 */
export function openSqliteAuthority(path: string, options: { mode?: OpenMode } = {}): Authority {
  const db = openDb(path, { mode: options.mode ?? 'create' });
  let lookup: BridgeLookup | undefined;
  const run = <T>(work: (db: Db) => T): Promise<T> => {
    try {
      return Promise.resolve(work(db));
    } catch (e) {
      return Promise.reject(storeError(e, path));
    }
  };
  return {
    createSession: (input) => run(() => createSession(db, input)),
    getSession: (id, now) => run(() => getSession(db, id, now)),
    listSessions: (filter) => run(() => listSessions(db, filter)),
    releaseSession: (id, graceMs, now, { hangup }) =>
      run(() =>
        // One transaction: the release and the request to hang up its calls (release's own becomes a savepoint).
        writeTransaction(db, () => {
          const released = releaseSession(db, id, graceMs, now);
          return { ...released, hangupCalls: hangup ? requestSessionHangup(db, id, now) : [] };
        }),
      ),

    listPool: (query) => run(() => poolPage(db, query)),
    addToPool: (entries, { defaultCountry, now, rule }) =>
      run(() => addToPool(db, entries, { defaultCountry, now, rule: rule === 'import' ? importedState : operatorState })),
    retireNumber: (number) => run(() => retireNumber(db, number)),

    decideRoute: (call, now, routeOptions) =>
      run(() => {
        lookup ??= storeBridgeLookup(db);
        return decideRoute(call, now, lookup, routeOptions);
      }),

    listCalls: (filter, now) => run(() => ({ ...listCalls(db, filter), watching: amiWatching(db, now) })),
    openCallCount: (ids) => run(() => openCallCount(db, ids)),

    collectStats: (now) => run(() => collectStats(db, now)),
    checkStore: (routersSince) => {
      const check: StoreCheck = { ok: false, location: path, schemaVersion: null, error: null, routers: [] };
      try {
        check.schemaVersion = schemaVersion(db);
        db.prepare('SELECT count(*) FROM (SELECT 1 FROM session LIMIT 1)').get();
        check.routers = listRouterStatus(db, routersSince);
        check.ok = true;
      } catch (e) {
        check.error = (storeError(e, path) as Error).message;
      }
      return Promise.resolve(check);
    },

    createApiKey: (input) => run(() => createApiKey(db, input)),
    listApiKeys: () => run(() => listApiKeys(db)),
    revokeApiKey: (idOrName, now) => run(() => revokeApiKey(db, idOrName, now)),
    verifyApiKey: (token, now) => run(() => verifyApiKey(db, token, now)),

    close: () => {
      if (db.open) db.close();
      return Promise.resolve();
    },
  };
}
