import { ErrorCode, isVnumError } from '../errors.js';
import type { E164 } from '../numbers/normalise.js';
import { normaliseNumberCached } from '../numbers/cache.js';
import { isLive } from '../session/state.js';

export const ROUTE_STATUSES = ['BRIDGE', 'NO_SESSION', 'ENDED', 'INVALID', 'ERROR'] as const;
export type RouteStatus = (typeof ROUTE_STATUSES)[number];

export interface RouteDecision {
  status: RouteStatus;
  /** The real number to dial (BRIDGE only). */
  target: E164 | null;
  /** The caller ID to present: the caller's masked number (BRIDGE only). */
  cli: E164 | null;
  /** The session that bridges (BRIDGE) or bridged (ENDED) this pair. */
  session: string | null;
  /** Why, for INVALID and ERROR: for the operator, never for the caller. */
  reason?: string;
  /** For INVALID: the error code of that reason (README, "Exit codes and errors"). */
  code?: ErrorCode;
}

export interface LiveBridge {
  target: E164;
  cli: E164;
  session: string;
  endsAt: number | null;
}

/** What the decision needs from the store: point reads on the (caller, dialled) key. */
export interface BridgeLookup {
  /**
   * The pair's live bridge, if any (at most one by the allocation invariant). A
   * store may return the pair's latest bridge even when it has ended: the
   * decision judges liveness by `endsAt` itself.
   */
  live(caller: E164, dialled: E164): LiveBridge | undefined;
  /** The pair's most recent session of any age, if there ever was one. */
  latestSession(caller: E164, dialled: E164): string | undefined;
  /**
   * True when `live` returns the pair's latest bridge whether live or ended, so
   * that when it finds nothing, `latestSession` would find nothing either and
   * is not asked (the store's lookup: one point read instead of two for every
   * caller in no session).
   */
  readonly liveReturnsLatest?: boolean;
}

export interface CallKey {
  /** As delivered: `+E.164`, national with trunk 0, or digits without `+`. */
  caller: string;
  dialled: string;
}

const WITHHELD = new Set(['', 'unknown', 'anonymous', 'restricted', 'private', 'withheld']);

function outcome(status: RouteStatus, session: string | null = null, reason?: string): RouteDecision {
  return reason === undefined
    ? { status, target: null, cli: null, session }
    : { status, target: null, cli: null, session, reason };
}

/** `+` then 7 to 15 digits, the first not 0: E.164's shape, the only shape the store's numbers have. */
const CANONICAL = /^\+[1-9][0-9]{6,14}$/;

function fromBridge(bridge: LiveBridge, now: number): RouteDecision {
  return isLive(bridge.endsAt, now)
    ? { status: 'BRIDGE', target: bridge.target, cli: bridge.cli, session: bridge.session }
    : outcome('ENDED', bridge.session);
}

function invalid(error: unknown): RouteDecision {
  if (isVnumError(error)) return { ...outcome('INVALID', null, error.message), code: error.code };
  throw error;
}

/**
 * The routing decision, shared by `vnum route` and the FastAGI router. Expiry
 * and grace are judged against `now` here, so a session past its end never
 * routes even if nothing has swept it yet.
 *
 * Numbers are normalised with libphonenumber's full metadata (10-40 µs each),
 * except on the fast path: a number already in E.164's shape is first looked
 * up as it is. That finds a bridge exactly when normalising first would have:
 * every number in the store (parties, pool) was written by normaliseNumber,
 * and normalising its result again gives it back unchanged, whatever the
 * default country (a `+` number is read in its own country; the E.164 form is
 * country code + national significant number, which parses back to the same
 * two; test/unit/route-fast-path.test.ts checks this over every country's
 * example number and random valid numbers). So if the as-is key names a
 * stored bridge, it is the normalised key. When it names none, or the input
 * has any other shape, the numbers are normalised in full, which decides
 * INVALID (same reason, same order: the caller first) and NO_SESSION as
 * before, and the store is asked again only for a key not yet asked.
 *
 * The one difference from normalising first: a stored number that the
 * installed metadata no longer calls valid (a range withdrawn after a
 * libphonenumber upgrade) still routes the session it is in, where it would
 * have been INVALID. The session exists because the operator made it with a
 * number valid at the time; that is what the store says to do.
 *
 * A caller ID is attacker-controlled: one of E.164's shape but invalid costs
 * one point read more than before (the as-is lookup) and is then INVALID.
 */
export function decideRoute(call: CallKey, now: number, bridges: BridgeLookup, defaultCountry?: string): RouteDecision {
  if (WITHHELD.has(call.caller.trim().toLowerCase())) {
    return { ...outcome('INVALID', null, 'the caller withheld their number'), code: ErrorCode.InvalidNumber };
  }
  // Unvalidated while as-is: a lookup key only, validated below before any other use.
  const callerAsIs = CANONICAL.test(call.caller) ? (call.caller as E164) : undefined;
  const dialledAsIs = CANONICAL.test(call.dialled) ? (call.dialled as E164) : undefined;
  let caller: E164;
  let dialled: E164;
  try {
    caller = callerAsIs ?? normaliseNumberCached(call.caller, defaultCountry);
    dialled = dialledAsIs ?? normaliseNumberCached(call.dialled, defaultCountry);
  } catch (e) {
    // The caller's reason first, as when both are normalised in order.
    if (callerAsIs !== undefined) {
      try {
        normaliseNumberCached(call.caller, defaultCountry);
      } catch (first) {
        return invalid(first);
      }
    }
    return invalid(e);
  }
  let bridge = bridges.live(caller, dialled);
  if (bridge) return fromBridge(bridge, now);
  if (callerAsIs !== undefined || dialledAsIs !== undefined) {
    const asked = [caller, dialled];
    try {
      if (callerAsIs !== undefined) caller = normaliseNumberCached(callerAsIs, defaultCountry);
      if (dialledAsIs !== undefined) dialled = normaliseNumberCached(dialledAsIs, defaultCountry);
    } catch (e) {
      return invalid(e);
    }
    if (caller !== asked[0] || dialled !== asked[1]) {
      bridge = bridges.live(caller, dialled);
      if (bridge) return fromBridge(bridge, now);
    }
  }
  const previous = bridges.liveReturnsLatest ? undefined : bridges.latestSession(caller, dialled);
  return previous === undefined ? outcome('NO_SESSION') : outcome('ENDED', previous);
}
