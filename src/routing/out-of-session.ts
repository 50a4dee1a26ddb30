/**
 * Callers without a bridge on a pool number (docs/routing.md, "Callers
 * without a bridge"): NO_SESSION, ENDED and INVALID, as decideRoute answers
 * them. Each pool number says (or leaves to the router's defaults) whether
 * such a caller is asked for a PIN, and what a refused caller gets: the
 * announcement, or the operator's desk. Pure.
 *
 *   - A PIN is asked for INVALID callers (withheld, not a number) when the
 *     number's PIN mode is `withheld` or `all`, and for NO_SESSION callers
 *     when it is `all`; never for ENDED callers: they are a session's own
 *     party, calling about an order that is over, and hear so.
 *   - A caller not asked (or out of tries: PIN_FAILED) is refused: with
 *     `fallback` and a desk, put through to the desk presenting the dialled
 *     number (FALLBACK); otherwise the decision as it is, an announcement.
 */
import type { E164 } from '../numbers/normalise.js';
import type { NumberHandling, OutOfSessionMode, PinMode } from '../pool/handling.js';
import type { RouteDecision } from './decide.js';

/** The router's defaults, for numbers that set nothing of their own. */
export interface HandlingDefaults {
  pin: PinMode;
  outOfSession: OutOfSessionMode;
  fallback: E164 | null;
}

export const DEFAULT_HANDLING: HandlingDefaults = Object.freeze({ pin: 'off', outOfSession: 'announce', fallback: null });

export interface Handling {
  pin: PinMode;
  outOfSession: OutOfSessionMode;
  fallback: E164 | null;
}

export function resolveHandling(own: NumberHandling | undefined, defaults: HandlingDefaults): Handling {
  return {
    pin: own?.pin ?? defaults.pin,
    outOfSession: own?.outOfSession ?? defaults.outOfSession,
    fallback: own?.fallback ?? defaults.fallback,
  };
}

/** The statuses this module handles: a pool number, a caller without a bridge on it. */
export function isOutOfSession(status: RouteDecision['status']): boolean {
  return status === 'NO_SESSION' || status === 'ENDED' || status === 'INVALID';
}

export function asksForPin(status: RouteDecision['status'], handling: Handling): boolean {
  if (status === 'INVALID') return handling.pin !== 'off';
  if (status === 'NO_SESSION') return handling.pin === 'all';
  return false;
}

/** The PIN prompt for a caller without a bridge. */
export function askPin(dialled: E164): RouteDecision {
  return { status: 'PIN', target: null, presentedCallerId: null, session: null, dialled };
}

/** A refused caller as the number handles it: the desk, or the refusal (with its announcement) as it is. */
export function refuse(decision: RouteDecision, handling: Handling, dialled: E164): RouteDecision {
  if (handling.outOfSession === 'fallback' && handling.fallback !== null) {
    return { status: 'FALLBACK', target: handling.fallback, presentedCallerId: dialled, session: null, reason: decision.status, dialled };
  }
  return { ...decision, dialled };
}
