import type pg from 'pg';
import { sessionEvent } from '../session/events.js';
import { toSession, type SessionRow } from '../session/sessions.js';
import type { Session } from '../session/session.js';
import { newEventId } from '../webhooks/outbox.js';
import { insertPgEvent, LANE_LOCK_SPACE, lockPgLanes } from '../webhooks/pg-outbox.js';
import type { PgStore } from './pg-store.js';

/**
 * A session's webhook events on the authority (cluster mode): what
 * src/session/events.ts does on a single box, on PostgreSQL. session.created
 * is folded into the create's write statement (./postgres.ts,
 * CREATE_WRITE_SQL: no extra round trip); session.released is written by
 * pgSessionReleased inside the release's transaction; session.ended, which
 * happens by the clock with no write, by reportPgSessionEnds, run by every
 * `vnum webhooks deliver --authority`.
 *
 * Locks, in this order everywhere: the webhook_outbox row (the sweep only:
 * two sweeps never run at once, as the single box's IMMEDIATE transaction),
 * the session's row (a release's FOR UPDATE, the sweep's), its
 * webhook_session_end rows, its lane lock (../webhooks/pg-outbox.ts).
 */

/** After the session's row lock: recording, how far ends were reported, and the lane lock when recording. */
const RELEASE_READ_SQL = `SELECT o.recording_since AS since, o.ends_reported_to AS reported,
         CASE WHEN o.recording_since > 0 THEN (SELECT true FROM pg_advisory_xact_lock(${LANE_LOCK_SPACE}, hashtext($1))) END AS locked
    FROM webhook_outbox o`;

/** The session's end moves: the old one untracked, the new one tracked. */
const MOVE_END_SQL = `WITH untracked AS (
    DELETE FROM webhook_session_end WHERE $2::bigint IS NOT NULL AND ends_at = $2 AND session_id = $1 RETURNING 1
  )
  INSERT INTO webhook_session_end (ends_at, session_id) SELECT $3, $1 WHERE $3::bigint IS NOT NULL ON CONFLICT DO NOTHING`;

/**
 * Inside releaseSession's transaction, after the session's row is locked,
 * for a release that changed the session: session.released, and its end
 * tracked at the new time. Skipped when the end it had was already reported
 * as session.ended (a release whose clock was read before that end must not
 * put session.released after session.ended), as on a single box.
 */
export async function pgSessionReleased(c: pg.ClientBase, before: Session, after: Session, now: number): Promise<void> {
  const { rows } = await c.query<{ since: number; reported: number }>({ name: 'vnum_webhook_release_read', text: RELEASE_READ_SQL, values: [after.id] });
  const { since, reported } = rows[0] ?? { since: 0, reported: 0 };
  if (!(Number(since) > 0)) return;
  if (before.endsAt !== null && before.endsAt <= Number(reported)) return;
  await insertPgEvent(c, sessionEvent('session.released', after, now), now);
  if (before.endsAt !== after.endsAt) {
    await c.query({ name: 'vnum_webhook_move_end', text: MOVE_END_SQL, values: [after.id, before.endsAt, after.endsAt] });
  }
}

/** session.ended for many sessions at once, each 'queued' behind an open event of its session, else due now (their lane locks held). */
const ENDED_SQL = `INSERT INTO webhook_event (id, type, session_id, occurred_at, recorded_at, data, state, next_at)
  SELECT v.id, 'session.ended', v.session, v.occurred, $1, v.data,
         CASE WHEN v.open THEN 'queued' ELSE 'pending' END, CASE WHEN v.open THEN NULL ELSE $1::bigint END
    FROM (SELECT u.*, EXISTS (SELECT 1 FROM webhook_event e WHERE e.session_id = u.session AND e.done_at IS NULL) AS open
            FROM unnest($2::text[], $3::text[], $4::bigint[], $5::text[]) AS u (id, session, occurred, data)) v`;

