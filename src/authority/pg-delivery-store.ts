import type { PgStore } from './pg-store.js';
import type { ClaimedEvent, DeliveryStore, EventRow } from '../webhooks/delivery-store.js';
import type { OutboxEvent } from '../webhooks/events.js';
import { closePgEvent, setPgRecording } from '../webhooks/pg-outbox.js';
import { afterFailure } from '../webhooks/retry.js';

/**
 * The deliverer's store on the authority (cluster mode): ../webhooks/delivery-store.ts's
 * contract on PostgreSQL, for any number of `vnum webhooks deliver
 * --authority` on any hosts at once.
 *
 * - A claim is one statement: the due events (each the oldest open one of its
 *   session: the outbox's lane rule, ../webhooks/pg-outbox.ts) are locked FOR UPDATE
 *   SKIP LOCKED and leased (next_at moved to the lease's end) in the same
 *   statement. A second deliverer claiming at the same time skips the rows
 *   the first holds, and once the first has committed, finds them no longer
 *   due (PostgreSQL judges the WHERE again on the row it waited for): no
 *   event is sent by two deliverers at once. A deliverer killed mid-flight
 *   leaves leases that run out: the events are due again.
 * - A failure is recorded only while the attempt still holds its lease
 *   (state 'pending', next_at the lease's end): a result that comes back after
 *   the lease ran out, when another deliverer may have the event, changes
 *   nothing. A 2xx is recorded whenever the event is still open: it was
 *   delivered, whoever holds it now (a receiver deduplicates on the id).
 * - Closing an event promotes its session's next one under the lane lock.
 */

const CLAIM_SQL = `WITH due AS (
    SELECT seq FROM webhook_event WHERE state = 'pending' AND next_at <= $1 ORDER BY next_at, seq LIMIT $2 FOR UPDATE SKIP LOCKED
  )
  UPDATE webhook_event e SET next_at = $3, attempts = e.attempts + 1 FROM due WHERE e.seq = due.seq
  RETURNING e.seq, e.id, e.type, e.session_id AS session, e.occurred_at AS "occurredAt", e.data, e.attempts, e.first_failed_at AS "firstFailedAt"`;

/** A failure while the lease holds: retried later, or parked; the counters move with it. */
const FAILED_SQL = `WITH changed AS (
    UPDATE webhook_event SET
      state = CASE WHEN $6 THEN 'parked' ELSE state END,
      parked_at = CASE WHEN $6 THEN $3::bigint ELSE parked_at END,
      next_at = CASE WHEN $6 THEN NULL ELSE $7::bigint END,
      first_failed_at = $4, last_error = $5
    WHERE seq = $1 AND state = 'pending' AND next_at = $2
    RETURNING 1
  ), counted AS (
    UPDATE webhook_counter SET value = value + 1
     WHERE EXISTS (SELECT 1 FROM changed) AND (name = 'failed_attempts' OR (name = 'parked' AND $6))
    RETURNING 1
  )
  SELECT count(*)::int AS changed FROM changed`;

const HEARTBEAT_SQL = `WITH beat AS (
    INSERT INTO webhook_deliverer (instance, url, pid, started_at, updated_at, in_flight, last_error, stopped)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    ON CONFLICT (instance) DO UPDATE SET url = excluded.url, pid = excluded.pid, started_at = excluded.started_at,
      updated_at = excluded.updated_at, in_flight = excluded.in_flight, last_error = excluded.last_error, stopped = excluded.stopped
    RETURNING 1
  )
  DELETE FROM webhook_deliverer WHERE updated_at < $9`;

const PRUNE_BATCH = 1_000;

export function pgDeliveryStore(store: PgStore): DeliveryStore {
  return {
    async startRecording(now) {
      await store.transaction((c) => setPgRecording(c, true, now));
    },

    async claim(now, limit, leaseMs) {
      const leaseUntil = now + leaseMs;
      const { rows } = await store.query<EventRow>({ name: 'vnum_webhook_claim', text: CLAIM_SQL, values: [now, limit, leaseUntil] });
      return rows
        .sort((a, b) => a.seq - b.seq)
        .map((row): ClaimedEvent => ({ ...row, data: JSON.parse(row.data) as OutboxEvent['data'], leaseUntil }));
    },

    async delivered(event, now) {
      await store.transaction((c) => closePgEvent(c, event, 'delivered', now));
    },

    async failed(event, now, error, policy, random) {
      const firstFailedAt = event.firstFailedAt ?? now;
      const next = afterFailure(policy, event.attempts, firstFailedAt, now, random);
      await store.query({
        name: 'vnum_webhook_failed',
        text: FAILED_SQL,
        values: [event.seq, event.leaseUntil, now, firstFailedAt, error.slice(0, 300), next.parked, next.parked ? null : next.nextAt],
      });
      return next;
    },

    async partiesOf(session) {
      const { rows } = await store.query<{ first: string; second: string }>({
        name: 'vnum_webhook_parties',
        text: 'SELECT first_party AS first, second_party AS second FROM session WHERE id = $1',
        values: [session],
      });
      return rows[0] ? ([rows[0].first, rows[0].second] as const) : undefined;
    },

    async heartbeat(report) {
      await store.query({
        name: 'vnum_webhook_heartbeat',
        text: HEARTBEAT_SQL,
        values: [
          report.instance, report.url, report.pid, report.startedAt, report.updatedAt, report.inFlight, report.lastError, report.stopped,
          report.updatedAt - 86_400_000,
        ],
      });
    },

    async prune(now, keepMs) {
      const cutoff = now - keepMs;
      let removed = 0;
      let after = 0;
      // The oldest events first, by seq; recorded_at grows with seq, so the walk stops at the first one young enough.
      for (;;) {
        const { rows: batch } = await store.query<{ seq: number; recordedAt: number; doneAt: number | null }>(
          'SELECT seq, recorded_at AS "recordedAt", done_at AS "doneAt" FROM webhook_event WHERE seq > $1 ORDER BY seq LIMIT $2',
          [after, PRUNE_BATCH],
        );
        const old = batch.filter((row) => row.recordedAt < cutoff);
        const gone = old.filter((row) => row.doneAt !== null && row.doneAt < cutoff).map((row) => row.seq);
        if (gone.length > 0) {
          removed += (await store.query('DELETE FROM webhook_event WHERE seq = ANY($1) AND done_at < $2', [gone, cutoff])).rowCount ?? 0;
        }
        if (batch.length < PRUNE_BATCH || old.length < batch.length) return removed;
        after = batch[batch.length - 1]!.seq;
      }
    },
  };
}
