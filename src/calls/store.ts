import { writeTransaction, type Db } from '../store/db.js';
import { maskedNumbers } from '../webhooks/events.js';
import { appendEvent, isRecording } from '../webhooks/outbox.js';
import type { Call, CallState, HangupReason } from './call.js';
import type { CallFact } from './facts.js';
import { callJson } from './json.js';
import { stateSql } from '../session/state.js';
import { perConnection } from '../store/statements.js';
import type { RouteAnswer } from '../routing/answer.js';
import type { RouteDecision } from '../routing/decide.js';

/**
 * The call log in SQLite (schema 2): one row per call the router bridged.
 * The router writes the row when it bridges (session, which party called,
 * the caller channel's Uniqueid); AMI facts fill in the rest. No real number
 * is stored: the caller is named by its side of the session.
 */

export { CALL_STATES, type Call, type CallState, type HangupReason, type Recording } from './call.js';

export interface CallRow {
  id: number;
  uniqueid: string;
  session_id: string;
  caller: 'first' | 'second';
  started_at: number;
  ringing_at: number | null;
  answered_at: number | null;
  ended_at: number | null;
  lost_at: number | null;
  dial_status: string | null;
  hangup_cause: number | null;
  hangup_cause_text: string | null;
  hangup_requested_at: number | null;
  hangup_reason: HangupReason | null;
  via: 'pin' | null;
  recording_path: string | null;
  recording_bytes: number | null;
  recording_deleted_at: number | null;
}

export function callState(row: Pick<CallRow, 'ringing_at' | 'answered_at' | 'ended_at' | 'lost_at'>): CallState {
  if (row.ended_at !== null) return 'ended';
  if (row.lost_at !== null) return 'lost';
  if (row.answered_at !== null) return 'answered';
  if (row.ringing_at !== null) return 'ringing';
  return 'routed';
}

/** A call log row (the single box's, or the authority's call_log with its own id) as a Call. */
export function callFromRow(row: CallRow): Call {
  return {
    id: row.id,
    uniqueid: row.uniqueid,
    session: row.session_id,
    caller: row.caller,
    state: callState(row),
    startedAt: row.started_at,
    ringingAt: row.ringing_at,
    answeredAt: row.answered_at,
    endedAt: row.ended_at,
    lostAt: row.lost_at,
    durationMs: row.answered_at !== null && row.ended_at !== null ? Math.max(0, row.ended_at - row.answered_at) : null,
    dialStatus: row.dial_status,
    hangupCause: row.hangup_cause,
    hangupCauseText: row.hangup_cause_text,
    hangupRequestedAt: row.hangup_requested_at,
    hangupReason: row.hangup_reason,
    via: row.via ?? null,
    recording:
      row.recording_path === null
        ? null
        : { path: row.recording_path, bytes: row.recording_bytes, deletedAt: row.recording_deleted_at },
  };
}

// The open calls: the condition of the partial index `call_open`, word for word.
const OPEN = 'ended_at IS NULL AND lost_at IS NULL';
// The latest row for a Uniqueid that has not ended (Uniqueids repeat only across Asterisk systems).
const LATEST_OPEN = `id = (SELECT max(id) FROM call WHERE uniqueid = @uniqueid AND ended_at IS NULL)`;

