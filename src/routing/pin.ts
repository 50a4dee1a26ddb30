/**
 * A PIN typed by a caller without a bridge (docs/routing.md, "PINs"): pure,
 * like the routing decision. A PIN of a live session on the dialled number
 * bridges the call as if its party had called: the callee sees that party's
 * masked number, never the caller's own. Anything else (not of a PIN's shape,
 * no such PIN, a PIN of an ended session) is a wrong PIN, one answer for all,
 * so that a guesser learns nothing about which PINs once existed.
 */
import { PIN_SHAPE } from '../session/pin.js';
import type { E164 } from '../numbers/normalise.js';
import { normaliseNumberCached } from '../numbers/cache.js';
import { DEFAULT_POLICY } from '../numbers/policy.js';
import { isVnumError } from '../errors.js';
import { fromBridge, type BridgeLookup, type LiveBridge, type RouteDecision, type RouteOptions } from './decide.js';

export interface PinLookup {
  /** The bridge of the party whose PIN on `dialled` this is, live or ended; undefined when it is no PIN there. */
  byPin(dialled: E164, pin: string): LiveBridge | undefined;
}

export interface PinEntry {
  /** The dialled number as delivered. */
  dialled: string;
  /** What the dialplan passed: digits it checked, or '' for nothing usable. */
  pin: string;
}

function wrong(dialled: E164): RouteDecision {
  return { status: 'PIN_RETRY', target: null, presentedCallerId: null, session: null, dialled };
}

export function decidePin(
  entry: PinEntry,
  now: number,
  lookup: PinLookup & Pick<BridgeLookup, 'isPoolNumber'>,
  options: RouteOptions = {},
): RouteDecision {
  let dialled: E164;
  try {
    dialled = normaliseNumberCached(entry.dialled, options.defaultCountry);
  } catch (e) {
    if (!isVnumError(e)) throw e;
    return { status: 'NOT_POOL', target: null, presentedCallerId: null, session: null, reason: 'the dialled number is not a pool number' };
  }
  if (!lookup.isPoolNumber(dialled)) {
    return { status: 'NOT_POOL', target: null, presentedCallerId: null, session: null, reason: 'the dialled number is not a pool number' };
  }
  if (!PIN_SHAPE.test(entry.pin)) return wrong(dialled);
  const bridge = lookup.byPin(dialled, entry.pin);
  if (bridge === undefined) return wrong(dialled);
  const decision = fromBridge(bridge, now, options.policy ?? DEFAULT_POLICY);
  if (decision.status === 'ENDED') return wrong(dialled);
  return { ...decision, via: 'pin', dialled };
}
