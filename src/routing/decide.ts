import { isVnumError } from '../errors.js';
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

/**
 * The routing decision, shared by `vnum route` and the FastAGI router. Expiry
 * and grace are judged against `now` here, so a session past its end never
 * routes even if nothing has swept it yet.
 */
export function decideRoute(call: CallKey, now: number, bridges: BridgeLookup, defaultCountry?: string): RouteDecision {
  if (WITHHELD.has(call.caller.trim().toLowerCase())) return outcome('INVALID', null, 'the caller withheld their number');
  let caller: E164;
  let dialled: E164;
  try {
    caller = normaliseNumberCached(call.caller, defaultCountry);
    dialled = normaliseNumberCached(call.dialled, defaultCountry);
  } catch (e) {
    if (isVnumError(e)) return outcome('INVALID', null, e.message);
    throw e;
  }
  const bridge = bridges.live(caller, dialled);
  if (bridge && isLive(bridge.endsAt, now)) {
    return { status: 'BRIDGE', target: bridge.target, cli: bridge.cli, session: bridge.session };
  }
  const previous = bridge?.session ?? bridges.latestSession(caller, dialled);
  return previous === undefined ? outcome('NO_SESSION') : outcome('ENDED', previous);
}
