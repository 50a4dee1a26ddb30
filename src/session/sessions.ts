import type { Db } from '../store/db.js';
import { writeTransaction } from '../store/db.js';
import { perConnection } from '../store/statements.js';
import { poolRevision } from '../pool/pool.js';
import { durationRange, formatDuration } from '../duration.js';
import { ErrorCode, VnumError } from '../errors.js';
import { isoDateTime, isRepresentableTime } from '../time.js';
import { normaliseNumber, parseNumber, type E164 } from '../numbers/normalise.js';
import { callingCodeOf } from '../numbers/plan.js';
import { assertPartyAllowed, DEFAULT_POLICY, type NumberPolicy } from '../numbers/policy.js';
import { numberTypeCode, type NumberType } from '../numbers/type.js';
import { chooseMaskedNumber, poolView, requestedNumberProblem, type PoolCandidate, type PoolView } from './allocate.js';
import { recordSessionCreated, recordSessionReleased } from './events.js';
import { DEFAULT_PIN_GUESS_BOUND, issuePin, pinDigits } from './pin.js';
import type { Party, Session } from './session.js';
import { endAfterRelease, isLive, sessionState, slidEnd, stateSql, type SessionState } from './state.js';
import { parseCallSettings, storedCallSettings, type CallSettings } from './call-settings.js';
import { isRecording, trackSessionEnd, untrackSessionEnd } from '../webhooks/outbox.js';

export type { Party, Session } from './session.js';

export interface PartyInput {
  number: E164;
  /** What kind of line the number is, as parseNumber found it: judged by the number-type policy. */
  type: NumberType;
  /** Ask for a specific virtual number (the only way to lend a reserved one). */
  maskedAs?: E164 | undefined;
}

/** A party as a face receives it: its number as typed (read in `country` when without +), and a masked number it asks for. */
export function partyInput(number: string, maskedAs: string | undefined, country: string | undefined): PartyInput {
  const parsed = parseNumber(number, country);
  return { number: parsed.e164, type: parsed.type, maskedAs: maskedAs === undefined ? undefined : normaliseNumber(maskedAs, country) };
}

export interface CreateSessionInput {
  id: string;
  first: PartyInput;
  second: PartyInput;
  ttlMs?: number | undefined;
  /** Sliding TTL: end after this long without a bridged call; with ttlMs, ttlMs is the hard maximum. */
  idleMs?: number | undefined;
  callSettings?: CallSettings | undefined;
  now: number;
  /** Which kinds of number a party may have; the default policy when absent. */
  policy?: NumberPolicy | undefined;
  /** The bound on one random PIN guess succeeding (./pin.ts); DEFAULT_PIN_GUESS_BOUND when absent. */
  pinGuessBound?: number | undefined;
}

export const DEFAULT_GRACE_MS = 30 * 60_000;
/** The longest TTL: a year (Exotel caps sessions at 170 days); longer-lived pairs need no TTL at all. */
export const MAX_TTL_MS = 365 * 86_400_000;
/** The longest grace after a release: a month of "I forgot something" calls. */
export const MAX_GRACE_MS = 30 * 86_400_000;
/**
 * Sliding TTL's bounds. At least 5 s: calls in progress keep their session
 * alive through \`vnum serve\`'s check every half second (calls/tracker.ts).
 */
export const IDLE_LIMITS = Object.freeze({ min: 5_000, max: MAX_TTL_MS });

// The id travels into channel variables and logs: keep it to a safe alphabet.
const SESSION_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;

export function validateSessionId(id: string): string {
  if (!SESSION_ID.test(id)) {
    throw new VnumError(
      ErrorCode.InvalidArgument,
      `invalid session id "${id.slice(0, 70)}": 1-64 characters of A-Z a-z 0-9 . _ : -, starting with a letter or digit`,
    );
  }
  return id;
}

/** A session's row, as both stores keep it (SQLite here, PostgreSQL in src/authority/postgres.ts). */
export interface SessionRow {
  sid: number;
  id: string;
  first_party: E164;
  first_masked_as: E164;
  second_party: E164;
  second_masked_as: E164;
  created_at: number;
  expires_at: number | null;
  released_at: number | null;
  ends_at: number | null;
  idle_ms: number | null;
  call_settings: string | null;
}

