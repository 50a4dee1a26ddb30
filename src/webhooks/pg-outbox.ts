import type pg from 'pg';
import type { EventRecord } from './events.js';
import { newEventId, type CounterName } from './outbox.js';

/**
 * The write side of the webhook outbox on the authority (cluster mode,
 * PostgreSQL migration 7): ./outbox.ts's rules on PostgreSQL, called inside
 * the transaction that writes the fact (a create or release by any API
 * process, a node's shipped call log), so a fact and its event commit
 * together or not at all. Nothing is written while recording is off
 * (webhook_outbox.recording_since = 0).
 *
 * Lanes: a session's events are delivered one at a time in seq order; only
 * the oldest open one is 'pending', later ones wait 'queued' until the one
 * before is closed (src/authority/pg-delivery-store.ts promotes the next). Under READ
 * COMMITTED, two processes appending to one session at once could both see
 * an empty lane and both write 'pending'; so an append first takes the
 * session's lane lock (a transaction-level advisory lock, LANE_LOCK_SPACE
 * and hashtext(session id)), and only then, in its own statement (a
 * statement sees what was committed when it began), checks the lane. Whoever
 * closes an event takes the same lock before promoting. The lock is held to
 * COMMIT, so within a session seq order is also commit order. Lock order,
 * everywhere: the session's row first (a release's FOR UPDATE), then its
 * lane lock. Two sessions hashing alike only share a lock: they wait for
 * each other, never more.
 */

/** The first key of the lanes' advisory locks (two-key form: never the same lock as a one-key lock such as the pool's). */
export const LANE_LOCK_SPACE = 0x77686b6c; // 'whkl'

/** The session's lane lock, if recording is on; returns recording_since (0: off, nothing locked). */
const LOCK_LANE_SQL = `SELECT o.recording_since AS since,
         CASE WHEN o.recording_since > 0 THEN (SELECT true FROM pg_advisory_xact_lock(${LANE_LOCK_SPACE}, hashtext($1))) END AS locked
    FROM webhook_outbox o`;

/** Insert one event, 'queued' behind an open event of its session, else 'pending' due at recorded_at. */
const APPEND_SQL = `INSERT INTO webhook_event (id, type, session_id, occurred_at, recorded_at, data, state, next_at)
  SELECT $1, $2, $3, $4, $5, $6, CASE WHEN w.open THEN 'queued' ELSE 'pending' END, CASE WHEN w.open THEN NULL ELSE $5::bigint END
    FROM (SELECT EXISTS (SELECT 1 FROM webhook_event WHERE session_id = $3 AND done_at IS NULL) AS open) w`;

/** Take the session's lane lock when recording is on: true if it is (then the caller may append to the lane). */
export async function lockPgLane(client: pg.ClientBase, session: string): Promise<{ recording: boolean; since: number }> {
  const { rows } = await client.query<{ since: number | string }>({ name: 'vnum_webhook_lane_lock', text: LOCK_LANE_SQL, values: [session] });
  const since = Number(rows[0]?.since ?? 0);
  return { recording: since > 0, since };
}

/** Several sessions' lane locks, in one order (hash order): for a transaction that closes or appends in many lanes. */
export async function lockPgLanes(client: pg.ClientBase, sessions: readonly string[]): Promise<void> {
  if (sessions.length === 0) return;
  await client.query({
    name: 'vnum_webhook_lanes',
    text: `SELECT pg_advisory_xact_lock(${LANE_LOCK_SPACE}, h) FROM (SELECT DISTINCT hashtext(s) AS h FROM unnest($1::text[]) AS s ORDER BY 1) l`,
    values: [[...sessions]],
  });
}

/** Append with the lane lock already held (lockPgLane said recording). */
export async function insertPgEvent(client: pg.ClientBase, event: EventRecord, now: number): Promise<void> {
  await client.query({
    name: 'vnum_webhook_append',
    text: APPEND_SQL,
    values: [newEventId(), event.type, event.session, event.occurredAt, now, JSON.stringify(event.data)],
  });
}

/**
 * Append an event, inside the caller's transaction (two statements: the
 * lane lock, then the insert). It is due at once when its session has
 * nothing else undelivered; otherwise it waits behind the session's earlier
 * events. No-op while recording is off.
 */
export async function appendPgEvent(client: pg.ClientBase, event: EventRecord, now: number): Promise<void> {
  if (!(await lockPgLane(client, event.session)).recording) return;
  await insertPgEvent(client, event, now);
}

/** Add to one of the outbox's counters (`vnum webhooks status --authority`), inside the caller's transaction. */
export async function addToPgCounter(client: pg.ClientBase, name: CounterName, by: number): Promise<void> {
  if (by === 0) return;
  await client.query({ name: 'vnum_webhook_count', text: 'UPDATE webhook_counter SET value = value + $1 WHERE name = $2', values: [by, name] });
}

/** When recording was turned on (ms), or null while it is off. */
export async function pgRecordingSince(client: pg.ClientBase | pg.Pool): Promise<number | null> {
  const { rows } = await client.query<{ since: number | string }>('SELECT recording_since AS since FROM webhook_outbox');
  const since = Number(rows[0]?.since ?? 0);
  return since > 0 ? since : null;
}

/** Turn recording on (keeping the time it was first turned on) or off. */
export async function setPgRecording(client: pg.ClientBase | pg.Pool, on: boolean, now: number): Promise<void> {
  if (on) await client.query('UPDATE webhook_outbox SET recording_since = $1 WHERE recording_since = 0', [Math.max(1, now)]);
  else await client.query('UPDATE webhook_outbox SET recording_since = 0');
}

/** Close an open event and promote the next of its lane, counting it; the lane lock is taken first (see above). */
const CLOSE_SQL = `WITH closed AS (
    UPDATE webhook_event SET state = $2, done_at = $3, next_at = NULL
     WHERE seq = $1 AND done_at IS NULL AND ($5::text IS NULL OR state = $5) RETURNING seq, session_id
  ), head AS (
    -- The statement's snapshot still shows the closed event open: it is left out by its seq.
    SELECT e.seq, e.state FROM webhook_event e, closed c
     WHERE e.session_id = c.session_id AND e.done_at IS NULL AND e.seq <> c.seq ORDER BY e.seq LIMIT 1
  ), promoted AS (
    UPDATE webhook_event SET state = 'pending', next_at = $3 WHERE seq IN (SELECT seq FROM head WHERE state = 'queued') RETURNING seq
  ), counted AS (
    UPDATE webhook_counter SET value = value + (SELECT count(*) FROM closed) WHERE name = $4 AND EXISTS (SELECT 1 FROM closed) RETURNING 1
  )
  SELECT (SELECT count(*) FROM closed)::int AS closed`;

/**
 * An event is done (delivered, or discarded by the operator), inside the
 * caller's transaction: the next event of its session, if any, becomes due
 * now, and the counter of that outcome moves. False when it was done
 * already (or, given `only`, is no longer in that state). Two statements:
 * the lane lock, then the close.
 */
export async function closePgEvent(
  client: pg.ClientBase,
  event: { seq: number; session: string },
  state: 'delivered' | 'discarded',
  now: number,
  only?: 'parked',
): Promise<boolean> {
  await client.query({ name: 'vnum_webhook_lane', text: `SELECT pg_advisory_xact_lock(${LANE_LOCK_SPACE}, hashtext($1))`, values: [event.session] });
  const { rows } = await client.query<{ closed: number }>({ name: 'vnum_webhook_close', text: CLOSE_SQL, values: [event.seq, state, now, state, only ?? null] });
  return rows[0]!.closed > 0;
}