function prepare(db: Db) {
  return {
    // The caller is the party that is not the target the router dials.
    routed: db.prepare<{ uniqueid: string; channel: string; session: string; target: string; via: 'pin' | null; at: number; recording: string | null }, { id: number }>(
      `INSERT INTO call (uniqueid, channel, session_id, caller, started_at, via, recording_path)
       SELECT @uniqueid, @channel, id, iif(second_party = @target, 'first', 'second'), @at, @via, @recording
         FROM session WHERE id = @session AND (first_party = @target OR second_party = @target)
       RETURNING id`,
    ),
    latestOpen: db.prepare<{ uniqueid: string }, CallRow>(`SELECT * FROM call WHERE ${LATEST_OPEN}`),
    // A call with its session's masked numbers: what its webhook events tell.
    withMasked: db.prepare<[number], CallRow & { first_masked_as: string; second_masked_as: string }>(
      `SELECT c.*, s.first_masked_as, s.second_masked_as FROM call c JOIN session s ON s.id = c.session_id WHERE c.id = ?`,
    ),
    dialBegin: db.prepare<{ uniqueid: string; at: number; callee: string | null }>(
      `UPDATE call SET ringing_at = coalesce(ringing_at, @at), callee_uniqueid = coalesce(callee_uniqueid, @callee) WHERE ${LATEST_OPEN}`,
    ),
    dialEnd: db.prepare<{ uniqueid: string; at: number; status: string }>(
      `UPDATE call SET dial_status = @status,
              answered_at = iif(@status = 'ANSWER', coalesce(answered_at, @at), answered_at)
        WHERE ${LATEST_OPEN}`,
    ),
    // An exact end wins over an earlier "lost".
    hangup: db.prepare<{ uniqueid: string; at: number; cause: number | null; text: string | null }>(
      `UPDATE call SET ended_at = @at, lost_at = NULL, hangup_cause = @cause, hangup_cause_text = @text WHERE ${LATEST_OPEN}`,
    ),
    open: db.prepare<[], { id: number; uniqueid: string }>(`SELECT id, uniqueid FROM call WHERE ${OPEN}`),
    lost: db.prepare<[number, number]>(`UPDATE call SET lost_at = ? WHERE id = ? AND ${OPEN}`),
    requestHangup: db.prepare<{ session: string; at: number; reason: HangupReason }, { id: number }>(
      `UPDATE call SET hangup_requested_at = coalesce(hangup_requested_at, @at), hangup_reason = coalesce(hangup_reason, @reason)
        WHERE session_id = @session AND ${OPEN} RETURNING id`,
    ),
    // Open calls to hang up: asked for on the call (a single box's release), asked for on the session by a
    // release on the authority (cluster mode: the calls that started at or before the request), or ended.
    due: db.prepare<{ now: number }, { id: number; uniqueid: string; session: string; requestedAt: number | null; hangupReason: HangupReason | null; sessionRequestedAt: number | null }>(
      `SELECT c.id, c.uniqueid, c.session_id AS session, c.hangup_requested_at AS requestedAt, c.hangup_reason AS hangupReason,
              iif(c.started_at <= s.hangup_requested_at, s.hangup_requested_at, NULL) AS sessionRequestedAt
         FROM call c JOIN session s ON s.id = c.session_id
        WHERE c.ended_at IS NULL AND c.lost_at IS NULL
          AND (c.hangup_requested_at IS NOT NULL OR c.started_at <= s.hangup_requested_at OR ${stateSql('ended', 's')})`,
    ),
    markDue: db.prepare<{ at: number; reason: HangupReason; id: number }>(
      `UPDATE call SET hangup_requested_at = @at, hangup_reason = @reason WHERE id = @id AND hangup_requested_at IS NULL`,
    ),
    refusal: db.prepare<Refusal>(
      `INSERT INTO refusal (dialled, reason, count, last_at) VALUES (@dialled, @reason, @count, @at)
       ON CONFLICT (dialled, reason) DO UPDATE SET count = count + excluded.count, last_at = max(last_at, excluded.last_at)`,
    ),
    // Recordings of calls over for a moment (the file closed): to measure, or (past retention) to delete.
    recordingsToMeasure: db.prepare<{ before: number }, { id: number; path: string }>(
      `SELECT id, recording_path AS path FROM call
        WHERE recording_path IS NOT NULL AND recording_deleted_at IS NULL AND recording_bytes IS NULL
          AND coalesce(ended_at, lost_at) < @before`,
    ),
    recordingsToDelete: db.prepare<{ before: number }, { id: number; session: string; path: string }>(
      `SELECT id, session_id AS session, recording_path AS path FROM call
        WHERE recording_path IS NOT NULL AND recording_deleted_at IS NULL AND coalesce(ended_at, lost_at) < @before`,
    ),
    measured: db.prepare<[number, number]>('UPDATE call SET recording_bytes = ? WHERE id = ?'),
    noRecording: db.prepare<[number]>('UPDATE call SET recording_path = NULL WHERE id = ?'),
    deleted: db.prepare<[number, number]>('UPDATE call SET recording_deleted_at = ? WHERE id = ?'),
    inCall: db.prepare<[], string>(`SELECT DISTINCT session_id FROM call WHERE ${OPEN}`).pluck(),
    sessionOf: db.prepare<[string], string>('SELECT session_id FROM call WHERE uniqueid = ? ORDER BY id DESC LIMIT 1').pluck(),
    stillOpen: db.prepare<[string], number>(`SELECT count(*) FROM call WHERE id IN (SELECT value FROM json_each(?)) AND ${OPEN}`).pluck(),
  };
}
type Statements = ReturnType<typeof prepare>;
const statements = perConnection(prepare);

