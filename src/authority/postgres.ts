import type pg from 'pg';
import { checkKey, keyNameTaken, lastUseDue, newApiKey, noSuchKey, parseToken, toKey, type KeyRow } from '../access/api-keys.js';
import { ErrorCode, VnumError } from '../errors.js';
import { redactNumber } from '../log.js';
import type { E164 } from '../numbers/normalise.js';
import { numberTypeCode } from '../numbers/type.js';
import type { PoolState } from '../pool/pool.js';
import type { PgTarget } from '../replica/stream.js';
import { decideRoute, type BridgeLookup } from '../routing/decide.js';
import { liveBridgeOf, type RouteBridgeRow } from '../routing/lookup.js';
import { poolView, type PoolCandidate, type PoolView } from '../session/allocate.js';
import { DEFAULT_PIN_GUESS_BOUND, noFreePin, PIN_SWEEP, PIN_TRIES, pinDigest, pinDigits, randomPin } from '../session/pin.js';
import {
  allocate,
  checkCreate,
  checkRelease,
  createdSession,
  refusePoolParties,
  releasePlan,
  retried,
  sessionEnds,
  toSession,
  validateSessionId,
  type CreateResult,
  type CreateSessionInput,
  type PartyBridgeRow,
  type SessionRow,
} from '../session/sessions.js';
import { liveSql, SESSION_STATES, stateSql } from '../session/state.js';
import { sessionEvent } from '../session/events.js';
import { newEventId } from '../webhooks/outbox.js';
import { pgSessionReleased } from './pg-webhooks.js';
import type { Stats } from '../stats.js';
import type { Authority, StoreCheck } from './authority.js';
import { PgStore, positional, RetryTransaction, type PgStoreOptions } from './pg-store.js';
import { pgPoolFaces } from './pg-pool.js';
import { listShippedCalls, openShippedCallCount, routerReports, someRouterWatching } from './pg-calls.js';

/**
 * The authority on PostgreSQL (cluster mode): what `vnum api --authority`
 * and `vnum apikey --authority` run on. Stateless: every fact is in the
 * database, so any number of API processes share one, and one killed loses
 * nothing that was acknowledged (a create answers only after its COMMIT).
 *
 * The allocation invariant (no caller with two live bridges on one dialled
 * number) is held by PostgreSQL, not by this process: the bridge's primary
 * key is the pair (caller, dialled), and a create takes a pair's row only by
 *   INSERT ... ON CONFLICT (caller, dialled) DO UPDATE ... WHERE bridge.ends_at <= lent_at
 * which, under READ COMMITTED, waits for any transaction holding that row
 * and judges the condition on the row as committed. Zero rows: the pair is
 * live in a session another create committed since this one read the
 * party's bridges; the transaction is rolled back and run again from its
 * reads (PgStore.transaction), so it allocates around it, or finds the pool
 * exhausted. Creates of one id race to the session's unique id: the loser's
 * INSERT fails (23505), runs again, and finds the session (idempotency).
 *
 * Pool changes and creates: a create holds a shared transaction-level
 * advisory lock, a pool change (add, retire, sync) the exclusive one, so a
 * create never lends a number retired while it ran and a party's real
 * number never enters the pool while a session is made for it, as under
 * SQLite's write lock; creates do not wait for each other.
 *
 * The webhook outbox is here too (src/authority/pg-webhooks.ts): a create
 * and a release write their events in their own transactions, as on a
 * single box. Written on each PBX node (`vnum serve`) and shipped here
 * asynchronously by `vnum serve --authority`: the call log, the routers'
 * reports and the calls' webhook events (./pg-calls.ts reads them; a node's
 * sliding pushes come here too, through ./pg-slide.ts). What a node has not
 * shipped yet (cut off, or PostgreSQL down) is missing from the answers
 * until it has. A
 * release with hangup writes its request on the session's row
 * (`hangup_requested_at`), which replication brings to every node; each
 * node's `vnum serve` hangs up its own calls of the session that started
 * at or before it (src/calls/store.ts, callsToHangUp).
 */

/** The advisory lock key pool changes take exclusively and creates shared. */
export const POOL_LOCK = 0x766e756d; // 'vnum'

