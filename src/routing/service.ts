import { tracingChannel } from 'node:diagnostics_channel';
import type { Logger } from 'pino';
import { FollowedDatabase } from '../store/followed-db.js';
import { decideRoute, type BridgeLookup, type RouteDecision } from './decide.js';
import type { NumberPolicy } from '../numbers/policy.js';
import { storeBridgeLookup } from './lookup.js';

/**
 * Every routing decision, the router's whole route() call, as a
 * diagnostics_channel trace for whoever measures them (the routing benchmark
 * times them inside a real `vnum serve`). Nobody subscribed: one check a call.
 */
export const ROUTE_TRACE = tracingChannel('vnum:route');

/** A call as the router needs it: Asterisk's caller ID, and the dialled number as the dialplan matched it. */
export interface RoutedCall {
  /** agi_callerid, verbatim (a missing caller ID is `unknown`). */
  callerId: string;
  /** agi_extension: the dialled DID. */
  extension: string;
  /** agi_dnid: the dialled number when the extension was rewritten (e.g. to `s`). */
  dnid: string;
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
  route(call: RoutedCall): RouteDecision;
  close(): void;
}

/**
 * The router's busy timeout: short, because better-sqlite3 is synchronous and
 * a wait freezes every call in flight (docs/routing.md, "The store under the router").
 */
export const ROUTER_BUSY_TIMEOUT_MS = 250;

function storeError(reason: string): RouteDecision {
  return { status: 'ERROR', target: null, presentedCallerId: null, session: null, reason };
}

/**
 * The router: the decision for each call, from the database the path names
 * now (followed, reopened after a failure), ERROR while it cannot be read so
 * that the dialplan fails closed.
 */
export function createCallRouter(options: CallRouterOptions): CallRouter {
  const now = options.now ?? Date.now;
  const log = options.logger;
  const store = new FollowedDatabase<BridgeLookup>({
    path: options.dbPath,
    prepare: storeBridgeLookup,
    busyTimeoutMs: ROUTER_BUSY_TIMEOUT_MS,
    reopenDelayMs: options.reopenDelayMs ?? 1_000,
    logger: log,
    now,
  });
  const failed = (error: unknown): RouteDecision => {
    log.error({ err: error }, 'store failed; answering ERROR until it reopens');
    return storeError('the store failed');
  };

  const route = (call: RoutedCall): RouteDecision => {
    let lookup: BridgeLookup | undefined;
    try {
      lookup = store.get();
    } catch (error) {
      return failed(error);
    }
    if (lookup === undefined) return storeError('the store is reopening');
    // agi_extension is the dialled DID; agi_dnid when the extension was rewritten (e.g. to "s").
    const dialled = /\d/.test(call.extension) ? call.extension : call.dnid;
    try {
      const decision = decideRoute({ caller: call.callerId, dialled }, now(), lookup, {
        defaultCountry: options.defaultCountry,
        policy: options.policy,
      });
      if (decision.status === 'INVALID') {
        log.info({ caller: call.callerId.slice(0, 64), reason: decision.reason }, 'invalid call');
      } else if (decision.status === 'NOT_ALLOWED') {
        // The reason names the type, never the number; the session is an identifier the redactor keeps.
        log.warn({ session: decision.session, reason: decision.reason }, 'call refused: the number-type policy refuses its target');
      }
      return decision;
    } catch (error) {
      store.drop();
      return failed(error);
    }
  };
  return {
    route: (call) => (ROUTE_TRACE.hasSubscribers ? ROUTE_TRACE.traceSync(route, {}, undefined, call) : route(call)),
    close: () => store.close(),
  };
}