export function toSession(row: SessionRow, now: number): Session {
  const times = { expiresAt: row.expires_at, releasedAt: row.released_at, endsAt: row.ends_at };
  return {
    id: row.id,
    state: sessionState(times, now),
    createdAt: row.created_at,
    ...times,
    idleMs: row.idle_ms,
    callSettings: parseCallSettings(row.call_settings) ?? {},
    parties: [
      { number: row.first_party, maskedAs: row.first_masked_as },
      { number: row.second_party, maskedAs: row.second_masked_as },
    ],
  };
}

const poolCache = new WeakMap<Db, { revision: number; view: PoolView }>();

/** The pool, read again only when its revision moved (one point read per create otherwise). */
function currentPool(db: Db): PoolView {
  const revision = poolRevision(db);
  const cached = poolCache.get(db);
  if (cached && cached.revision === revision) return cached.view;
  const view = poolView(db.prepare<[], PoolCandidate>('SELECT number, state FROM pool_number').all());
  poolCache.set(db, { revision, view });
  return view;
}

/** A party's bridge row, as allocation reads it: one per number it has dialled. */
export interface PartyBridgeRow {
  dialled: string;
  target: string;
  lent_at: number;
  ends_at: number | null;
}

/** Prepared statements, one set per connection. */
function prepareStatements(db: Db) {
  return {
    byId: db.prepare<[string], SessionRow>('SELECT * FROM session WHERE id = ?'),
    // Everything allocation needs to know about a party, in one key range.
    bridgesOf: db.prepare<[string], PartyBridgeRow>('SELECT dialled, target, lent_at, ends_at FROM bridge WHERE caller = ?'),
    insertSession: db.prepare<[string, string, string, string, string, number, number | null, number | null, number | null, string | null]>(
      `INSERT INTO session (id, first_party, first_masked_as, second_party, second_masked_as, created_at, expires_at, ends_at, idle_ms, call_settings)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    slide: db.prepare<[number, number, number | null]>('UPDATE session SET ends_at = ? WHERE sid = ? AND released_at IS NULL AND ends_at IS ?'),
    // A pair's row passes to a new session only when the old one has ended
    // (NULL ends_at: open-ended, never): the invariant, held by the database.
    // target_type: what the router judges the number-type policy against, without parsing the target per call.
    lendBridge: db.prepare<[string, string, number | bigint, string, number, number, number | null]>(
      `INSERT INTO bridge (caller, dialled, sid, target, target_type, lent_at, ends_at) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (caller, dialled) DO UPDATE
         SET sid = excluded.sid, target = excluded.target, target_type = excluded.target_type,
             lent_at = excluded.lent_at, ends_at = excluded.ends_at
         WHERE bridge.ends_at <= excluded.lent_at`,
    ),
    release: db.prepare<[number, number, number]>('UPDATE session SET released_at = ?, ends_at = ? WHERE sid = ?'),
    endBridge: db.prepare<[number, string, string, number]>('UPDATE bridge SET ends_at = ? WHERE caller = ? AND dialled = ? AND sid = ?'),
  };
}
type Statements = ReturnType<typeof prepareStatements>;
const statements = perConnection(prepareStatements);

export interface CreateResult {
  session: Session;
  /** false when this very request had already created the session (a safe retry). */
  created: boolean;
}

/**
 * A create's input judged before any store is touched (the rules both stores
 * share): the id, the parties, the TTL, the idle timeout, the call settings
 * and the number-type policy. Returns the call settings as stored.
 */
export function checkCreate(input: CreateSessionInput): string | null {
  validateSessionId(input.id);
  const { first, second, now } = input;
  if (first.number === second.number) {
    throw new VnumError(ErrorCode.InvalidArgument, 'the two parties must be different numbers');
  }
  if (input.ttlMs !== undefined && !(Number.isInteger(input.ttlMs) && input.ttlMs > 0 && input.ttlMs <= MAX_TTL_MS)) {
    throw new VnumError(ErrorCode.InvalidArgument, `the TTL must be longer than zero and at most ${formatDuration(MAX_TTL_MS)}`);
  }
  if (input.pinGuessBound !== undefined) pinDigits(0, input.pinGuessBound);
  if (input.idleMs !== undefined && !(Number.isInteger(input.idleMs) && input.idleMs >= IDLE_LIMITS.min && input.idleMs <= IDLE_LIMITS.max)) {
    throw new VnumError(ErrorCode.InvalidArgument, `the idle timeout must be ${durationRange(IDLE_LIMITS.min, IDLE_LIMITS.max)}`);
  }
  if (input.idleMs !== undefined && input.ttlMs !== undefined && input.idleMs > input.ttlMs) {
    throw new VnumError(ErrorCode.InvalidArgument, 'the idle timeout must not be longer than the TTL (its hard maximum)');
  }
  const callSettings = storedCallSettings(input.callSettings);
  if (!isRepresentableTime(now + Math.max(input.ttlMs ?? 0, input.idleMs ?? 0))) throw clockOutOfRange(now);
  const policy = input.policy ?? DEFAULT_POLICY;
  for (const party of [first, second]) assertPartyAllowed(policy, party.number, party.type);
  return callSettings;
}

/** A party's real number must not be a pool number (it would be lent to strangers as a masked number). */
export function refusePoolParties(pool: PoolView, input: CreateSessionInput): void {
  for (const party of [input.first, input.second]) {
    if (pool.byNumber.has(party.number)) {
      throw new VnumError(ErrorCode.PoolConflict, `${party.number} is a virtual number in the pool, not a party's real number`);
    }
  }
}