export async function openPostgresAuthority(target: PgTarget, options: PgStoreOptions = {}): Promise<Authority> {
  const store = new PgStore(target, options);
  try {
    await store.checkSchema();
  } catch (error) {
    await store.close();
    throw error;
  }
  let creates = 0;
  let poolCache: { revision: number; view: PoolView } | undefined;
  let pinKey: Buffer | undefined;

  const currentPool = async (c: pg.ClientBase, revision: number): Promise<PoolView> => {
    if (poolCache?.revision === revision) return poolCache.view;
    const { rows } = await c.query<PoolCandidate>('SELECT number, state FROM pool_number');
    poolCache = { revision, view: poolView(rows) };
    return poolCache.view;
  };
  const key = async (c: pg.ClientBase): Promise<Buffer> => {
    if (pinKey) return pinKey;
    const { rows } = await c.query<{ key: Buffer }>('SELECT key FROM pin_key WHERE id = 1');
    if (!rows[0]) throw new VnumError(ErrorCode.DatabaseVersion, `the authority ${store.name} has no PIN key: run vnum cluster migrate`);
    return (pinKey = rows[0].key);
  };

  const createSession = async (input: CreateSessionInput): Promise<CreateResult> => {
    const callSettings = checkCreate(input);
    return store.transaction(
      async (c) => {
        const { first, second, now } = input;
        // After the pool lock (its own statement: a statement reads what was committed when it began).
        const { rows: read } = await c.query<{ revision: number; existing: SessionRow | null; bridges: Array<PartyBridgeRow & { caller: string }> }>({
          name: 'vnum_create_read',
          text: CREATE_READ_SQL,
          values: [input.id, [first.number, second.number]],
        });
        const { revision, existing, bridges } = read[0]!;
        if (existing) return retried(existing, input);
        const pool = await currentPool(c, revision);
        refusePoolParties(pool, input);
        const of = (party: E164) => bridges.filter((b) => b.caller === party);
        // first is masked as what second dials to reach first, and the other way round.
        const firstMaskedAs = allocate(of(second.number), pool, { dialler: second, target: first.number, requested: first.maskedAs, now });
        const secondMaskedAs = allocate(of(first.number), pool, { dialler: first, target: second.number, requested: second.maskedAs, now });
        const { expiresAt, endsAt } = sessionEnds(input);
        // session.created goes into the write statement (written only while recording is on); its data has no PIN.
        const created = sessionEvent('session.created', createdSession(input, { firstMaskedAs, secondMaskedAs, expiresAt, endsAt, callSettings, pins: ['', ''] }), now);
        const { rows: wrote } = await c.query<{ sid: number; lent: number; pins_first: number; pins_second: number }>({
          name: 'vnum_create_write',
          text: CREATE_WRITE_SQL,
          values: [
            input.id, first.number, firstMaskedAs, second.number, secondMaskedAs, now, expiresAt, endsAt, input.idleMs ?? null, callSettings,
            numberTypeCode(first.type), numberTypeCode(second.type), newEventId(), JSON.stringify(created.data),
          ],
        });
        const { sid, lent, pins_first: pinsOnFirstMasked, pins_second: pinsOnSecondMasked } = wrote[0]!;
        if (lent !== 2) throw new RetryTransaction('a number was lent to the same caller by a concurrent create');
        // Each party's PIN is for the number it dials: the other party's masked number. The tally already counts
        // this create's PINs; as on the single box, the first is judged without the second when both are on one number.
        const bound = input.pinGuessBound ?? DEFAULT_PIN_GUESS_BOUND;
        const pins = await issuePins(c, await key(c), sid, [
          { dialled: secondMaskedAs, caller: first.number, digits: pinDigits(pinsOnSecondMasked - (firstMaskedAs === secondMaskedAs ? 2 : 1), bound) },
          { dialled: firstMaskedAs, caller: second.number, digits: pinDigits(pinsOnFirstMasked - 1, bound) },
        ]);
        creates++;
        return { session: createdSession(input, { firstMaskedAs, secondMaskedAs, expiresAt, endsAt, callSettings, pins }), created: true };
      },
      { begin: `BEGIN; SELECT pg_advisory_xact_lock_shared(${POOL_LOCK})` },
    );
  };

  const sessionById = async (id: string, now: number) => {
    const { rows } = await store.query<SessionRow>({ name: 'vnum_session_by_id', text: 'SELECT * FROM session WHERE id = $1', values: [id] });
    return rows[0] ? toSession(rows[0], now) : undefined;
  };

  return {
    createSession,
    getSession: async (id, now) => {
      const session = await sessionById(validateSessionId(id), now);
      if (!session) throw new VnumError(ErrorCode.SessionNotFound, `no session "${id}"`);
      return session;
    },
    listSessions: async (filter) => {
      const where = `sid < @after${filter.state ? ` AND ${stateSql(filter.state)}` : ''}`;
      const side = (column: string) => `(SELECT * FROM session WHERE ${column} = @party AND ${where} ORDER BY sid DESC LIMIT @limit)`;
      const sql = filter.party
        ? `${side('first_party')} UNION ALL ${side('second_party')} ORDER BY sid DESC LIMIT @limit`
        : `SELECT * FROM session WHERE ${where} ORDER BY sid DESC LIMIT @limit`;
      const query = positional(sql, { party: filter.party ?? null, now: filter.now, after: filter.after ?? Number.MAX_SAFE_INTEGER, limit: filter.limit + 1 });
      const { rows } = await store.query<SessionRow>(query.text, query.values);
      const more = rows.length > filter.limit;
      const page = rows.slice(0, filter.limit);
      return { sessions: page.map((r) => toSession(r, filter.now)), more, next: more ? page.at(-1)!.sid : undefined };
    },
    releaseSession: async (id, graceMs, now, { hangup }) => {
      checkRelease(id, graceMs, now);
      return store.transaction(async (c) => {
        const { rows } = await c.query<SessionRow>('SELECT * FROM session WHERE id = $1 FOR UPDATE', [id]);
        const row = rows[0];
        const plan = releasePlan(id, row, graceMs, now);
        // The hang-up request goes on the session's row, in the release's transaction, as on a single box it
        // marks the calls; asked again (a second release with hangup), it moves forward, never back.
        const request = hangup ? { at: now, calls: undefined } : undefined;
        if (request) await c.query('UPDATE session SET hangup_requested_at = GREATEST(hangup_requested_at, $1) WHERE sid = $2', [now, row!.sid]);
        if (!plan.changed) return { ...plan, hangup: request };
        const endsAt = plan.session.endsAt!;
        await c.query('UPDATE session SET released_at = $1, ends_at = $2 WHERE sid = $3', [plan.session.releasedAt, endsAt, row!.sid]);
        // The pair rows still belong to this session: a live session's rows cannot pass to another.
        await c.query(
          `UPDATE bridge SET ends_at = $1 WHERE sid = $2 AND ((caller = $3 AND dialled = $4) OR (caller = $5 AND dialled = $6))`,
          [endsAt, row!.sid, row!.second_party, row!.first_masked_as, row!.first_party, row!.second_masked_as],
        );
        // session.released and the end's tracking, after the session's row lock (the lock order of ./pg-webhooks.ts).
        await pgSessionReleased(c, plan.before, plan.session, now);
        return { session: plan.session, changed: true, hangup: request };
      });
    },

    ...pgPoolFaces(store, POOL_LOCK),

    decideRoute: (call, now, routeOptions) => decideOnAuthority(store, call, now, routeOptions),

    // The nodes' call logs as they shipped them (./pg-calls.ts): ids are the authority's, unique across nodes.
    listCalls: async (filter, now) => {
      const [page, watching] = await Promise.all([listShippedCalls(store, filter), someRouterWatching(store, now)]);
      return { calls: page.calls, next: page.next, watching };
    },
    openCallCount: (ids) => openShippedCallCount(store, ids),

    collectStats: (now) => collectStats(store, now),
    checkStore: async (routersSince) => {
      const check: StoreCheck = { ok: false, location: `postgres://${store.name}`, schemaVersion: null, error: null, routers: undefined };
      try {
        const { rows } = await store.query<{ version: number }>('SELECT version FROM vnum_schema');
        check.schemaVersion = rows[0]?.version ?? null;
        // Every node's routers, as each node's vnum serve --authority ships their reports.
        check.routers = await routerReports(store, routersSince);
        check.ok = true;
      } catch (error) {
        check.error = (error as Error).message;
        check.code = error instanceof VnumError ? error.code : ErrorCode.Database;
      }
      return check;
    },

    createApiKey: async (input) => {
      const made = newApiKey(input);
      return store.transaction(async (c) => {
        const { rows } = await c.query('SELECT 1 FROM api_key WHERE name = $1 AND revoked_at IS NULL', [input.name]);
        if (rows.length > 0) throw keyNameTaken(input.name);
        const r = made.row;
        await c.query('INSERT INTO api_key (id, name, scopes, secret_sha256, created_at) VALUES ($1, $2, $3, $4, $5)', [r.id, r.name, r.scopes, r.secret_sha256, r.created_at]);
        return { key: made.key, token: made.token };
      });
    },
    listApiKeys: async () => (await store.query<KeyRow>('SELECT * FROM api_key ORDER BY created_at, id')).rows.map(toKey),
    revokeApiKey: (idOrName, now) =>
      store.transaction(async (c) => {
        const row =
          (await c.query<KeyRow>('SELECT * FROM api_key WHERE id = $1 FOR UPDATE', [idOrName])).rows[0] ??
          (await c.query<KeyRow>('SELECT * FROM api_key WHERE name = $1 AND revoked_at IS NULL FOR UPDATE', [idOrName])).rows[0];
        if (!row) throw noSuchKey(idOrName);
        if (row.revoked_at !== null) return { key: toKey(row), changed: false };
        await c.query('UPDATE api_key SET revoked_at = $1 WHERE id = $2', [now, row.id]);
        return { key: toKey({ ...row, revoked_at: now }), changed: true };
      }),
    verifyApiKey: async (token, now) => {
      const parsed = parseToken(token);
      if (!parsed) return { ok: false, reason: 'malformed' };
      const { rows } = await store.query<KeyRow>({ name: 'vnum_api_key', text: 'SELECT * FROM api_key WHERE id = $1', values: [parsed.id] });
      const row = rows[0];
      const check = checkKey(row, parsed.secret);
      if (check.ok && lastUseDue(row!, now)) {
        // At most once a minute per key, and never racing backwards.
        await store.query('UPDATE api_key SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)', [now, row!.id]);
        return { ok: true, key: toKey({ ...row!, last_used_at: now }) };
      }
      return check;
    },

    close: () => store.close(),
    commitStats: () => ({ creates, transactions: creates }),
  };
}

