import type { Db } from '../store/db.js';
import { perConnection } from '../store/statements.js';
import type { EventType, OutboxEvent } from './events.js';
import { addToCounter, closeEvent, setRecording } from './outbox.js';
import { afterFailure, type AfterFailure, type RetryPolicy } from './retry.js';

/**
 * What the deliverer needs from the store, and nothing else: the one seam
 * between delivery (HTTP, signing, timing) and the outbox's tables, so the
 * outbox can move to another database (PostgreSQL, issue 15:
 * src/authority/pg-delivery-store.ts) behind the same interface. Every method is one
 * transaction; asynchronous, so a network database fits it (the SQLite one
 * answers at once).
 */
export interface DeliveryStore {
  /** The deliverer starts: facts write their events from now on. */
  startRecording(now: number): Promise<void>;
  /**
   * Due events (each the oldest open one of its session), at most `limit`,
   * each leased until now + leaseMs: no deliverer takes it again before the
   * lease runs out (then it is due again: a deliverer killed mid-flight
   * loses nothing).
   */
  claim(now: number, limit: number, leaseMs: number): Promise<ClaimedEvent[]>;
  /** A 2xx came back: done, and the session's next event is due. */
  delivered(event: ClaimedEvent, now: number): Promise<void>;
  /** Anything else: tried again after a back-off, or parked once the window has closed. */
  failed(event: ClaimedEvent, now: number, error: string, policy: RetryPolicy, random?: () => number): Promise<AfterFailure>;
  /** The session's real numbers, first and second party, for an operator who opted in. */
  partiesOf(session: string): Promise<readonly [string, string] | undefined>;
  heartbeat(report: DelivererReport): Promise<void>;
  /** Delete events done more than keepMs ago. Returns how many. */
  prune(now: number, keepMs: number): Promise<number>;
}

export interface ClaimedEvent extends OutboxEvent {
  /** Attempts so far, this one included. */
  attempts: number;
  firstFailedAt: number | null;
  /** The lease this attempt holds (next_at): a result is only recorded while it still does. */
  leaseUntil: number;
}

export interface DelivererReport {
  /** Which deliverer: host and process. */
  instance: string;
  url: string;
  pid: number;
  startedAt: number;
  updatedAt: number;
  inFlight: number;
  lastError: string | null;
  stopped: boolean;
}

/** An outbox row as a claim reads it (data still JSON text). */
export interface EventRow {
  seq: number;
  id: string;
  type: EventType;
  session: string;
  occurredAt: number;
  data: string;
  attempts: number;
  firstFailedAt: number | null;
}

const statements = perConnection((db: Db) => ({
  due: db.prepare<[number, number], EventRow>(
    `SELECT seq, id, type, session_id AS session, occurred_at AS occurredAt, data, attempts, first_failed_at AS firstFailedAt
       FROM webhook_event WHERE state = 'pending' AND next_at <= ? ORDER BY next_at, seq LIMIT ?`,
  ),
  lease: db.prepare<[number, number]>('UPDATE webhook_event SET next_at = ?, attempts = attempts + 1 WHERE seq = ?'),
  retry: db.prepare<{ seq: number; lease: number; nextAt: number; firstFailedAt: number; error: string }>(
    `UPDATE webhook_event SET next_at = @nextAt, first_failed_at = @firstFailedAt, last_error = @error
      WHERE seq = @seq AND state = 'pending' AND next_at = @lease`,
  ),
  park: db.prepare<{ seq: number; lease: number; now: number; firstFailedAt: number; error: string }>(
    `UPDATE webhook_event SET state = 'parked', parked_at = @now, next_at = NULL, first_failed_at = @firstFailedAt, last_error = @error
      WHERE seq = @seq AND state = 'pending' AND next_at = @lease`,
  ),
  parties: db.prepare<[string], { first: string; second: string }>('SELECT first_party AS first, second_party AS second FROM session WHERE id = ?'),
  heartbeat: db.prepare<DelivererReport & { stoppedFlag: number }>(
    `INSERT INTO webhook_deliverer (instance, url, pid, started_at, updated_at, in_flight, last_error, stopped)
     VALUES (@instance, @url, @pid, @startedAt, @updatedAt, @inFlight, @lastError, @stoppedFlag)
     ON CONFLICT (instance) DO UPDATE SET url = excluded.url, pid = excluded.pid, started_at = excluded.started_at,
       updated_at = excluded.updated_at, in_flight = excluded.in_flight, last_error = excluded.last_error, stopped = excluded.stopped`,
  ),
  forgetDeliverers: db.prepare<[number]>('DELETE FROM webhook_deliverer WHERE updated_at < ?'),
  // The oldest events first; recorded_at grows with seq, so the walk stops at the first one young enough.
  oldest: db.prepare<[number, number], { seq: number; recordedAt: number; doneAt: number | null }>(
    'SELECT seq, recorded_at AS recordedAt, done_at AS doneAt FROM webhook_event WHERE seq > ? ORDER BY seq LIMIT ?',
  ),
  remove: db.prepare<[number]>('DELETE FROM webhook_event WHERE seq = ?'),
}));

const PRUNE_BATCH = 1_000;

export function sqliteDeliveryStore(db: Db): DeliveryStore {
  const s = statements(db);
  return {
    async startRecording(now) {
      db.transaction(() => setRecording(db, true, now)).immediate();
    },

    async claim(now, limit, leaseMs) {
      return db
        .transaction(() =>
          s.due.all(now, limit).map((row) => {
            const leaseUntil = now + leaseMs;
            s.lease.run(leaseUntil, row.seq);
            return { ...row, data: JSON.parse(row.data) as OutboxEvent['data'], attempts: row.attempts + 1, leaseUntil };
          }),
        )
        .immediate();
    },

    async delivered(event, now) {
      db.transaction(() => {
        if (closeEvent(db, event, 'delivered', now)) addToCounter(db, 'delivered', 1);
      }).immediate();
    },

    async failed(event, now, error, policy, random) {
      return db
        .transaction(() => {
          const firstFailedAt = event.firstFailedAt ?? now;
          const next = afterFailure(policy, event.attempts, firstFailedAt, now, random);
          const common = { seq: event.seq, lease: event.leaseUntil, firstFailedAt, error: error.slice(0, 300) };
          const changed = next.parked ? s.park.run({ ...common, now }).changes : s.retry.run({ ...common, nextAt: next.nextAt }).changes;
          if (changed > 0) {
            addToCounter(db, 'failed_attempts', 1);
            if (next.parked) addToCounter(db, 'parked', 1);
          }
          return next;
        })
        .immediate();
    },

    async partiesOf(session) {
      const row = s.parties.get(session);
      return row ? [row.first, row.second] : undefined;
    },

    async heartbeat(report) {
      db.transaction(() => {
        s.heartbeat.run({ ...report, stoppedFlag: report.stopped ? 1 : 0 });
        s.forgetDeliverers.run(report.updatedAt - 86_400_000);
      }).immediate();
    },

    async prune(now, keepMs) {
      const cutoff = now - keepMs;
      let removed = 0;
      let after = 0;
      for (;;) {
        const batch = s.oldest.all(after, PRUNE_BATCH);
        const old = batch.filter((row) => row.recordedAt < cutoff);
        db.transaction(() => {
          for (const row of old) if (row.doneAt !== null && row.doneAt < cutoff) removed += s.remove.run(row.seq).changes;
        }).immediate();
        if (batch.length < PRUNE_BATCH || old.length < batch.length) return removed;
        after = batch[batch.length - 1]!.seq;
      }
    },
  };
}
