import { isoTime } from '../time.js';
import type { Session } from './session.js';

/**
 * The documented JSON shape of a session (README, "JSON"):
 * {"id","state","expiresAt","parties":[{"number","maskedAs"},…]} plus times,
 * "idleTimeoutMs" and "calls" (issue 14); a party has "pin" only in the answer
 * to the create that issued it.
 * The CLI's --json, and `data.session` in webhook events (there without the
 * parties' numbers, unless the operator opts in).
 */
export function sessionJson(session: Session) {
  return {
    id: session.id,
    state: session.state,
    expiresAt: isoTime(session.expiresAt),
    // A party's "pin" only in the answer to the create that issued it (the only time it is known).
    parties: session.parties.map((p) => (p.pin === undefined ? { number: p.number, maskedAs: p.maskedAs } : { number: p.number, maskedAs: p.maskedAs, pin: p.pin })),
    createdAt: isoTime(session.createdAt),
    releasedAt: isoTime(session.releasedAt),
    endsAt: isoTime(session.endsAt),
    idleTimeoutMs: session.idleMs,
    calls: session.callSettings,
  };
}