/** The two PINs of a new session, unique on their numbers (src/session/pin.ts's rules), in one statement (again for a clash). */
async function issuePins(c: pg.ClientBase, key: Buffer, sid: number, wanted: Array<{ dialled: E164; caller: E164; digits: number }>): Promise<[string, string]> {
  const pins: Array<string | undefined> = [undefined, undefined];
  for (let attempt = 0; attempt < PIN_TRIES; attempt++) {
    const todo = wanted.map((w, i) => ({ ...w, i, pin: randomPin(w.digits) })).filter((w) => pins[w.i] === undefined);
    if (todo.length === 0) break;
    const digests = todo.map((w) => pinDigest(key, w.pin));
    const { rows } = await c.query<{ dialled: string; digest: Buffer }>(
      `INSERT INTO pin (dialled, digest, caller, sid) SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[], $4::bigint[])
       ON CONFLICT (dialled, digest) DO NOTHING RETURNING dialled, digest`,
      [todo.map((w) => w.dialled), digests, todo.map((w) => w.caller), todo.map(() => sid)],
    );
    todo.forEach((w, j) => {
      if (rows.some((r) => r.dialled === w.dialled && r.digest.equals(digests[j]!))) pins[w.i] = w.pin;
    });
  }
  const missing = pins.findIndex((p) => p === undefined);
  if (missing !== -1) throw noFreePin(wanted[missing]!.digits, wanted[missing]!.dialled);
  return pins as [string, string];
}