/** The session a create made, as its answer shows it (with the PINs it issued: shown once). */
export function createdSession(
  input: CreateSessionInput,
  made: { firstMaskedAs: E164; secondMaskedAs: E164; expiresAt: number | null; endsAt: number | null; callSettings: string | null; pins: [string, string] },
): Session {
  return {
    id: input.id,
    state: 'active',
    createdAt: input.now,
    expiresAt: made.expiresAt,
    releasedAt: null,
    endsAt: made.endsAt,
    idleMs: input.idleMs ?? null,
    callSettings: parseCallSettings(made.callSettings) ?? {},
    parties: [
      { number: input.first.number, maskedAs: made.firstMaskedAs, pin: made.pins[0] },
      { number: input.second.number, maskedAs: made.secondMaskedAs, pin: made.pins[1] },
    ],
  };
}

/** When a new session ends: its TTL, or with an idle timeout the first idle end (never past the TTL). */
export function sessionEnds(input: CreateSessionInput): { expiresAt: number | null; endsAt: number | null } {
  const expiresAt = input.ttlMs === undefined ? null : input.now + input.ttlMs;
  return { expiresAt, endsAt: input.idleMs === undefined ? expiresAt : slidEnd(expiresAt, input.idleMs, input.now) };
}

/**
 * Open a masked session between two real numbers. One IMMEDIATE transaction:
 * the write lock is held from the first read, so concurrent creates in other
 * processes see each other's bridges and the invariant holds across processes.
 */
export function createSession(db: Db, input: CreateSessionInput): CreateResult {
  const { first, second, now } = input;
  const callSettings = checkCreate(input);
  const s = statements(db);
  return writeTransaction(db, () => {
    const existing = s.byId.get(input.id);
    if (existing) return retried(existing, input);
    // Read under the write lock, like everything else here: a number another
    // process added to the pool a moment ago is seen (the view is cached by
    // the pool's revision, read in this transaction).
    const pool = currentPool(db);
    refusePoolParties(pool, input);
    // first is masked as what second dials to reach first, and the other way round.
    const firstMaskedAs = allocate(s.bridgesOf.all(second.number), pool, { dialler: second, target: first.number, requested: first.maskedAs, now });
    const secondMaskedAs = allocate(s.bridgesOf.all(first.number), pool, { dialler: first, target: second.number, requested: second.maskedAs, now });
    const { expiresAt, endsAt } = sessionEnds(input);
    const { lastInsertRowid: sid } = s.insertSession.run(
      input.id, first.number, firstMaskedAs, second.number, secondMaskedAs, now, expiresAt, endsAt, input.idleMs ?? null, callSettings,
    );
    lend(s, second.number, firstMaskedAs, sid, first, now, endsAt);
    lend(s, first.number, secondMaskedAs, sid, second, now, endsAt);
    // Each party's PIN is for the number it dials: the other party's masked number.
    const bound = input.pinGuessBound ?? DEFAULT_PIN_GUESS_BOUND;
    const firstPin = issuePin(db, { dialled: secondMaskedAs, caller: first.number, sid, now, bound });
    const secondPin = issuePin(db, { dialled: firstMaskedAs, caller: second.number, sid, now, bound });
    const session = createdSession(input, { firstMaskedAs, secondMaskedAs, expiresAt, endsAt, callSettings, pins: [firstPin, secondPin] });
    recordSessionCreated(db, session, now);
    return { session, created: true };
  });
}

