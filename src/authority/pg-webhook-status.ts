import type pg from 'pg';
import type { PgStore } from './pg-store.js';
import { closePgEvent, lockPgLanes } from '../webhooks/pg-outbox.js';
import { COUNTERS, type CounterName } from '../webhooks/outbox.js';
import { pickParked, type DelivererSeen, type ParkedEvent, type ParkedRow, type WebhookFigures, type WebhookStatus } from '../webhooks/status.js';

/**
 * ../webhooks/status.ts on the authority (cluster mode): the outbox's figures and
 * lists for `vnum webhooks status --authority` and the deliverer's metrics,
 * and what the operator does with parked events. The same shapes, so the
 * faces print and export them with the single box's code.
 */

const FIGURES_SQL = `SELECT
    (SELECT recording_since FROM webhook_outbox) AS since,
    (SELECT coalesce(jsonb_object_agg(state, n), '{}') FROM (SELECT state, count(*)::int AS n FROM webhook_event WHERE done_at IS NULL GROUP BY state) s) AS "byState",
    (SELECT count(*)::int FROM webhook_event WHERE state = 'pending' AND attempts > 0 AND first_failed_at IS NOT NULL) AS retrying,
    (SELECT count(*)::int FROM webhook_event WHERE done_at IS NULL AND state = 'queued'
        AND session_id IN (SELECT session_id FROM webhook_event WHERE state = 'parked')) AS blocked,
    (SELECT min(recorded_at) FROM webhook_event WHERE done_at IS NULL) AS oldest,
    (SELECT jsonb_object_agg(name, value) FROM webhook_counter) AS counters`;

async function figures(c: pg.ClientBase | pg.Pool): Promise<WebhookFigures> {
  const { rows } = await c.query<{
    since: number | null;
    byState: Record<string, number>;
    retrying: number;
    blocked: number;
    oldest: number | string | null;
    counters: Record<string, number | string> | null;
  }>(FIGURES_SQL);
  const row = rows[0]!;
  const counters = Object.fromEntries(COUNTERS.map((name) => [name, Number(row.counters?.[name] ?? 0)])) as Record<CounterName, number>;
  const since = Number(row.since ?? 0) > 0 ? Number(row.since) : null;
  const pending = row.byState.pending ?? 0;
  const queued = row.byState.queued ?? 0;
  const parked = row.byState.parked ?? 0;
  return {
    recording: { on: since !== null, since },
    events: { pending, retrying: row.retrying, queued, blocked: row.blocked, parked },
    backlog: pending + queued + parked,
    oldestUndeliveredAt: row.oldest === null ? null : Number(row.oldest),
    counters,
  };
}

export function pgWebhookFigures(store: PgStore): Promise<WebhookFigures> {
  return store.transaction((c) => figures(c), { readOnly: true });
}

export function pgWebhookStatus(store: PgStore, parkedLimit = 100): Promise<WebhookStatus> {
  // One snapshot (REPEATABLE READ, read-only): the figures and the lists agree.
  return store.transaction(
    async (c) => {
      const { rows: deliverers } = await c.query<DelivererSeen>(
        `SELECT instance, url, pid, started_at AS "startedAt", updated_at AS "updatedAt", in_flight AS "inFlight", last_error AS "lastError", stopped
           FROM webhook_deliverer ORDER BY updated_at DESC`,
      );
      const { rows: parked } = await c.query<ParkedEvent>(
        `SELECT id, type, session_id AS session, attempts, first_failed_at AS "firstFailedAt", parked_at AS "parkedAt", last_error AS "lastError"
           FROM webhook_event WHERE state = 'parked' ORDER BY seq LIMIT $1`,
        [parkedLimit],
      );
      return { ...(await figures(c)), deliverers, parked };
    },
    { readOnly: true },
  );
}

async function parkedEvents(c: pg.ClientBase, ids: readonly string[] | 'all'): Promise<ParkedRow[]> {
  // Not locked here (a close takes its lane lock first, then the row): each change below is guarded by state = 'parked'.
  const { rows } = await c.query<ParkedRow>("SELECT seq, id, session_id AS session FROM webhook_event WHERE state = 'parked' ORDER BY seq");
  return pickParked(rows, ids);
}

/** Parked events become due now, with a fresh retry window. Returns their ids. */
export function pgRetryParked(store: PgStore, ids: readonly string[] | 'all', now: number): Promise<string[]> {
  return store.transaction(async (c) => {
    const rows = await parkedEvents(c, ids);
    await c.query(
      "UPDATE webhook_event SET state = 'pending', next_at = $1, attempts = 0, first_failed_at = NULL, parked_at = NULL WHERE seq = ANY($2) AND state = 'parked'",
      [now, rows.map((r) => r.seq)],
    );
    return rows.map((r) => r.id);
  });
}

/** Give up on parked events: never sent; their sessions' later events follow. Returns their ids. */
export function pgDiscardParked(store: PgStore, ids: readonly string[] | 'all', now: number): Promise<string[]> {
  return store.transaction(async (c) => {
    const rows = await parkedEvents(c, ids);
    // Every lane first, in one order: a deliverer closing in one of them (its lane, then the counter's row) never waits on this.
    await lockPgLanes(c, rows.map((r) => r.session));
    // closePgEvent counts each as discarded.
    for (const row of rows) await closePgEvent(c, row, 'discarded', now, 'parked');
    return rows.map((r) => r.id);
  });
}