/** A create's reads, after the pool lock: the pool's revision, a session under the id, both parties' bridge rows. */
const CREATE_READ_SQL = `SELECT (SELECT value FROM meta WHERE key = 'pool_revision') AS revision,
         (SELECT to_jsonb(s) FROM session s WHERE id = $1) AS existing,
         (SELECT coalesce(jsonb_agg(jsonb_build_object('caller', caller, 'dialled', dialled, 'target', target, 'lent_at', lent_at, 'ends_at', ends_at)), '[]')
            FROM bridge WHERE caller = ANY($2)) AS bridges`;

/**
 * A create's writes in one statement: the session, its two bridges (the
 * invariant's guard: a pair's row passes to this session only if its old
 * session has ended; \`lent\` counts the rows taken), and the sweep of each
 * masked number's PINs (src/session/pin.ts: the next PIN_SWEEP rows after
 * the tally's cursor, those of ended sessions deleted), with the tally
 * moved by what was deleted and the PINs this create will issue on it
 * (one per party; a create that cannot issue them rolls back). \`pins\` is
 * what a new PIN's length is judged by. The sweep sees the bridges as they
 * were before this statement, which is the same for it: a bridge this
 * create takes over had ended. Two creates on one number queue on its tally
 * row (read committed: the second adds to what the first committed).
 * While webhook recording is on (read by this statement: an event is never
 * lost to a stale cache), session.created ($13 its id, $14 its data) and the
 * session's end for session.ended (src/authority/pg-webhooks.ts) are written
 * too. The event is 'pending' without the lane lock or check appends
 * otherwise take (src/webhooks/pg-outbox.ts): a session id is taken by one
 * session only (sessions are never deleted) and no other transaction can
 * append to a session before this one commits it, so its lane is empty.
 */