export interface RoutedCall {
  uniqueid: string;
  channel: string;
  session: string;
  /** The number the router dials: tells which party is calling. */
  target: string;
  /** 'pin': the caller typed that party's PIN (its own number was not the party's). */
  via?: 'pin' | null;
  at: number;
  /** Where the recording will be, when the call is recorded. */
  recording?: string | null;
}

type CallEventType = 'call.bridged' | 'call.answered' | 'call.ended';

/**
 * The webhook event of a call's change, in the transaction that made it
 * (src/webhooks/): `data.call` is the call as `vnum calls --json` shows it,
 * with the masked number the caller dialled and the one the other party was shown.
 */
function recordCallEvent(db: Db, type: CallEventType, id: number, occurredAt: number): void {
  if (!isRecording(db)) return;
  const row = statements(db).withMasked.get(id);
  if (!row) return;
  const call = callFromRow(row);
  const masked = maskedNumbers(call.caller, { first: row.first_masked_as, second: row.second_masked_as });
  appendEvent(db, { type, session: call.session, occurredAt, data: { call: { ...callJson(call), ...masked } } }, Date.now());
}

/**
 * Why a call on a pool number was refused, as counted: the refusal's status,
 * or for a caller put through to the desk the refusal it stands for. Undefined
 * for anything else (a bridge, a PIN prompt, a number not in the pool).
 */
export function refusalReason(answer: RouteAnswer, decision: RouteDecision | undefined): string | undefined {
  switch (answer.status) {
    case 'NO_SESSION':
    case 'ENDED':
    case 'INVALID':
    case 'PIN_FAILED':
    case 'NOT_ALLOWED':
      return answer.status;
    case 'FALLBACK':
      return `${decision?.reason ?? 'NO_SESSION'}>FALLBACK`;
    default:
      return undefined;
  }
}

export interface Refusal {
  /** The pool number dialled: a virtual number, never the caller's. */
  dialled: string;
  reason: string;
  /** How many more. */
  count: number;
  /** The latest of them. */
  at: number;
}

/** More refused calls on a pool number, for one reason. */
export function countRefusal(db: Db, refusal: Refusal): void {
  statements(db).refusal.run(refusal);
}

export interface RefusalCount {
  dialled: string;
  reason: string;
  count: number;
  lastAt: number;
}

export function refusalCounts(db: Db): RefusalCount[] {
  return db
    .prepare<[], RefusalCount>('SELECT dialled, reason, count, last_at AS lastAt FROM refusal ORDER BY dialled, reason')
    .all();
}

/** The row for a call the router bridged, and its call.bridged. False when the session has no such party (nothing written). */
export function recordRoutedCall(db: Db, call: RoutedCall): boolean {
  return writeTransaction(db, () => {
    const row = statements(db).routed.get({ ...call, via: call.via ?? null, recording: call.recording ?? null });
    if (row) recordCallEvent(db, 'call.bridged', row.id, call.at);
    return row !== undefined;
  });
}

function runFact(s: Statements, fact: CallFact): boolean {
  switch (fact.kind) {
    case 'dial-begin':
      return s.dialBegin.run({ uniqueid: fact.uniqueid, at: fact.at, callee: fact.calleeUniqueid }).changes > 0;
    case 'dial-end':
      return s.dialEnd.run({ uniqueid: fact.uniqueid, at: fact.at, status: fact.dialStatus }).changes > 0;
    case 'hangup':
      return s.hangup.run({ uniqueid: fact.uniqueid, at: fact.at, cause: fact.cause, text: fact.causeText }).changes > 0;
  }
}

/**
 * Apply one AMI fact to its call; false when no open call has that Uniqueid
 * (not a call vnum bridged). The answer and the end are each reported once
 * (call.answered, call.ended): a call already reported lost gets its exact
 * end in the log but no second call.ended.
 */
export function applyCallFact(db: Db, fact: CallFact): boolean {
  const s = statements(db);
  if (!isRecording(db)) return runFact(s, fact);
  return writeTransaction(db, () => {
    const before = s.latestOpen.get({ uniqueid: fact.uniqueid });
    if (!before || !runFact(s, fact)) return false;
    const after = s.withMasked.get(before.id)!;
    if (before.answered_at === null && after.answered_at !== null) recordCallEvent(db, 'call.answered', before.id, after.answered_at);
    if (before.ended_at === null && before.lost_at === null && after.ended_at !== null) recordCallEvent(db, 'call.ended', before.id, after.ended_at);
    return true;
  });
}