/**
 * A create under an id that exists: the idempotency rule (README, "Retries").
 * The same request (same parties in the same order, the same TTL, and any
 * masked number it names being the one lent) gets the session back, as long
 * as it has not been released: a released or ended session is never
 * reopened, and a retry of it fails (SessionEnded, the session in details).
 * Anything else under that id is a conflict (SessionConflict, what differs in
 * details; never the other request's numbers).
 */
export function retried(row: SessionRow, input: CreateSessionInput): CreateResult {
  const { first, second, now } = input;
  const differs: string[] = [];
  if (row.first_party !== first.number || row.second_party !== second.number) {
    differs.push(row.first_party === second.number && row.second_party === first.number ? 'party order' : 'parties');
  }
  const ttlMs = row.expires_at === null ? undefined : row.expires_at - row.created_at;
  if (ttlMs !== input.ttlMs) differs.push('ttl');
  if ((row.idle_ms ?? undefined) !== input.idleMs) differs.push('idle');
  if (row.call_settings !== storedCallSettings(input.callSettings)) differs.push('calls');
  if (first.maskedAs !== undefined && first.maskedAs !== row.first_masked_as) differs.push('firstMaskedAs');
  if (second.maskedAs !== undefined && second.maskedAs !== row.second_masked_as) differs.push('secondMaskedAs');
  if (differs.length > 0) {
    const said: Record<string, string> = {
      parties: 'other parties',
      'party order': 'these parties in the other order',
      ttl: `another TTL (${ttlMs === undefined ? 'none' : formatDuration(ttlMs)})`,
      idle: `another idle timeout (${row.idle_ms === null ? 'none' : formatDuration(row.idle_ms)})`,
      calls: 'other call settings',
      firstMaskedAs: 'another number lent to the first party',
      secondMaskedAs: 'another number lent to the second party',
    };
    throw new VnumError(
      ErrorCode.SessionConflict,
      `session "${input.id}" already exists with ${differs.map((d) => said[d]).join(', ')}`,
      { differs },
    );
  }
  const session = toSession(row, now);
  if (session.releasedAt !== null || session.state === 'ended') {
    const when =
      session.releasedAt !== null
        ? `was released at ${isoDateTime(session.releasedAt)}${session.state === 'grace' ? ` (calls connect until ${isoDateTime(session.endsAt!)})` : ''}`
        : `ended at ${isoDateTime(session.endsAt!)}`;
    throw new VnumError(
      ErrorCode.SessionEnded,
      `session "${input.id}" ${when}: a session is never reopened; use a new id for a new session`,
      { session },
    );
  }
  return { session, created: false };
}

function clockOutOfRange(now: number): VnumError {
  return new VnumError(ErrorCode.InvalidArgument, `the clock (${now} ms since 1970) is beyond the dates vnum can store`);
}

function lend(
  s: Statements,
  caller: E164, dialled: E164, sid: number | bigint, target: PartyInput, now: number, endsAt: number | null,
): void {
  if (s.lendBridge.run(caller, dialled, sid, target.number, numberTypeCode(target.type), now, endsAt).changes !== 1) {
    // allocate() chose a number this caller dials in a live session: a bug, never a user error.
    throw new VnumError(ErrorCode.Internal, `allocation invariant: ${dialled} is already live for this caller`);
  }
}

