import { writeTransaction, type Db } from '../store/db.js';
import { ErrorCode, VnumError } from '../errors.js';
import type { DelivererReport } from './delivery-store.js';
import { perConnection } from '../store/statements.js';
import { addToCounter, closeEvent, COUNTERS, EVENT_ID, recordingSince, type CounterName } from './outbox.js';

/**
 * The outbox as the operator sees it (`vnum webhooks status`, and the
 * figures metrics read), and what the operator does with parked events:
 * send them again, or give up on them.
 */

export interface ParkedEvent {
  id: string;
  type: string;
  session: string;
  attempts: number;
  firstFailedAt: number | null;
  parkedAt: number;
  lastError: string | null;
}

/** A deliverer as it last reported itself (heartbeats every 5 s; `stopped` once it has stopped). */
export type DelivererSeen = DelivererReport;

/**
 * The outbox's figures, for `vnum webhooks status` and for metrics (a
 * Prometheus module reads them at every scrape: gauges for the backlog by
 * state and the oldest undelivered event's age, counters from `counters`).
 * A few counts over the open events only (partial indexes): the cost grows
 * with the backlog, never with what was delivered.
 */
export interface WebhookFigures {
  recording: { on: boolean; since: number | null };
  events: {
    /** Due now or later, the oldest open event of its session. */
    pending: number;
    /** Of those, being retried after a failure. */
    retrying: number;
    /** Waiting behind an earlier event of their session. */
    queued: number;
    /** Of the queued, behind a parked event: they move only when it is retried or discarded. */
    blocked: number;
    parked: number;
  };
  /** Everything not yet delivered: pending, queued and parked. */
  backlog: number;
  /** When the oldest event not yet delivered was recorded. */
  oldestUndeliveredAt: number | null;
  /** Running totals since the database was created (they never go down): delivered, failed_attempts, parked, discarded, refusals. */
  counters: Record<CounterName, number>;
}

export interface WebhookStatus extends WebhookFigures {
  deliverers: DelivererSeen[];
  /** The parked events, oldest first, at most `parkedLimit`. */
  parked: ParkedEvent[];
}

const figureStatements = perConnection((db: Db) => ({
  byState: db.prepare<[], { state: string; n: number }>('SELECT state, count(*) AS n FROM webhook_event WHERE done_at IS NULL GROUP BY state'),
  retrying: db
    .prepare<[], number>("SELECT count(*) FROM webhook_event WHERE state = 'pending' AND attempts > 0 AND first_failed_at IS NOT NULL")
    .pluck(),
  blocked: db
    .prepare<[], number>(
      `SELECT count(*) FROM webhook_event WHERE done_at IS NULL AND state = 'queued'
          AND session_id IN (SELECT session_id FROM webhook_event WHERE state = 'parked')`,
    )
    .pluck(),
  oldest: db.prepare<[], number | null>('SELECT min(recorded_at) FROM webhook_event WHERE done_at IS NULL').pluck(),
  counters: db.prepare<[], { name: CounterName; value: number }>('SELECT name, value FROM webhook_counter'),
}));

export function webhookFigures(db: Db): WebhookFigures {
  const s = figureStatements(db);
  const byState = new Map(s.byState.all().map((r) => [r.state, r.n]));
  const counters = Object.fromEntries(COUNTERS.map((name) => [name, 0])) as Record<CounterName, number>;
  for (const row of s.counters.all()) if (row.name in counters) counters[row.name] = row.value;
  const since = recordingSince(db);
  const pending = byState.get('pending') ?? 0;
  const queued = byState.get('queued') ?? 0;
  const parked = byState.get('parked') ?? 0;
  return {
    recording: { on: since !== null, since },
    events: { pending, retrying: s.retrying.get() ?? 0, queued, blocked: s.blocked.get() ?? 0, parked },
    backlog: pending + queued + parked,
    oldestUndeliveredAt: s.oldest.get() ?? null,
    counters,
  };
}

export function webhookStatus(db: Db, parkedLimit = 100): WebhookStatus {
  // One read transaction: the figures and the lists agree.
  return db.transaction(() => {
    const deliverers = db
      .prepare<[], Omit<DelivererSeen, 'stopped'> & { stopped: number }>(
        `SELECT instance, url, pid, started_at AS startedAt, updated_at AS updatedAt, in_flight AS inFlight, last_error AS lastError, stopped
           FROM webhook_deliverer ORDER BY updated_at DESC`,
      )
      .all()
      .map((d) => ({ ...d, stopped: d.stopped !== 0 }));
    const parked = db
      .prepare<[number], ParkedEvent>(
        `SELECT id, type, session_id AS session, attempts, first_failed_at AS firstFailedAt, parked_at AS parkedAt, last_error AS lastError
           FROM webhook_event WHERE state = 'parked' ORDER BY seq LIMIT ?`,
      )
      .all(parkedLimit);
    return { ...webhookFigures(db), deliverers, parked };
  })();
}

export interface ParkedRow {
  seq: number;
  id: string;
  session: string;
}

/** The parked events these ids name, all of them or none (VNUM_EVENT_NOT_PARKED naming the first that is not). */
function parkedEvents(db: Db, ids: readonly string[] | 'all'): ParkedRow[] {
  return pickParked(db.prepare<[], ParkedRow>("SELECT seq, id, session_id AS session FROM webhook_event WHERE state = 'parked' ORDER BY seq").all(), ids);
}

/** Of every parked event (`all`, by seq), those the ids name: all of them or none (also src/authority/pg-webhook-status.ts's rule). */
export function pickParked(all: ParkedRow[], ids: readonly string[] | 'all'): ParkedRow[] {
  if (ids === 'all') return all;
  const byId = new Map(all.map((row) => [row.id, row]));
  return [...new Set(ids)].map((id) => {
    checkEventId(id);
    const row = byId.get(id);
    if (!row) throw new VnumError(ErrorCode.EventNotParked, `no parked event ${id}: vnum webhooks status lists the parked ones`);
    return row;
  });
}

/** An event id as `vnum webhooks status` shows it, or VNUM_INVALID_ARGUMENT. */
export function checkEventId(id: string): void {
  if (!EVENT_ID.test(id)) {
    throw new VnumError(ErrorCode.InvalidArgument, `invalid event id "${id.slice(0, 70)}": evt_ and 32 hexadecimal digits, as vnum webhooks status shows it`);
  }
}

/** Parked events become due now, with a fresh retry window. Returns their ids. */
export function retryParked(db: Db, ids: readonly string[] | 'all', now: number): string[] {
  return writeTransaction(db, () => {
    const rows = parkedEvents(db, ids);
    const again = db.prepare<[number, number]>(
      "UPDATE webhook_event SET state = 'pending', next_at = ?, attempts = 0, first_failed_at = NULL, parked_at = NULL WHERE seq = ? AND state = 'parked'",
    );
    for (const row of rows) again.run(now, row.seq);
    return rows.map((r) => r.id);
  });
}

/** Give up on parked events: never sent; their sessions' later events follow. Returns their ids. */
export function discardParked(db: Db, ids: readonly string[] | 'all', now: number): string[] {
  return writeTransaction(db, () => {
    const rows = parkedEvents(db, ids);
    for (const row of rows) closeEvent(db, row, 'discarded', now);
    addToCounter(db, 'discarded', rows.length);
    return rows.map((r) => r.id);
  });
}
