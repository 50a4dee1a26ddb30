import { isoTime } from '../time.js';
import type { Session } from './session.js';

/**
 * The documented JSON shape of a session (README, "JSON"):
 * {"id","state","expiresAt","parties":[{"number","maskedAs"},…]} plus times.
 * The CLI's --json, and `data.session` in webhook events (there without the
 * parties' numbers, unless the operator opts in).
 */
export function sessionJson(session: Session) {
  return {
    id: session.id,
    state: session.state,
    expiresAt: isoTime(session.expiresAt),
    parties: session.parties.map((p) => ({ number: p.number, maskedAs: p.maskedAs })),
    createdAt: isoTime(session.createdAt),
    releasedAt: isoTime(session.releasedAt),
    endsAt: isoTime(session.endsAt),
  };
}