/**
 * After (re)connecting: every open call whose channel Asterisk no longer has
 * ended while vnum was not listening. Marked lost (its end unknown), never
 * given an invented end. Returns how many.
 */
export function markLostCalls(db: Db, live: ReadonlySet<string>, at: number): number {
  const s = statements(db);
  let lost = 0;
  db.transaction(() => {
    for (const row of s.open.all()) {
      if (!live.has(row.uniqueid) && s.lost.run(at, row.id).changes > 0) {
        lost++;
        recordCallEvent(db, 'call.ended', row.id, at);
      }
    }
  }).immediate();
  return lost;
}

/** A call whose channel Asterisk says it does not have: its end was missed (call.ended, state lost). */
export function markCallLost(db: Db, id: number, at: number): boolean {
  return writeTransaction(db, () => {
    const changed = statements(db).lost.run(at, id).changes > 0;
    if (changed) recordCallEvent(db, 'call.ended', id, at);
    return changed;
  });
}

/** `vnum session release --hangup`: ask for every open call of the session to be hung up. Their ids. */
export function requestSessionHangup(db: Db, session: string, at: number): number[] {
  return statements(db).requestHangup.all({ session, at, reason: 'release' }).map((r) => r.id);
}

export interface DueHangup {
  id: number;
  uniqueid: string;
  session: string;
  reason: HangupReason;
}

/**
 * Open calls to hang up now, each once (vnum serve retries only a Hangup that
 * did not end its call):
 *
 * - asked for on the call: a single box's release --hangup marked it;
 * - asked for on the session: in cluster mode a release with hangup on the
 *   authority writes its time on the session's row, and replication brings
 *   it to this node's file (src/authority/postgres.ts). The calls it covers
 *   are this node's open calls of that session that started at or before
 *   it, the calls a single box's release would have marked; a call that
 *   started later (in the release's grace) is not, and is hung up when the
 *   session ends, as on a single box. A node that receives the request late
 *   (cut off, or its replica stopped) applies it when it does, to the calls
 *   still up. Times are the authority's and this node's clocks: keep them in
 *   step (NTP), as the sessions' end times already need;
 * - their session has ended.
 *
 * The last two are recorded on the call on the way ('release' with the
 * request's time, or 'session-ended'), so the call log says why, and each
 * call is marked once.
 */
export function callsToHangUp(db: Db, now: number): DueHangup[] {
  const s = statements(db);
  const due = s.due.all({ now });
  const out: DueHangup[] = [];
  for (const row of due) {
    let reason = row.hangupReason ?? 'release';
    if (row.requestedAt === null) {
      reason = row.sessionRequestedAt === null ? 'session-ended' : 'release';
      s.markDue.run({ at: row.sessionRequestedAt ?? now, reason, id: row.id });
    }
    out.push({ id: row.id, uniqueid: row.uniqueid, session: row.session, reason });
  }
  return out;
}

/** How many of these calls are still open. */
export function openCallCount(db: Db, ids: readonly number[]): number {
  return ids.length === 0 ? 0 : statements(db).stillOpen.get(JSON.stringify(ids)) ?? 0;
}

export interface CallFilter {
  session?: string | undefined;
  since?: number | undefined;
  /** Only calls in progress (routed, ringing, answered). */
  live?: boolean | undefined;
  limit: number;
  /** Only calls listed after this position: the `next` of the page before. */
  after?: number | undefined;
}

/** Newest first; `limit + 1` rows are read so the caller can tell the list was cut, and where the next page starts. */
export function listCalls(db: Db, filter: CallFilter): { calls: Call[]; more: boolean; next: number | undefined } {
  const where: string[] = ['id < @after'];
  if (filter.session !== undefined) where.push('session_id = @session');
  if (filter.since !== undefined) where.push('started_at >= @since');
  if (filter.live) where.push(OPEN);
  const sql = `SELECT * FROM call WHERE ${where.join(' AND ')} ORDER BY id DESC LIMIT @limit`;
  const rows = db.prepare<Record<string, unknown>, CallRow>(sql).all({
    session: filter.session ?? null,
    since: filter.since ?? null,
    after: filter.after ?? Number.MAX_SAFE_INTEGER,
    limit: filter.limit + 1,
  });
  const more = rows.length > filter.limit;
  const page = rows.slice(0, filter.limit);
  return { calls: page.map(callFromRow), more, next: more ? page.at(-1)!.id : undefined };
}

