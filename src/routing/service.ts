import { tracingChannel } from 'node:diagnostics_channel';
import type { Logger } from 'pino';
import { FollowedDatabase } from '../store/followed-db.js';
import { decideRoute, isWithheld, type RouteDecision } from './decide.js';
import type { NumberPolicy } from '../numbers/policy.js';
import type { E164 } from '../numbers/normalise.js';
import { normaliseNumberCached } from '../numbers/cache.js';
import { storeBridgeLookup, type RouterLookup } from './lookup.js';
import { askPin, asksForPin, DEFAULT_HANDLING, isOutOfSession, refuse, resolveHandling, type Handling, type HandlingDefaults } from './out-of-session.js';
import { decidePin } from './pin.js';
import { PinGuard, type PinCaller, type PinLimits } from './pin-guard.js';

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
  /** agi_uniqueid: the call, for counting its PIN tries. */
  uniqueId?: string;
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
  /** How pool numbers that set nothing of their own handle callers without a bridge. */
  handling?: HandlingDefaults | undefined;
  pinLimits?: PinLimits | undefined;
}

export interface CallRouter {
  route(call: RoutedCall): RouteDecision;
  /** A PIN typed by a caller the router asked for one (PIN or PIN_RETRY before). */
  pin(call: RoutedCall, pin: string): RouteDecision;
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
  const defaults = options.handling ?? DEFAULT_HANDLING;
  const guard = new PinGuard(options.pinLimits);
  const store = new FollowedDatabase<RouterLookup>({
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

  const routeOptions = { defaultCountry: options.defaultCountry, policy: options.policy };
  /** agi_extension is the dialled DID; agi_dnid when the extension was rewritten (e.g. to "s"). */
  const dialledOf = (call: RoutedCall): string => (/\d/.test(call.extension) ? call.extension : call.dnid);
  /** Who is typing, for the PIN limits: the caller's number when it is one. */
  const pinCaller = (call: RoutedCall, dialled: E164): PinCaller => {
    let caller: string | null = null;
    if (!isWithheld(call.callerId)) {
      try {
        caller = normaliseNumberCached(call.callerId, options.defaultCountry);
      } catch {
        caller = null;
      }
    }
    return { call: call.uniqueId ?? '', caller, dialled };
  };
  /** Every refusal on a pool number, logged by the number dialled and the reason, never the caller's number. */
  const refusal = (decision: RouteDecision, handling: Handling, dialled: E164): RouteDecision => {
    const answer = refuse(decision, handling, dialled);
    const desk = answer.status === 'FALLBACK';
    log.info({ dialled, status: decision.status }, desk ? 'call without a bridge put through to the desk' : 'call without a bridge refused');
    return answer;
  };
  /** A caller without a bridge on a pool number: a PIN, the desk, or the announcement. */
  const outOfSession = (call: RoutedCall, decision: RouteDecision, lookup: RouterLookup): RouteDecision => {
    // decideRoute found the dialled number in the pool: it normalises.
    const dialled = normaliseNumberCached(dialledOf(call), options.defaultCountry);
    const handling = resolveHandling(lookup.handling(dialled), defaults);
    if (asksForPin(decision.status, handling) && guard.open(pinCaller(call, dialled), now())) return askPin(dialled);
    return refusal(decision, handling, dialled);
  };

  /** `work` on the store the path names now; ERROR while it cannot be read. `work` captures nothing: no closure per call. */
  const withStore = <A>(work: (lookup: RouterLookup, arg: A) => RouteDecision, arg: A): RouteDecision => {
    let lookup: RouterLookup | undefined;
    try {
      lookup = store.get();
    } catch (error) {
      return failed(error);
    }
    if (lookup === undefined) return storeError('the store is reopening');
    try {
      return work(lookup, arg);
    } catch (error) {
      store.drop();
      return failed(error);
    }
  };

  const routeWith = (lookup: RouterLookup, call: RoutedCall): RouteDecision => {
    const decision = decideRoute({ caller: call.callerId, dialled: dialledOf(call) }, now(), lookup, routeOptions);
    if (decision.status === 'BRIDGE') return decision;
    if (decision.status === 'INVALID') {
      log.info({ caller: call.callerId.slice(0, 64), reason: decision.reason }, 'invalid call');
    } else if (decision.status === 'NOT_ALLOWED') {
      // The reason names the type, never the number; the session is an identifier the redactor keeps.
      log.warn({ session: decision.session, reason: decision.reason }, 'call refused: the number-type policy refuses its target');
    }
    return isOutOfSession(decision.status) ? outOfSession(call, decision, lookup) : decision;
  };
  const route = (call: RoutedCall): RouteDecision => withStore(routeWith, call);

  const pinWith = (lookup: RouterLookup, [call, typed]: readonly [RoutedCall, string]): RouteDecision => {
    const at = now();
    // Asked again, not trusted from the dialplan: only a caller the number would ask gets a lookup.
    const first = decideRoute({ caller: call.callerId, dialled: dialledOf(call) }, at, lookup, routeOptions);
    if (!isOutOfSession(first.status)) return first;
    const dialled = normaliseNumberCached(dialledOf(call), options.defaultCountry);
    const handling = resolveHandling(lookup.handling(dialled), defaults);
    const who = pinCaller(call, dialled);
    const failedPin: RouteDecision = { status: 'PIN_FAILED', target: null, presentedCallerId: null, session: null };
    if (!asksForPin(first.status, handling) || !guard.open(who, at)) return refusal(failedPin, handling, dialled);
    const decision = decidePin({ dialled: dialledOf(call), pin: typed }, at, lookup, routeOptions);
    if (decision.status === 'BRIDGE') {
      log.info({ session: decision.session, dialled }, 'call bridged by PIN');
      return decision;
    }
    if (decision.status !== 'PIN_RETRY') return decision;
    log.info({ dialled }, 'wrong PIN');
    return guard.wrong(who, at) ? decision : refusal(failedPin, handling, dialled);
  };
  const pin = (call: RoutedCall, typed: string): RouteDecision => withStore(pinWith, [call, typed] as const);

  return {
    route: (call) => (ROUTE_TRACE.hasSubscribers ? ROUTE_TRACE.traceSync(route, {}, undefined, call) : route(call)),
    pin,
    close: () => store.close(),
  };
}
