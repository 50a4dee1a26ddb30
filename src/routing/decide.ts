import { ErrorCode, isVnumError, type VnumError } from '../errors.js';
import { E164_SHAPE, type E164 } from '../numbers/normalise.js';
import { normaliseNumberCached } from '../numbers/cache.js';
import { allowsType, DEFAULT_POLICY, refusal, type NumberPolicy } from '../numbers/policy.js';
import type { NumberType } from '../numbers/type.js';
import { isLive } from '../session/state.js';

/**
 * BRIDGE: dial the target. NO_SESSION, ENDED: the caller has no live session
 * on this pool number. NOT_ALLOWED: it has, but the target's number type is
 * one the number-type policy refuses (a party stored before the policy, or
 * the policy tightened since). NOT_POOL: the dialled number is not a pool
 * number at all (a trunk that carries other numbers too: the dialplan hands
 * such calls to the operator's own context). INVALID: the caller's number is
 * withheld or not a number. ERROR: the store failed.
 *
 * For callers without a bridge (./out-of-session.ts, ./pin.ts): PIN: ask for
 * a PIN. PIN_RETRY: that PIN was wrong, ask again. PIN_FAILED: no more tries.
 * FALLBACK: put the caller through to the operator's desk (the target),
 * presenting the dialled pool number.
 */
export const ROUTE_STATUSES = [
  'BRIDGE', 'NO_SESSION', 'ENDED', 'NOT_ALLOWED', 'NOT_POOL', 'INVALID', 'ERROR',
  'PIN', 'PIN_RETRY', 'PIN_FAILED', 'FALLBACK',
] as const;
export type RouteStatus = (typeof ROUTE_STATUSES)[number];

export interface RouteDecision {
  status: RouteStatus;
  /** The real number to dial (BRIDGE), or the operator's desk (FALLBACK). */
  target: E164 | null;
  /** The caller ID to present: the caller's masked number (BRIDGE), the dialled pool number (FALLBACK). */
  presentedCallerId: E164 | null;
  /** The session that bridges (BRIDGE, NOT_ALLOWED) or bridged (ENDED) this pair. */
  session: string | null;
  /** Why, for NOT_ALLOWED, NOT_POOL, INVALID and ERROR: for the operator, never for the caller. Names no real number. */
  reason?: string;
  /** For INVALID: the error code of that reason (README, "Exit codes and errors"). */
  code?: ErrorCode;
  /** 'pin': a BRIDGE the caller reached by typing a party's PIN (the call log marks it). */
  via?: 'pin';
  /** The pool number dialled, normalised, on the paths that know it without a bridge (refusals are counted by it). */
  dialled?: E164;
  /** BRIDGE: the session's call settings as stored (JSON, null for none); src/routing/answer.ts judges them. */
  callSettings?: string | null;
  /** BRIDGE: the session's sliding idle timeout (null: fixed), for the call log's push on the write path. */
  idleMs?: number | null;
}

export interface LiveBridge {
  target: E164;
  presentedCallerId: E164;
  session: string;
  endsAt: number | null;
  /** What kind of line the target is: judged against the number-type policy on every call. */
  targetType: NumberType;
  /** The session's call settings as stored, passed through untouched (absent: none). */
  callSettings?: string | null;
  idleMs?: number | null;
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
  /** Whether a number is in the pool, in any state. Asked only when no bridge answered the call. */
  isPoolNumber(number: E164): boolean;
}

export interface RouteOptions {
  /** The country numbers without + are read in (VNUM_DEFAULT_COUNTRY). */
  defaultCountry?: string | undefined;
  /** The number-type policy the target must pass; the default policy when absent. */
  policy?: NumberPolicy | undefined;
}

export interface CallKey {
  /** As delivered: `+E.164`, national with trunk 0, or digits without `+`. */
  caller: string;
  dialled: string;
}

const WITHHELD = new Set(['', 'unknown', 'anonymous', 'restricted', 'private', 'withheld']);

