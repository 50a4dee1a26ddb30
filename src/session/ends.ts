import type { Db } from '../store/db.js';
import { ErrorCode, isVnumError } from '../errors.js';
import { reportEndedSessions } from '../webhooks/outbox.js';
import { getSession } from './sessions.js';

/**
 * session.ended: a session ends by the clock (its TTL, or the grace after a
 * release), with no write at that moment. Whoever delivers webhooks calls
 * this every second or so; each session whose end has come gets its event
 * once (see reportEndedSessions). Returns how many.
 */
export function reportSessionEnds(db: Db, now: number): number {
  return reportEndedSessions(db, now, (id) => {
    try {
      return getSession(db, id, now);
    } catch (e) {
      if (isVnumError(e, ErrorCode.SessionNotFound)) return undefined;
      throw e;
    }
  });
}