/** The number `dialler` will dial to reach `target`, from the dialler's bridge rows (all of them, live or not) and the pool. */
export function allocate(
  rows: Iterable<PartyBridgeRow>,
  pool: PoolView,
  request: { dialler: PartyInput; target: E164; requested: E164 | undefined; now: number },
): E164 {
  const { dialler, target, requested, now } = request;
  const busy = new Set<string>();
  const lastUsed = new Map<string, number>();
  let sticky: string | undefined;
  let stickyAt = -Infinity;
  for (const row of rows) {
    if (isLive(row.ends_at, now)) busy.add(row.dialled);
    lastUsed.set(row.dialled, row.lent_at);
    if (row.target === target && row.lent_at > stickyAt) {
      sticky = row.dialled;
      stickyAt = row.lent_at;
    }
  }
  if (requested !== undefined) {
    const problem = requestedNumberProblem(pool.byNumber.get(requested), busy);
    if (problem) throw new VnumError(problem.code, `cannot lend ${requested}: it ${problem.reason}`);
    return requested;
  }
  const chosen = chooseMaskedNumber({ pool, busy, callingCode: callingCodeOf(dialler.number), lastUsed, sticky });
  if (chosen === undefined) {
    const available = pool.candidates.filter((c) => c.state === 'available').length;
    throw new VnumError(
      ErrorCode.PoolExhausted,
      `pool exhausted for ${dialler.number}: it is in ${busy.size} live session${busy.size === 1 ? '' : 's'} ` +
        `and the pool has ${available} available number${available === 1 ? '' : 's'} (${pool.candidates.length} in all); add numbers with "vnum pool add"`,
    );
  }
  return chosen as E164;
}

export interface ReleaseResult {
  session: Session;
  /** false when the session had already ended, or an earlier release already ends it sooner. */
  changed: boolean;
}

/** Start the grace period: calls still connect until it is over; a grace of 0 ends the session now. */
export function releaseSession(db: Db, id: string, graceMs: number, now: number): ReleaseResult {
  checkRelease(id, graceMs, now);
  const s = statements(db);
  return writeTransaction(db, () => {
    const row = s.byId.get(id);
    const plan = releasePlan(id, row, graceMs, now);
    if (!plan.changed) return plan;
    s.release.run(plan.session.releasedAt!, plan.session.endsAt!, row!.sid);
    // The pair rows still belong to this session: a live session's rows cannot pass to another.
    s.endBridge.run(plan.session.endsAt!, row!.second_party, row!.first_masked_as, row!.sid);
    s.endBridge.run(plan.session.endsAt!, row!.first_party, row!.second_masked_as, row!.sid);
    recordSessionReleased(db, plan.before, plan.session, now);
    return { session: plan.session, changed: true };
  });
}

/** A release's arguments judged before any store is touched. */
export function checkRelease(id: string, graceMs: number, now: number): void {
  validateSessionId(id);
  if (!(Number.isInteger(graceMs) && graceMs >= 0 && graceMs <= MAX_GRACE_MS)) {
    throw new VnumError(ErrorCode.InvalidArgument, `grace must be from zero to ${formatDuration(MAX_GRACE_MS)}`);
  }
  if (!isRepresentableTime(now + graceMs)) throw clockOutOfRange(now);
}

/**
 * What a release does to the session as read in its transaction (pure): nothing (it has ended, or an
 * earlier release ends it no later), or the session released, with its end and the same end for its two bridges.
 */
export function releasePlan(
  id: string,
  row: SessionRow | undefined,
  graceMs: number,
  now: number,
): { changed: false; session: Session } | { changed: true; session: Session; before: Session } {
  if (!row) throw new VnumError(ErrorCode.SessionNotFound, `no session "${id}"`);
  const session = toSession(row, now);
  if (session.state === 'ended') return { session, changed: false };
  const endsAt = endAfterRelease(session, now, graceMs);
  if (session.releasedAt !== null && endsAt === session.endsAt) return { session, changed: false };
  const released = toSession({ ...row, released_at: session.releasedAt ?? now, ends_at: endsAt }, now);
  return { session: released, changed: true, before: session };
}

/** The session, or undefined when there is none (a reader for the session.ended sweep, src/session/events.ts). */
export function findSession(db: Db, id: string, now: number): Session | undefined {
  const row = statements(db).byId.get(id);
  return row ? toSession(row, now) : undefined;
}

export function getSession(db: Db, id: string, now: number): Session {
  validateSessionId(id);
  const session = findSession(db, id, now);
  if (!session) throw new VnumError(ErrorCode.SessionNotFound, `no session "${id}"`);
  return session;
}

export interface SessionFilter {
  party?: E164 | undefined;
  state?: SessionState | undefined;
  limit: number;
  now: number;
  /** Only sessions listed after this position: the `next` of the page before. */
  after?: number | undefined;
}