/**
 * session.ended for every tracked session whose end has come, once each, in
 * one transaction that holds the webhook_outbox row: whoever runs it (one
 * deliverer or several, on any host), an end is reported once, after
 * anything its release recorded. A sweep that finds the row held (another
 * deliverer sweeping) skips this turn instead of waiting. Returns how many
 * tracked ends were taken.
 */
export async function reportPgSessionEnds(store: PgStore, now: number, limit = 1_000): Promise<number> {
  return store.transaction(async (c) => {
    const { rows: mine } = await c.query('SELECT 1 FROM webhook_outbox FOR UPDATE SKIP LOCKED');
    if (mine.length === 0) return 0;
    const { rows: read } = await c.query<{ endsAt: number; session: string }>(
      'SELECT ends_at AS "endsAt", session_id AS session FROM webhook_session_end WHERE ends_at <= $1 ORDER BY ends_at, session_id LIMIT $2',
      [now, limit],
    );
    // A full batch leaves its last end's rows to the next sweep (unless they are all it has), so that everything
    // reported is at or before ends_reported_to: a release judges by it whether its session's end was reported.
    const last = read.at(-1)?.endsAt;
    const full = read.length === limit;
    const due = full && read.some((d) => Number(d.endsAt) < Number(last)) ? read.filter((d) => Number(d.endsAt) < Number(last)) : read;
    if (due.length > 0) {
      const ids = [...new Set(due.map((d) => d.session))];
      // The sessions' rows first (a release holding one finishes first, and its end row is then gone), in one order.
      const { rows: sessionRows } = await c.query<SessionRow>('SELECT * FROM session WHERE id = ANY($1) ORDER BY sid FOR UPDATE', [ids]);
      const sessions = new Map(sessionRows.map((row) => [row.id, toSession(row, now)]));
      // Only the rows still there are this sweep's: a release that committed meanwhile moved its session's.
      const { rows: taken } = await c.query<{ endsAt: number; session: string }>(
        `DELETE FROM webhook_session_end WHERE (ends_at, session_id) IN (SELECT * FROM unnest($1::bigint[], $2::text[]))
         RETURNING ends_at AS "endsAt", session_id AS session`,
        [due.map((d) => d.endsAt), due.map((d) => d.session)],
      );
      const ended: Session[] = [];
      const moved: Array<{ session: string; endsAt: number }> = [];
      for (const { session: id, endsAt } of taken) {
        const session = sessions.get(id);
        if (!session || session.endsAt === null) continue;
        // Reported only when the row is the session's own end; one left at another time (a slide on a node,
        // a release while recording was off) is moved there instead: one row per end, one report.
        if (session.endsAt === endsAt) ended.push(session);
        else moved.push({ session: id, endsAt: session.endsAt });
      }
      if (ended.length > 0) {
        const { rows: on } = await c.query<{ since: number }>('SELECT recording_since AS since FROM webhook_outbox');
        if (Number(on[0]?.since ?? 0) > 0) {
          await lockPgLanes(c, ended.map((s) => s.id));
          const events = ended.map((session) => sessionEvent('session.ended', session, session.endsAt!));
          await c.query(ENDED_SQL, [now, events.map(() => newEventId()), events.map((e) => e.session), events.map((e) => e.occurredAt), events.map((e) => JSON.stringify(e.data))]);
        }
      }
      if (moved.length > 0) {
        await c.query(
          'INSERT INTO webhook_session_end (ends_at, session_id) SELECT * FROM unnest($1::bigint[], $2::text[]) ON CONFLICT DO NOTHING',
          [moved.map((m) => m.endsAt), moved.map((m) => m.session)],
        );
      }
    }
    // Every tracked end up to here is reported: all up to now, or, with more left, those before the last one read
    // (when a whole batch shares one end, those rows are reported and others at that end may wait: last - 1 still).
    const to = !full ? now : Number(last) - 1;
    await c.query('UPDATE webhook_outbox SET ends_reported_to = GREATEST(ends_reported_to, $1)', [to]);
    return due.length;
  });
}