// ---------------------------------------------------------------------------
// What `vnum serve` reports about itself, for `vnum health`.

/** A router's key in router_status: `host:port` as `vnum serve` was told to listen on, and as `vnum health` is told to probe. */
export function routerKey(host: string, port: number): string {
  return `${host}:${port}`;
}

export type AmiReportedState = 'disabled' | 'stopped' | 'connecting' | 'logged-in' | 'waiting';

export interface RouterStatus {
  /** host:port as `vnum serve` was told to listen on. */
  router: string;
  pid: number;
  startedAt: number;
  updatedAt: number;
  amiState: AmiReportedState;
  amiSince: number | null;
  amiError: string | null;
  asteriskVersion: string | null;
}

export function writeRouterStatus(db: Db, status: RouterStatus): void {
  db.prepare(
    `INSERT INTO router_status (router, pid, started_at, updated_at, ami_state, ami_since, ami_error, asterisk_version)
     VALUES (@router, @pid, @startedAt, @updatedAt, @amiState, @amiSince, @amiError, @asteriskVersion)
     ON CONFLICT (router) DO UPDATE SET pid = excluded.pid, started_at = excluded.started_at, updated_at = excluded.updated_at,
       ami_state = excluded.ami_state, ami_since = excluded.ami_since, ami_error = excluded.ami_error,
       asterisk_version = excluded.asterisk_version`,
  ).run(status);
}

/** A router_status row newer than this counts as a running `vnum serve`. */
export const STATUS_FRESH_MS = 15_000;

/** Whether some `vnum serve` on this database reports a live AMI login: without one, open calls may be stale. */
export function amiWatching(db: Db, now: number): boolean {
  const row = db
    .prepare<[number], { n: number }>("SELECT count(*) AS n FROM router_status WHERE ami_state = 'logged-in' AND updated_at >= ?")
    .get(now - STATUS_FRESH_MS);
  return (row?.n ?? 0) > 0;
}

export function readRouterStatus(db: Db, router: string): RouterStatus | undefined {
  const row = db.prepare<[string], RouterStatusRow>('SELECT * FROM router_status WHERE router = ?').get(router);
  return row === undefined ? undefined : toRouterStatus(row);
}

/** Every router that reported since `since`, by address. */
export function listRouterStatus(db: Db, since: number): RouterStatus[] {
  return db.prepare<[number], RouterStatusRow>('SELECT * FROM router_status WHERE updated_at >= ? ORDER BY router').all(since).map(toRouterStatus);
}

type RouterStatusRow = Record<string, unknown>;

function toRouterStatus(row: RouterStatusRow): RouterStatus {
  return {
    router: row.router as string,
    pid: row.pid as number,
    startedAt: row.started_at as number,
    updatedAt: row.updated_at as number,
    amiState: row.ami_state as AmiReportedState,
    amiSince: row.ami_since as number | null,
    amiError: row.ami_error as string | null,
    asteriskVersion: row.asterisk_version as string | null,
  };
}

// ---------------------------------------------------------------------------
// Recordings: measured once their call is over, deleted after retention.

/** Recordings of calls that ended before \`before\` and are not yet measured. */
export function recordingsToMeasure(db: Db, before: number): Array<{ id: number; path: string }> {
  return statements(db).recordingsToMeasure.all({ before });
}

/** Its size; or, with null, there is no file: the call was never answered, so never recorded. */
export function recordMeasured(db: Db, id: number, bytes: number | null): void {
  const s = statements(db);
  if (bytes === null) s.noRecording.run(id);
  else s.measured.run(bytes, id);
}

/** Recordings of calls that ended before \`before\` (now - retention) still on disk. */
export function recordingsToDelete(db: Db, before: number): Array<{ id: number; session: string; path: string }> {
  return statements(db).recordingsToDelete.all({ before });
}

export function recordDeleted(db: Db, id: number, at: number): void {
  statements(db).deleted.run(at, id);
}

/** Sessions with a call in progress (routed, ringing or answered): a sliding session's activity. */
export function sessionsInCall(db: Db): string[] {
  return statements(db).inCall.all();
}

/** The session of the latest call with this Uniqueid. */
export function sessionOfCall(db: Db, uniqueid: string): string | undefined {
  return statements(db).sessionOf.get(uniqueid);
}