export interface SessionPage {
  sessions: Session[];
  /** More sessions match than this page holds. */
  more: boolean;
  /** Where the next page starts (pass it as `after`); undefined on the last page. */
  next: number | undefined;
}

/**
 * Newest first, a page at a time; `limit + 1` rows are read so the caller
 * can tell the list was cut. By party: one range of each party index
 * (migration 4), newest first, so a party's page costs its own sessions,
 * never a walk of the table.
 */
export function listSessions(db: Db, filter: SessionFilter): SessionPage {
  const where = `sid < @after${filter.state ? ` AND ${stateSql(filter.state)}` : ''}`;
  const side = (column: string) => `SELECT * FROM (SELECT * FROM session WHERE ${column} = @party AND ${where} ORDER BY sid DESC LIMIT @limit)`;
  const sql = filter.party
    ? `${side('first_party')} UNION ALL ${side('second_party')} ORDER BY sid DESC LIMIT @limit`
    : `SELECT * FROM session WHERE ${where} ORDER BY sid DESC LIMIT @limit`;
  const rows = db.prepare<Record<string, unknown>, SessionRow>(sql).all({
    party: filter.party ?? null,
    now: filter.now,
    after: filter.after ?? Number.MAX_SAFE_INTEGER,
    limit: filter.limit + 1,
  });
  const more = rows.length > filter.limit;
  const page = rows.slice(0, filter.limit);
  return { sessions: page.map((r) => toSession(r, filter.now)), more, next: more ? page.at(-1)!.sid : undefined };
}

/**
 * Sliding TTL: a bridged call's activity (routed, ended, or still in
 * progress) pushes a sliding session's end to `at` + its idle timeout, never
 * past its TTL (the hard maximum), never backwards. Called on the write path
 * (`vnum serve`'s call log), never by the routing decision. A released
 * session is never pushed: release wins over activity. An ended one is never
 * revived: expiry stays what the router judged at lookup time. With
 * `keepAlive` (a call still in progress, checked every half second), it
 * writes only once the end is less than half an idle timeout away. True when
 * it pushed.
 */
export function touchSession(db: Db, id: string, at: number, keepAlive = false): boolean {
  const s = statements(db);
  // Most sessions are not sliding: a plain read, no write lock.
  if (slidePlan(s.byId.get(id), at, keepAlive) === undefined) return false;
  return writeTransaction(db, () => {
    const row = s.byId.get(id);
    const end = slidePlan(row, at, keepAlive);
    if (row === undefined || end === undefined) return false;
    if (s.slide.run(end, row.sid, row.ends_at).changes !== 1) return false;
    s.endBridge.run(end, row.second_party, row.first_masked_as, row.sid);
    s.endBridge.run(end, row.first_party, row.second_masked_as, row.sid);
    // The webhook deliverer reports session.ended at the tracked end: move it with the session's.
    if (isRecording(db)) {
      if (row.ends_at !== null) untrackSessionEnd(db, row.id, row.ends_at);
      trackSessionEnd(db, row.id, end);
    }
    return true;
  });
}

/** What the sliding rule reads of a session's row. */
export type SlideRow = Pick<SessionRow, 'idle_ms' | 'released_at' | 'ends_at' | 'expires_at'>;

/**
 * The sliding TTL's rule (pure; touchSession on a single box and the push a
 * cluster node sends to the authority both apply it to the row they hold):
 * the end a session's activity at \`at\` moves it to, or undefined when it
 * moves nothing. Only a sliding session (an idle timeout) moves; a released
 * one never (release wins over activity); an ended one is never revived; the
 * end goes to \`at\` + idle, never past the TTL, never backwards. With
 * \`keepAlive\` (a call still in progress), only once the end is less than
 * half an idle timeout away: a long call writes once per half idle timeout.
 */
export function slidePlan(row: SlideRow | undefined, at: number, keepAlive = false): number | undefined {
  if (!row || row.idle_ms === null || row.released_at !== null || !isLive(row.ends_at, at)) return undefined;
  const end = slidEnd(row.expires_at, row.idle_ms, at);
  return end - (row.ends_at ?? -Infinity) > (keepAlive ? row.idle_ms / 2 : 0) ? end : undefined;
}
