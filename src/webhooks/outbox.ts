import { randomBytes } from 'node:crypto';
import type { Db } from '../store/db.js';
import { perConnection } from '../store/statements.js';
import type { EventRecord } from './events.js';

/**
 * The write side of the webhook outbox: what the writers of facts (session
 * create and release, the call log, the router's refusals) call inside the
 * transaction that writes the fact, so a fact and its event are committed
 * together or not at all.
 *
 * Nothing is written while recording is off: a database whose operator never
 * turned webhooks on keeps no outbox to grow. `vnum webhooks deliver` turns it
 * on when it starts (or `vnum webhooks enable`); from then on every fact has
 * its event.
 */

const statements = perConnection((db: Db) => ({
  recordingSince: db.prepare<[], number>("SELECT value FROM meta WHERE key = 'webhooks_recording_since'").pluck(),
  setRecording: db.prepare<[number]>("UPDATE meta SET value = ? WHERE key = 'webhooks_recording_since'"),
  reportedTo: db.prepare<[], number>("SELECT value FROM meta WHERE key = 'webhooks_ends_reported_to'").pluck(),
  setReportedTo: db.prepare<[number]>("UPDATE meta SET value = max(value, ?) WHERE key = 'webhooks_ends_reported_to'"),
  // Whether the session has an event not yet delivered: then a new one waits behind it.
  laneOpen: db.prepare<[string], number>('SELECT 1 FROM webhook_event WHERE session_id = ? AND done_at IS NULL LIMIT 1').pluck(),
  insert: db.prepare<{ id: string; type: string; session: string; occurredAt: number; recordedAt: number; data: string; state: string; nextAt: number | null }>(
    `INSERT INTO webhook_event (id, type, session_id, occurred_at, recorded_at, data, state, next_at)
     VALUES (@id, @type, @session, @occurredAt, @recordedAt, @data, @state, @nextAt)`,
  ),
  trackEnd: db.prepare<[number, string]>('INSERT OR IGNORE INTO webhook_session_end (ends_at, session_id) VALUES (?, ?)'),
  endsDue: db.prepare<[number, number], { session: string; endsAt: number }>(
    'SELECT session_id AS session, ends_at AS endsAt FROM webhook_session_end WHERE ends_at <= ? ORDER BY ends_at LIMIT ?',
  ),
  untrackEnd: db.prepare<[number, string]>('DELETE FROM webhook_session_end WHERE ends_at = ? AND session_id = ?'),
  count: db.prepare<[number, string]>('UPDATE webhook_counter SET value = value + ? WHERE name = ?'),
  close: db.prepare<{ seq: number; state: string; now: number }>(
    `UPDATE webhook_event SET state = @state, done_at = @now, next_at = NULL WHERE seq = @seq AND done_at IS NULL`,
  ),
  laneHead: db.prepare<[string], { seq: number; state: string }>(
    'SELECT seq, state FROM webhook_event WHERE session_id = ? AND done_at IS NULL ORDER BY seq LIMIT 1',
  ),
  promote: db.prepare<[number, number]>("UPDATE webhook_event SET state = 'pending', next_at = ? WHERE seq = ? AND state = 'queued'"),
}));

/** Event ids: `evt_` and 128 random bits, never reused, even by a database restored from a backup. */
export function newEventId(): string {
  return `evt_${randomBytes(16).toString('hex')}`;
}

export const EVENT_ID = /^evt_[0-9a-f]{32}$/;

/** Whether facts write their events now. */
export function isRecording(db: Db): boolean {
  return (statements(db).recordingSince.get() ?? 0) > 0;
}

/** When recording was turned on (ms), or null while it is off. */
export function recordingSince(db: Db): number | null {
  const since = statements(db).recordingSince.get() ?? 0;
  return since > 0 ? since : null;
}

/** Turn recording on (keeping the time it was first turned on) or off. */
export function setRecording(db: Db, on: boolean, now: number): void {
  const s = statements(db);
  if (on && (s.recordingSince.get() ?? 0) > 0) return;
  s.setRecording.run(on ? Math.max(1, now) : 0);
}

/**
 * Append an event, inside the caller's transaction. It is due at once when
 * its session has nothing else undelivered; otherwise it waits behind the
 * session's earlier events. No-op while recording is off.
 */
export function appendEvent(db: Db, event: EventRecord, now: number): void {
  // The lane check and the insert must see the same state as the deliverer's promotions.
  if (!db.inTransaction) throw new Error('appendEvent outside a transaction');
  const s = statements(db);
  if ((s.recordingSince.get() ?? 0) <= 0) return;
  const waits = s.laneOpen.get(event.session) !== undefined;
  s.insert.run({
    id: newEventId(),
    type: event.type,
    session: event.session,
    occurredAt: event.occurredAt,
    recordedAt: now,
    data: JSON.stringify(event.data),
    state: waits ? 'queued' : 'pending',
    nextAt: waits ? null : now,
  });
}

/**
 * An event is done (delivered, or discarded by the operator), inside the
 * caller's transaction: the next event of its session, if any, becomes due
 * now. False when it was done already.
 */
export function closeEvent(db: Db, event: { seq: number; session: string }, state: 'delivered' | 'discarded', now: number): boolean {
  if (!db.inTransaction) throw new Error('closeEvent outside a transaction');
  const s = statements(db);
  if (s.close.run({ seq: event.seq, state, now }).changes === 0) return false;
  const head = s.laneHead.get(event.session);
  if (head?.state === 'queued') s.promote.run(now, head.seq);
  return true;
}

/** Add to one of the outbox's counters (README, "Webhooks": `vnum webhooks status`). */
export function addToCounter(db: Db, name: CounterName, by: number): void {
  if (by !== 0) statements(db).count.run(by, name);
}

export const COUNTERS = [
  'delivered',
  'failed_attempts',
  'parked',
  'discarded',
  'refusals_dropped',
  'refused_no_session',
  'refused_invalid_caller',
] as const;
export type CounterName = (typeof COUNTERS)[number];

// ---------------------------------------------------------------------------
// Sessions whose end is still to be reported (session.ended happens by the
// clock, with no write: src/session/events.ts reports them).

/** Track a session's end, inside its create or release transaction. */
export function trackSessionEnd(db: Db, session: string, endsAt: number): void {
  statements(db).trackEnd.run(endsAt, session);
}

export function untrackSessionEnd(db: Db, session: string, endsAt: number): void {
  statements(db).untrackEnd.run(endsAt, session);
}

/** Tracked ends up to `now`, earliest first. */
export function sessionEndsDue(db: Db, now: number, limit: number): Array<{ session: string; endsAt: number }> {
  return statements(db).endsDue.all(now, limit);
}

/** Every tracked end up to this time has been reported. */
export function endsReportedTo(db: Db): number {
  return statements(db).reportedTo.get() ?? 0;
}

export function setEndsReportedTo(db: Db, at: number): void {
  statements(db).setReportedTo.run(at);
}
