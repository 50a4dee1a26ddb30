import { createApiKey, listApiKeys, revokeApiKey, verifyApiKey } from '../access/api-keys.js';
import { amiWatching, listCalls, listRouterStatus, openCallCount, requestSessionHangup } from '../calls/store.js';
import { addToPool, poolPage, retireNumber } from '../pool/pool.js';
import { syncPool } from '../pool/sync.js';
import { setNumberHandling } from '../pool/handling.js';
import { decideRoute, type BridgeLookup } from '../routing/decide.js';
import { storeBridgeLookup } from '../routing/lookup.js';
import { createSession, getSession, listSessions, releaseSession, type CreateResult, type CreateSessionInput } from '../session/sessions.js';
import { collectStats } from '../stats.js';
import { openDb, schemaVersion, storeError, writeTransaction, type Db, type OpenMode } from '../store/db.js';
import type { Authority, StoreCheck } from './authority.js';

/** Creates committed together at most: bounds how long one transaction holds the write lock. */
export const MAX_CREATES_PER_COMMIT = 64;

/**
 * The authority on one SQLite file: the single box. Each method is the
 * domain's own function on one connection, inside the same transactions the
 * CLI uses; SQLite's failures come out as the store's codes. better-sqlite3
 * is synchronous, so a method runs to its end before the promise settles:
 * requests in one process are serialised, and other processes (the CLI,
 * `vnum serve`'s call log) take turns through SQLite's locks.
 *
 * Creates are committed in groups (group commit): those that arrive in the
 * same turn of the event loop run one after another in one IMMEDIATE
 * transaction, each inside its own savepoint, so one that fails (a conflict,
 * an exhausted pool) is undone alone and the others commit. Each sees the
 * ones before it, exactly as if they had committed one by one, so the
 * invariant and the idempotency rule hold as they do for the CLI. A promise
 * settles only once its group has committed (or failed as a whole: then
 * nothing of the group was written). Shared pages (the session table's and
 * its id index's last pages) are written once per group, not once per
 * create: docs/benchmarks.md, api.
 */
export function openSqliteAuthority(path: string, options: { mode?: OpenMode } = {}): Authority {
  const db = openDb(path, { mode: options.mode ?? 'create' });
  let lookup: BridgeLookup | undefined;
  const creates = groupCommit(db, path);
  const run = <T>(work: (db: Db) => T): Promise<T> => {
    try {
      return Promise.resolve(work(db));
    } catch (e) {
      return Promise.reject(storeError(e, path));
    }
  };
  return {
    createSession: creates.create,
    getSession: (id, now) => run(() => getSession(db, id, now)),
    listSessions: (filter) => run(() => listSessions(db, filter)),
    releaseSession: (id, graceMs, now, { hangup }) =>
      run(() =>
        // One transaction: the release and the request to hang up its calls (release's own becomes a savepoint).
        writeTransaction(db, () => {
          const released = releaseSession(db, id, graceMs, now);
          return { ...released, hangup: hangup ? { at: now, calls: requestSessionHangup(db, id, now) } : undefined };
        }),
      ),

    listPool: (query) => run(() => poolPage(db, query)),
    addToPool: (entries, { defaultCountry, now, rule }) => run(() => addToPool(db, entries, { defaultCountry, now, writer: rule })),
    retireNumber: (number) => run(() => retireNumber(db, number)),
    setNumberHandling: (number, change) => run(() => setNumberHandling(db, number, change)),
    syncPool: (entries, options) => run(() => syncPool(db, entries, options)),

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
      creates.flush();
      if (db.open) db.close();
      return Promise.resolve();
    },
    commitStats: () => ({ ...creates.stats }),
  };
}

class GroupAborted extends Error {
  constructor(readonly reason: unknown) {
    super('the group transaction was rolled back');
  }
}

type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

/** The queue of creates waiting for the next group transaction (see openSqliteAuthority). */
function groupCommit(db: Db, path: string) {
  const queue: Array<{ input: CreateSessionInput; resolve: (result: CreateResult) => void; reject: (error: unknown) => void }> = [];
  let scheduled = false;
  const stats = { creates: 0, transactions: 0 };

  const flushOnce = (): void => {
    const group = queue.splice(0, MAX_CREATES_PER_COMMIT);
    if (group.length === 0) return;
    const outcomes: Array<Settled<CreateResult>> = [];
    try {
      writeTransaction(db, () => {
        for (const item of group) {
          try {
            outcomes.push({ ok: true, value: createSession(db, item.input) });
          } catch (error) {
            // Some SQLite errors (disk full, I/O) roll the whole transaction back: then none of the group stands.
            if (!db.inTransaction) throw new GroupAborted(error);
            outcomes.push({ ok: false, error });
          }
        }
      });
    } catch (e) {
      const error = storeError(e instanceof GroupAborted ? e.reason : e, path);
      for (const item of group) item.reject(error);
      return;
    }
    stats.transactions++;
    stats.creates += group.length;
    group.forEach((item, i) => {
      const outcome = outcomes[i]!;
      if (outcome.ok) item.resolve(outcome.value);
      else item.reject(storeError(outcome.error, path));
    });
  };
  const flush = (): void => {
    scheduled = false;
    while (queue.length > 0) flushOnce();
  };
  return {
    stats,
    flush,
    create(input: CreateSessionInput): Promise<CreateResult> {
      return new Promise((resolve, reject) => {
        queue.push({ input, resolve, reject });
        if (!scheduled) {
          scheduled = true;
          // After the I/O of this turn: requests that arrived together are parsed by then.
          setImmediate(flush);
        }
      });
    },
  };
}