const CREATE_WRITE_SQL = `WITH s AS (
    INSERT INTO session (id, first_party, first_masked_as, second_party, second_masked_as, created_at, expires_at, ends_at, idle_ms, call_settings)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING sid
  ), b AS (
    INSERT INTO bridge (caller, dialled, sid, target, target_type, lent_at, ends_at)
    SELECT v.caller, v.dialled, s.sid, v.target, v.target_type, $6, $8
      FROM s, (VALUES ($4::text, $3::text, $2::text, $11::integer), ($2::text, $5::text, $4::text, $12::integer)) AS v (caller, dialled, target, target_type)
    ON CONFLICT (caller, dialled) DO UPDATE
      SET sid = excluded.sid, target = excluded.target, target_type = excluded.target_type, lent_at = excluded.lent_at, ends_at = excluded.ends_at
      WHERE bridge.ends_at <= excluded.lent_at
    RETURNING 1
  ), recording AS (
    SELECT 1 FROM webhook_outbox WHERE recording_since > 0
  ), created_event AS (
    INSERT INTO webhook_event (id, type, session_id, occurred_at, recorded_at, data, state, next_at)
    SELECT $13, 'session.created', $1, $6, $6, $14, 'pending', $6 FROM recording
    RETURNING 1
  ), tracked_end AS (
    INSERT INTO webhook_session_end (ends_at, session_id) SELECT $8, $1 FROM recording WHERE $8::bigint IS NOT NULL
    ON CONFLICT DO NOTHING RETURNING 1
  ), numbers AS (
    SELECT n.dialled, count(*)::int AS issuing, t.pins, t.swept_to
      FROM (VALUES ($3::text), ($5::text)) AS n (dialled) LEFT JOIN pin_tally t ON t.dialled = n.dialled
     GROUP BY n.dialled, t.pins, t.swept_to
  ), look AS (
    SELECT n.dialled, l.digest, l.caller, l.sid, l.ord
      FROM numbers n CROSS JOIN LATERAL (
        SELECT p.digest, p.caller, p.sid, row_number() OVER (ORDER BY p.digest) AS ord
          FROM pin p WHERE p.dialled = n.dialled AND p.digest > coalesce(n.swept_to, '\\x'::bytea)
         ORDER BY p.digest LIMIT ${PIN_SWEEP}) AS l
  ), gone AS (
    DELETE FROM pin USING look
     WHERE pin.dialled = look.dialled AND pin.digest = look.digest AND NOT EXISTS (
       SELECT 1 FROM bridge g WHERE g.caller = pin.caller AND g.dialled = pin.dialled AND g.sid = pin.sid AND (g.ends_at IS NULL OR g.ends_at > $6))
    RETURNING pin.dialled
  ), tally AS (
    INSERT INTO pin_tally AS t (dialled, pins, swept_to)
    SELECT n.dialled, n.issuing, (SELECT l.digest FROM look l WHERE l.dialled = n.dialled AND l.ord = ${PIN_SWEEP})
      FROM numbers n ORDER BY n.dialled
    ON CONFLICT (dialled) DO UPDATE
      SET pins = t.pins + excluded.pins - (SELECT count(*) FROM gone WHERE gone.dialled = t.dialled), swept_to = excluded.swept_to
    RETURNING t.dialled, t.pins
  )
  SELECT (SELECT sid FROM s) AS sid, (SELECT count(*) FROM b)::int AS lent,
         (SELECT pins FROM tally WHERE dialled = $3) AS pins_first, (SELECT pins FROM tally WHERE dialled = $5) AS pins_second`;

