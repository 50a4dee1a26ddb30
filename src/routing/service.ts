import type { Logger } from 'pino';
import { openDb, type Db } from '../store/db.js';
import { watchFileIdentity } from '../store/file-identity.js';
import { decideRoute, type BridgeLookup, type RouteDecision, type RouteStatus } from './decide.js';
import type { NumberPolicy } from '../numbers/policy.js';
import { storeBridgeLookup } from './lookup.js';
import { BENCH_TIMING_ENV, withDecisionTiming } from './bench-timing.js';

/** What the dialplan reads back from the router (see dialplan/vnum.conf). */
export interface ChannelVariables {
  VNUM_STATUS: RouteStatus;
  VNUM_TARGET: string;
  VNUM_CLI: string;
  VNUM_SESSION: string;
}

export function channelVariables(decision: RouteDecision): ChannelVariables {
  return {
    VNUM_STATUS: decision.status,
    VNUM_TARGET: decision.target ?? '',
    VNUM_CLI: decision.cli ?? '',
    VNUM_SESSION: decision.session ?? '',
  };
}

export interface CallRouterOptions {
  dbPath: string;
  defaultCountry?: string | undefined;
  /** The number-type policy targets must pass (default: DEFAULT_POLICY). */
  policy?: NumberPolicy | undefined;
  logger: Logger;
  now?: () => number;
  /** After a database failure, wait this long before reopening it. */
  reopenDelayMs?: number;
}

export interface CallRouter {
  route(call: { callerId: string; extension: string; dnid: string }): ChannelVariables;
  close(): void;
}

/**
 * The router's busy timeout. A WAL reader never waits for writers; it waits
 * only when another process holds the whole file (locking_mode=EXCLUSIVE, a
 * rollback-journal write) while the router (re)opens it. better-sqlite3 is
 * synchronous, so such a wait freezes every call in flight, past the session
 * deadline: with the store's 5 s, one blocked open held all calls for 5 s.
 * A short wait answers ERROR at once instead, and the next attempt comes
 * after reopenDelayMs.
 */
export const ROUTER_BUSY_TIMEOUT_MS = 250;

/**
 * The router's side of the store: one read connection, reopened by itself
 * after a failure (unreadable, corrupt, locked), answering ERROR meanwhile so
 * the dialplan fails closed.
 *
 * An open SQLite connection keeps reading the file it opened even after that
 * file is deleted or renamed away: without a check, a router whose database
 * was removed, or replaced by `mv` (a restore), would go on bridging calls
 * from the old file while every CLI command sees the new one. So each call
 * first checks that the path still names the file that is open, and reopens
 * when it does not. That check is a watch on the database's folder plus a stat
 * at least every 250 ms (src/store/file-identity.ts), not a stat per call: a
 * replacement is seen once its event has reached the event loop, so a call
 * whose route() runs in the very tick of the `mv` may still be answered from
 * the old file, as it could be with a stat if it came a moment earlier.
 */
export function createCallRouter(options: CallRouterOptions): CallRouter {
  const now = options.now ?? Date.now;
  const reopenDelayMs = options.reopenDelayMs ?? 1_000;
  let db: Db | undefined;
  let lookup: BridgeLookup | undefined;
  /** The file the open connection reads (see fileIdentity). */
  let openedFile: string | undefined;
  const identity = watchFileIdentity(options.dbPath, {
    onWatchError: (error) =>
      options.logger.warn({ err: error, db: options.dbPath }, "cannot watch the database's folder: checking the file with a stat on every call"),
  });
  let retryAt = 0;

  const closeDb = (): void => {
    try {
      db?.close();
    } catch {
      // already unusable
    }
    db = undefined;
    lookup = undefined;
    openedFile = undefined;
  };

  const fail = (error: unknown): ChannelVariables => {
    options.logger.error({ err: error }, 'store failed; answering ERROR until it reopens');
    closeDb();
    retryAt = now() + reopenDelayMs;
    return channelVariables({ status: 'ERROR', target: null, cli: null, session: null });
  };

  const router: CallRouter = {
    route(call) {
      if (lookup) {
        let current: string | undefined;
        try {
          current = identity.current();
        } catch (error) {
          return fail(error);
        }
        if (current !== openedFile) {
          options.logger.warn({ db: options.dbPath, present: current !== undefined }, 'database file replaced or removed: reopening');
          closeDb();
        }
      }
      if (!lookup) {
        if (now() < retryAt) return channelVariables({ status: 'ERROR', target: null, cli: null, session: null });
        try {
          // Identify the file before opening it: if it is replaced in between,
          // the next call sees the difference and reopens again.
          const before = identity.check();
          db = openDb(options.dbPath, { busyTimeoutMs: ROUTER_BUSY_TIMEOUT_MS });
          openedFile = before ?? identity.check();
          lookup = storeBridgeLookup(db);
        } catch (error) {
          return fail(error);
        }
      }
      // agi_extension is the dialled DID; agi_dnid when the extension was rewritten (e.g. to "s").
      const dialled = /\d/.test(call.extension) ? call.extension : call.dnid;
      try {
        const decision = decideRoute({ caller: call.callerId, dialled }, now(), lookup, {
          defaultCountry: options.defaultCountry,
          policy: options.policy,
        });
        if (decision.status === 'INVALID') {
          options.logger.info({ caller: call.callerId.slice(0, 64), reason: decision.reason }, 'invalid call');
        } else if (decision.status === 'NOT_ALLOWED') {
          // The reason names the type, never the number; the session is an identifier the redactor keeps.
          options.logger.warn({ session: decision.session, reason: decision.reason }, 'call refused: the number-type policy refuses its target');
        }
        return channelVariables(decision);
      } catch (error) {
        return fail(error);
      }
    },
    close() {
      identity.close();
      closeDb();
    },
  };
  const timingFile = process.env[BENCH_TIMING_ENV];
  if (!timingFile) return router;
  const timed = withDecisionTiming(router.route, timingFile);
  return {
    route: timed.route,
    close() {
      timed.stop();
      router.close();
    },
  };
}