function outcome(status: RouteStatus, session: string | null = null, reason?: string): RouteDecision {
  return reason === undefined
    ? { status, target: null, presentedCallerId: null, session }
    : { status, target: null, presentedCallerId: null, session, reason };
}

export function fromBridge(bridge: LiveBridge, now: number, policy: NumberPolicy): RouteDecision {
  if (!isLive(bridge.endsAt, now)) return outcome('ENDED', bridge.session);
  if (!allowsType(policy, bridge.targetType)) return outcome('NOT_ALLOWED', bridge.session, `the target is ${refusal(bridge.targetType)}`);
  const decision: RouteDecision = { status: 'BRIDGE', target: bridge.target, presentedCallerId: bridge.presentedCallerId, session: bridge.session };
  // Only a session that shapes its calls or slides carries more.
  if (bridge.callSettings != null) decision.callSettings = bridge.callSettings;
  if (bridge.idleMs != null) decision.idleMs = bridge.idleMs;
  return decision;
}

function invalid(reason: string, code: ErrorCode): RouteDecision {
  return { ...outcome('INVALID', null, reason), code };
}

/** A number normalised, or why it cannot be (a VnumError); anything else is a fault and thrown. */
function normalised(input: string, defaultCountry: string | undefined): E164 | VnumError {
  try {
    return normaliseNumberCached(input, defaultCountry);
  } catch (e) {
    if (isVnumError(e)) return e;
    throw e;
  }
}

/** Whether a caller ID says nothing: withheld, anonymous, empty. */
export function isWithheld(callerId: string): boolean {
  return WITHHELD.has(callerId.trim().toLowerCase());
}

/**
 * The routing decision, shared by `vnum route` and the router: pure, judged
 * against `now`, so a session past its end never routes even if nothing has
 * swept it yet. A number already in E.164's shape is looked up as it is (the
 * store holds only normalised numbers, and normalising is idempotent); only
 * without a bridge are both numbers judged in full, the dialled one first.
 * docs/routing.md says why this order gives the same answers as normalising
 * first, and where it does not.
 */
export function decideRoute(call: CallKey, now: number, bridges: BridgeLookup, options: RouteOptions = {}): RouteDecision {
  const { defaultCountry } = options;
  const policy = options.policy ?? DEFAULT_POLICY;
  const withheld = isWithheld(call.caller);
  // Each number normalised at most once here (the cache keeps successes only).
  let caller: E164 | VnumError | undefined;
  let dialled: E164 | VnumError | undefined;
  let asked: string | undefined;
  if (!withheld) {
    // Unvalidated while as-is: a lookup key only, validated below before any other use.
    const callerKey = E164_SHAPE.test(call.caller) ? (call.caller as E164) : (caller = normalised(call.caller, defaultCountry));
    const dialledKey = E164_SHAPE.test(call.dialled) ? (call.dialled as E164) : (dialled = normalised(call.dialled, defaultCountry));
    if (typeof callerKey === 'string' && typeof dialledKey === 'string') {
      const bridge = bridges.live(callerKey, dialledKey);
      if (bridge) return fromBridge(bridge, now, policy);
      asked = `${callerKey} ${dialledKey}`;
    }
  }
  dialled ??= normalised(call.dialled, defaultCountry);
  if (typeof dialled !== 'string') return outcome('NOT_POOL', null, `the dialled number is not a pool number: ${dialled.message}`);
  if (!bridges.isPoolNumber(dialled)) return outcome('NOT_POOL', null, 'the dialled number is not a pool number');
  if (withheld) return invalid('the caller withheld their number', ErrorCode.InvalidNumber);
  caller ??= normalised(call.caller, defaultCountry);
  if (typeof caller !== 'string') return invalid(caller.message, caller.code);
  if (`${caller} ${dialled}` !== asked) {
    const bridge = bridges.live(caller, dialled);
    if (bridge) return fromBridge(bridge, now, policy);
  }
  const previous = bridges.liveReturnsLatest ? undefined : bridges.latestSession(caller, dialled);
  return previous === undefined ? outcome('NO_SESSION') : outcome('ENDED', previous);
}