/** A pair's bridge with its session, as the router reads it (src/routing/lookup.ts), on PostgreSQL. */
const ROUTE_ROW_SQL = `SELECT b.target, CASE WHEN b.caller = s.first_party THEN s.first_masked_as ELSE s.second_masked_as END AS "presentedCallerId",
         s.id AS session, b.ends_at AS "endsAt", b.target_type AS "targetTypeCode", s.call_settings AS "callSettings", s.idle_ms AS "idleMs"
    FROM bridge b JOIN session s ON s.sid = b.sid WHERE b.caller = $1 AND b.dialled = $2`;

class NotRead {
  constructor(readonly bridges: Array<[E164, E164]>, readonly numbers: E164[]) {}
}

/**
 * The router's decision from the authority's rows: src/routing/decide.ts
 * runs unchanged over what was read; a key it asks for that was not read yet
 * stops it, the key is read, and it runs again (it is pure). Two rounds for
 * a typical call (the pair, then the pool number). PINs and out-of-session
 * handling are the node's (its call path), as with a single box's API.
 */
async function decideOnAuthority(store: PgStore, call: Parameters<Authority['decideRoute']>[0], now: number, options: Parameters<Authority['decideRoute']>[2]) {
  const rows = new Map<string, RouteBridgeRow | undefined>();
  const inPool = new Map<string, boolean>();
  for (let round = 0; round < 8; round++) {
    const lookup: BridgeLookup = {
      live: (caller, dialled) => {
        const k = `${caller} ${dialled}`;
        if (!rows.has(k)) throw new NotRead([[caller, dialled]], []);
        return liveBridgeOf(rows.get(k));
      },
      latestSession: (caller, dialled) => lookup.live(caller, dialled)?.session,
      liveReturnsLatest: true,
      isPoolNumber: (number) => {
        if (!inPool.has(number)) throw new NotRead([], [number]);
        return inPool.get(number)!;
      },
    };
    try {
      return decideRoute(call, now, lookup, options);
    } catch (error) {
      if (!(error instanceof NotRead)) throw error;
      for (const [caller, dialled] of error.bridges) {
        rows.set(`${caller} ${dialled}`, (await store.query<RouteBridgeRow>(ROUTE_ROW_SQL, [caller, dialled])).rows[0]);
      }
      for (const number of error.numbers) {
        inPool.set(number, (await store.query('SELECT 1 FROM pool_number WHERE number = $1', [number])).rows.length > 0);
      }
    }
  }
  throw new VnumError(ErrorCode.Internal, 'the routing decision kept asking for rows');
}

/** src/stats.ts's figures, in PostgreSQL's SQL. */
async function collectStats(store: PgStore, now: number): Promise<Stats> {
  const pool = { available: 0, reserved: 0, retired: 0, total: 0 };
  for (const row of (await store.query<{ state: PoolState; n: number }>('SELECT state, count(*)::int AS n FROM pool_number GROUP BY state')).rows) {
    pool[row.state] = row.n;
    pool.total += row.n;
  }
  const counts = positional(
    `SELECT ${SESSION_STATES.map((state) => `count(*) FILTER (WHERE ${stateSql(state)})::int AS ${state}`).join(', ')} FROM session`,
    { now },
  );
  const sessions = (await store.query<Stats['sessions']>(counts.text, counts.values)).rows[0]!;
  const busiest = positional(
    `SELECT party, count(*)::int AS n FROM (
       SELECT first_party AS party FROM session WHERE ${liveSql()}
       UNION ALL
       SELECT second_party FROM session WHERE ${liveSql()}
     ) parties GROUP BY party ORDER BY n DESC, party COLLATE "C" LIMIT 1`,
    { now },
  );
  const top = (await store.query<{ party: string; n: number }>(busiest.text, busiest.values)).rows[0];
  return {
    pool,
    sessions,
    busiestParty: { number: top ? redactNumber(top.party) : null, liveSessions: top?.n ?? 0, poolAvailable: pool.available },
  };
}
