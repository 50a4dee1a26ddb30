import type { Db } from '../store/db.js';
import type { EventRecord } from '../webhooks/events.js';
import {
  appendEvent,
  endsReportedTo,
  isRecording,
  sessionEndsDue,
  setEndsReportedTo,
  trackSessionEnd,
  untrackSessionEnd,
} from '../webhooks/outbox.js';
import { sessionJson } from './json.js';
import type { Session } from './session.js';

/**
 * A session's webhook events (README, "Webhooks"): session.created and
 * session.released inside the transactions of src/session/sessions.ts, and
 * session.ended, which happens by the clock with no write, reported by
 * whoever delivers webhooks (reportSessionEnds, given the session reader).
 * `data.session` is the session's JSON without the parties' real numbers.
 */
type SessionEventType = 'session.created' | 'session.released' | 'session.ended';

/**
 * Why a session ended: its TTL ran out, the grace after a release did, or
 * (sliding TTL) its idle timeout passed with no call before its TTL.
 */
export function endCause(session: Pick<Session, 'expiresAt' | 'endsAt' | 'releasedAt' | 'idleMs'>): 'ttl' | 'release' | 'idle' {
  if (session.expiresAt !== null && session.endsAt === session.expiresAt) return 'ttl';
  if (session.releasedAt === null && session.idleMs !== null) return 'idle';
  return 'release';
}

export function sessionEvent(type: SessionEventType, session: Session, occurredAt: number): EventRecord {
  const json = sessionJson(session);
  const data: EventRecord['data'] = { session: { ...json, parties: json.parties.map((p) => ({ maskedAs: p.maskedAs })) } };
  if (type === 'session.ended') data.cause = endCause(session);
  return { type, session: session.id, occurredAt, data };
}

/** Inside createSession's transaction. */
export function recordSessionCreated(db: Db, session: Session, now: number): void {
  if (!isRecording(db)) return;
  appendEvent(db, sessionEvent('session.created', session, session.createdAt), now);
  if (session.endsAt !== null) trackSessionEnd(db, session.id, session.endsAt);
}

/**
 * Inside releaseSession's transaction, for a release that changed the
 * session's end. Skipped when the end it had was already reported as
 * session.ended: a release that waited for the write lock with a clock read
 * before that end must not put session.released after session.ended.
 */
export function recordSessionReleased(db: Db, before: Session, after: Session, now: number): void {
  if (!isRecording(db)) return;
  if (before.endsAt !== null && before.endsAt <= endsReportedTo(db)) return;
  appendEvent(db, sessionEvent('session.released', after, now), now);
  if (before.endsAt !== null) untrackSessionEnd(db, after.id, before.endsAt);
  if (after.endsAt !== null) trackSessionEnd(db, after.id, after.endsAt);
}

/**
 * session.ended for every tracked session whose end has come, once each, in
 * one IMMEDIATE transaction: whoever runs it (one deliverer or several), an
 * end is reported once, after anything its release recorded. `read(id)`:
 * the session as it is now. Returns how many tracked ends were taken.
 */
export function reportSessionEnds(db: Db, now: number, read: (id: string) => Session | undefined, limit = 1_000): number {
  return db.transaction(() => {
    const due = sessionEndsDue(db, now, limit);
    for (const { session: id, endsAt } of due) {
      untrackSessionEnd(db, id, endsAt);
      const session = read(id);
      if (!session || session.endsAt === null) continue;
      // Reported only when the row is the session's own end; one left at another time (a release while
      // recording was off moved the end) is moved there instead: one row per end, one report.
      if (session.endsAt === endsAt) appendEvent(db, sessionEvent('session.ended', session, endsAt), now);
      else trackSessionEnd(db, id, session.endsAt);
    }
    // Every tracked end up to here is reported: all up to now, or, with more left, those before the last one read.
    setEndsReportedTo(db, due.length < limit ? now : due[due.length - 1]!.endsAt - 1);
    return due.length;
  }).immediate();
}
