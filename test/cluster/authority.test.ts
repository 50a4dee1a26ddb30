/**
 * Cluster mode's authority: the HTTP API's store on PostgreSQL
 * (src/authority/postgres.ts). One contract runs over both authorities, the
 * single box's SQLite and PostgreSQL, and their answers must agree: creates
 * (allocation, sticky numbers, PINs), idempotency and conflicts, reads,
 * pages, release, the pool and a sync, API keys, the routing decision and
 * the figures. Then the cluster's own promises, with real processes: two
 * `vnum api --authority` on one database creating concurrently for
 * overlapping parties from a small pool never give a caller two live
 * bridges on one number, and every 201 is in PostgreSQL; one of them killed
 * with SIGKILL mid-burst loses nothing it acknowledged; PostgreSQL stopped
 * answers 503 VNUM_AUTHORITY_UNAVAILABLE, and creates succeed once it is back.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Authority } from '../../src/authority/authority.js';
import { positional } from '../../src/authority/pg-store.js';
import { openPostgresAuthority } from '../../src/authority/postgres.js';
import { openSqliteAuthority } from '../../src/authority/sqlite.js';
import { ErrorCode, VnumError } from '../../src/errors.js';
import type { E164 } from '../../src/numbers/normalise.js';
import type { PgTarget } from '../../src/replica/stream.js';
import { storeBridgeLookup } from '../../src/routing/lookup.js';
import { openDb } from '../../src/store/db.js';
import { invariantSql, type InvariantViolation } from '../../src/session/invariant.js';
import { pinDigest } from '../../src/session/pin.js';
import { partyInput, type CreateSessionInput } from '../../src/session/sessions.js';
import { migratePg } from '../../src/store/pg/migrate.js';
import { ApiClient, expectProblem, startApi, type ApiProcess } from '../support/api.js';
import { vnum } from '../support/cli.js';
import { audit, barrier, routeFrom, sleep } from '../support/cluster/checks.js';
import { startNode } from '../support/cluster/node.js';
import { clusterSuite } from '../support/cluster/suite.js';
import { pinSweepScenario } from '../support/pin-sweep.js';
import { DIDS, partyNumber } from '../support/cluster/writer.js';

const T0 = Date.UTC(2026, 10, 30, 12);
const url = (t: PgTarget): string => `postgres://${t.user}@${t.host}:${t.port}/${t.database}`;
const quietEnv = { VNUM_LOG_LEVEL: undefined, VNUM_LOG_REDACT: undefined, VNUM_DB: undefined, VNUM_AUTHORITY: undefined };

function input(id: string, first: string, second: string, now: number, extra: Partial<CreateSessionInput> = {}): CreateSessionInput {
  return { id, first: partyInput(first, undefined, 'GB'), second: partyInput(second, undefined, 'GB'), now, ...extra };
}

async function failure(promise: Promise<unknown>): Promise<VnumError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof VnumError) return error;
    throw error;
  }
  throw new Error('expected a VnumError, the call succeeded');
}

/** The invariant on PostgreSQL, from the sessions themselves (src/session/invariant.ts's audit, in PostgreSQL's SQL). */
async function violations(client: pg.Client, now: number): Promise<InvariantViolation[]> {
  const query = positional(invariantSql('postgres'), { now });
  return (await client.query<InvariantViolation>(query.text, query.values)).rows;
}

/**
 * The contract: one scenario, run on an authority, returning what it saw
 * (errors as their codes). Run on both, the transcripts must be equal, and
 * each step's expectation holds on each.
 */
async function contract(authority: Authority, readPin: (dialled: string, digest: Buffer) => Promise<boolean>, pinKey: () => Promise<Buffer>): Promise<unknown[]> {
  const seen: unknown[] = [];
  const code = async (p: Promise<unknown>) => (await failure(p)).code;
  const A = partyNumber(1);
  const B = partyNumber(2);
  const C = partyNumber(3);
  const pool = DIDS.slice(0, 3);

  seen.push(await authority.addToPool(pool.map((number) => ({ number })), { defaultCountry: 'GB', now: T0, rule: 'operator' }));
  expect(await code(authority.addToPool([{ number: 'not a number' }], { defaultCountry: 'GB', now: T0, rule: 'operator' }))).toBe(ErrorCode.InvalidNumber);

  // A create, and its retry.
  const first = await authority.createSession(input('s1', A, B, T0, { ttlMs: 3_600_000 }));
  expect(first.created).toBe(true);
  const [pa, pb] = first.session.parties;
  // The second PIN on a number that holds one already may need a seventh digit to keep a guess under one in a million.
  expect(pa.pin).toMatch(/^\d{6}$/);
  expect(pb.pin).toMatch(pb.maskedAs === pa.maskedAs ? /^\d{7}$/ : /^\d{6}$/);
  // The store holds the PIN's HMAC under its key, for the number its party dials, never the digits.
  expect(await readPin(pb.maskedAs, pinDigest(await pinKey(), pa.pin!))).toBe(true);
  seen.push({ ...first, session: { ...first.session, parties: first.session.parties.map(({ number, maskedAs }) => ({ number, maskedAs })) } });
  const again = await authority.createSession(input('s1', A, B, T0 + 1_000, { ttlMs: 3_600_000 }));
  expect(again.created).toBe(false);
  expect(again.session.parties.map((p) => p.maskedAs)).toEqual(first.session.parties.map((p) => p.maskedAs));
  expect(again.session.parties[0].pin).toBeUndefined();
  seen.push(again);
  const conflict = await failure(authority.createSession(input('s1', B, A, T0 + 1_000, { ttlMs: 3_600_000 })));
  expect(conflict.code).toBe(ErrorCode.SessionConflict);
  seen.push([conflict.code, conflict.details]);
  const ttl = await failure(authority.createSession(input('s1', A, B, T0 + 1_000, { ttlMs: 60_000 })));
  seen.push([ttl.code, ttl.details]);

  // Allocation: A in sessions with C then more: its numbers differ; the pool runs out for A at 3.
  seen.push((await authority.createSession(input('s2', A, C, T0 + 2_000))).session.parties.map((p) => p.maskedAs));
  seen.push((await authority.createSession(input('s3', A, partyNumber(4), T0 + 3_000))).session.parties.map((p) => p.maskedAs));
  const exhausted = await failure(authority.createSession(input('s4', A, partyNumber(5), T0 + 4_000)));
  expect(exhausted.code).toBe(ErrorCode.PoolExhausted);
  seen.push(exhausted.code);
  // Nothing of a refused create is written.
  expect(await code(authority.getSession('s4', T0 + 4_000))).toBe(ErrorCode.SessionNotFound);
  expect(await code(authority.createSession(input('s5', A, pool[0]!, T0 + 4_000)))).toBe(ErrorCode.PoolConflict);
  expect(await code(authority.createSession(input('s5', B, C, T0 + 4_000, { first: partyInput(B, DIDS[9], 'GB') })))).toBe(ErrorCode.NotInPool);
  expect(await code(authority.createSession(input('s5', A, A, T0 + 4_000)))).toBe(ErrorCode.InvalidArgument);
  expect(await code(authority.createSession(input('bad id!', A, B, T0 + 4_000)))).toBe(ErrorCode.InvalidArgument);
  expect(await code(authority.addToPool([{ number: A }], { defaultCountry: 'GB', now: T0, rule: 'operator' }))).toBe(ErrorCode.PoolConflict);

  // Reads: one session, a party's pages, a state.
  seen.push(await authority.getSession('s2', T0 + 5_000));
  expect(await code(authority.getSession('nope', T0))).toBe(ErrorCode.SessionNotFound);
  const page1 = await authority.listSessions({ party: A as E164, limit: 2, now: T0 + 5_000 });
  expect(page1.sessions.map((s) => s.id)).toEqual(['s3', 's2']);
  const page2 = await authority.listSessions({ party: A as E164, limit: 2, now: T0 + 5_000, after: page1.next });
  expect(page2.sessions.map((s) => s.id)).toEqual(['s1']);
  expect(page2.next).toBeUndefined();
  seen.push((await authority.listSessions({ state: 'active', limit: 10, now: T0 + 5_000 })).sessions.map((s) => s.id));

  // Release: grace, then a retry of the create is refused; the sticky number comes back for the pair.
  const released = await authority.releaseSession('s1', 60_000, T0 + 6_000, { hangup: false });
  expect(released).toMatchObject({ changed: true, hangup: undefined });
  expect(released.session.state).toBe('grace');
  seen.push(released);
  seen.push(await authority.releaseSession('s1', 120_000, T0 + 7_000, { hangup: false }));
  expect(await code(authority.createSession(input('s1', A, B, T0 + 8_000, { ttlMs: 3_600_000 })))).toBe(ErrorCode.SessionEnded);
  expect(await code(authority.releaseSession('nope', 0, T0, { hangup: false }))).toBe(ErrorCode.SessionNotFound);
  const later = T0 + 3_600_000;
  const sticky = await authority.createSession(input('s6', A, B, later));
  expect(sticky.session.parties.map((p) => p.maskedAs)).toEqual(first.session.parties.map((p) => p.maskedAs));
  seen.push(sticky.session.parties.map((p) => p.maskedAs));

  // A sliding session with call settings, and its retry with other settings.
  const shaped = await authority.createSession(input('s7', partyNumber(6), partyNumber(7), later, { ttlMs: 7_200_000, idleMs: 600_000, callSettings: { ringTimeoutMs: 30_000, record: true } }));
  seen.push({ ...shaped.session, parties: shaped.session.parties.map(({ number, maskedAs }) => ({ number, maskedAs })) });
  const otherSettings = await failure(authority.createSession(input('s7', partyNumber(6), partyNumber(7), later, { ttlMs: 7_200_000, idleMs: 600_000 })));
  seen.push([otherSettings.code, otherSettings.details]);
  // A pool number's handling of callers without a bridge.
  seen.push(await authority.setNumberHandling(pool[0]! as E164, { pin: 'all', outOfSession: 'fallback', fallback: '+442071234567' as E164 }));
  seen.push(await authority.setNumberHandling(pool[0]! as E164, { pin: 'all' }));
  seen.push(await authority.setNumberHandling(pool[0]! as E164, { fallback: null }));
  expect(await code(authority.setNumberHandling(DIDS[8]! as E164, { pin: 'off' }))).toBe(ErrorCode.NotInPool);
  expect(await code(authority.setNumberHandling(pool[0]! as E164, { fallback: pool[1]! as E164 }))).toBe(ErrorCode.PoolConflict);

  // Routing from the store, and the figures.
  const [a6, b6] = sticky.session.parties;
  seen.push(await authority.decideRoute({ caller: B, dialled: a6.maskedAs }, later + 1, { defaultCountry: 'GB' }));
  seen.push(await authority.decideRoute({ caller: partyNumber(9), dialled: b6.maskedAs }, later + 1, { defaultCountry: 'GB' }));
  seen.push(await authority.decideRoute({ caller: B, dialled: '+442079460999' }, later + 1, { defaultCountry: 'GB' }));
  seen.push(await authority.decideRoute({ caller: 'anonymous', dialled: b6.maskedAs }, later + 1, { defaultCountry: 'GB' }));
  seen.push(await authority.collectStats(later + 1));

  // The pool: retire, a page, a sync over its limit refused whole, a dry run.
  seen.push(await authority.retireNumber(pool[2]! as E164));
  seen.push(await authority.retireNumber(pool[2]! as E164));
  expect(await code(authority.retireNumber(DIDS[8]! as E164))).toBe(ErrorCode.NotInPool);
  seen.push(await authority.listPool({ limit: 2 }));
  seen.push(await authority.listPool({ limit: 2, after: pool[1] }));
  const limited = await failure(authority.syncPool([{ number: DIDS[5]! }], { retireMissing: true, maxRetirePercent: 10, dryRun: false, now: later, defaultCountry: 'GB' }));
  expect(limited.code).toBe(ErrorCode.RetireLimit);
  seen.push(limited.details);
  seen.push(await authority.syncPool([{ number: DIDS[5]! }, ...pool.map((number) => ({ number }))], { retireMissing: false, maxRetirePercent: 10, dryRun: true, now: later, defaultCountry: 'GB' }));
  seen.push(await authority.syncPool([{ number: DIDS[5]! }, ...pool.slice(0, 2).map((number) => ({ number }))], { retireMissing: true, maxRetirePercent: 100, dryRun: false, now: later, defaultCountry: 'GB' }));
  seen.push(await authority.listPool({ limit: 10 }));

  // API keys.
  const made = await authority.createApiKey({ name: 'orders', scopes: ['sessions'], now: T0 });
  expect(made.token).toMatch(/^vnum_[0-9a-f]{16}_/);
  expect(await authority.verifyApiKey(made.token, T0 + 1)).toMatchObject({ ok: true, key: { name: 'orders', scopes: ['sessions'] } });
  expect(await authority.verifyApiKey(`${made.token.slice(0, -1)}x`, T0)).toEqual({ ok: false, reason: 'unknown' });
  expect(await authority.verifyApiKey('garbage', T0)).toEqual({ ok: false, reason: 'malformed' });
  expect(await code(authority.createApiKey({ name: 'orders', scopes: ['read'], now: T0 }))).toBe(ErrorCode.InvalidArgument);
  expect((await authority.listApiKeys()).map((k) => [k.name, k.lastUsedAt])).toEqual([['orders', T0 + 1]]);
  expect((await authority.revokeApiKey('orders', T0 + 2)).changed).toBe(true);
  expect((await authority.revokeApiKey(made.key.id, T0 + 3)).changed).toBe(false);
  expect(await authority.verifyApiKey(made.token, T0 + 4)).toEqual({ ok: false, reason: 'revoked' });
  expect(await code(authority.revokeApiKey('nobody', T0))).toBe(ErrorCode.ApiKeyNotFound);

  const check = await authority.checkStore(T0);
  expect(check).toMatchObject({ ok: true, error: null });
  expect(check.schemaVersion).toBeGreaterThan(0);
  return seen;
}

clusterSuite('the authority on PostgreSQL (cluster mode)', (env) => {
  it('keeps the single box\'s contract: the same answers as SQLite, step by step', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vnum-authority-'));
    const target = await env.cluster.createDatabase();
    const client = env.cluster.client(target);
    await client.connect();
    await migratePg(client);
    const sqlite = openSqliteAuthority(join(dir, 'vnum.db'));
    const postgres = await openPostgresAuthority(target);
    try {
      const file = openDb(join(dir, 'vnum.db'), { mode: 'write' });
      const onSqlite = await contract(
        sqlite,
        async (dialled, digest) => file.prepare('SELECT 1 FROM pin WHERE dialled = ? AND digest = ?').get(dialled, digest) !== undefined,
        async () => file.prepare('SELECT key FROM pin_key').pluck().get() as Buffer,
      );
      file.close();
      const onPostgres = await contract(
        postgres,
        async (dialled, digest) => (await client.query('SELECT 1 FROM pin WHERE dialled = $1 AND digest = $2', [dialled, digest])).rows.length === 1,
        async () => (await client.query<{ key: Buffer }>('SELECT key FROM pin_key')).rows[0]!.key,
      );
      expect(onPostgres).toEqual(onSqlite);
      expect(await violations(client, T0 + 3_600_001)).toEqual([]);
      // The call log on the authority is what the nodes ship (test/cluster/calls-authority.test.ts): none yet here.
      expect(await postgres.listCalls({ limit: 10 }, T0)).toEqual({ calls: [], next: undefined, watching: false });
      expect(await postgres.openCallCount([1])).toBe(0);
      // A release with hangup: the request on the session's row for the nodes, in the release's transaction; no calls known here.
      expect((await postgres.getSession('s6', T0 + 3_600_001)).releasedAt).toBeNull();
      const withHangup = await postgres.releaseSession('s6', 0, T0 + 3_600_002, { hangup: true });
      expect(withHangup).toMatchObject({ changed: true, hangup: { at: T0 + 3_600_002, calls: undefined } });
      const { rows: asked } = await client.query<{ released_at: string; hangup_requested_at: string }>("SELECT released_at, hangup_requested_at FROM session WHERE id = 's6'");
      expect(asked.map((r) => [Number(r.released_at), Number(r.hangup_requested_at)])).toEqual([[T0 + 3_600_002, T0 + 3_600_002]]);
      // Asked again on the ended session: written again, forward only (an API host whose clock is behind never moves it back).
      expect(await postgres.releaseSession('s6', 0, T0 + 3_600_009, { hangup: true })).toMatchObject({ changed: false, hangup: { at: T0 + 3_600_009 } });
      await postgres.releaseSession('s6', 0, T0 + 3_600_005, { hangup: true });
      const { rows: again } = await client.query<{ hangup_requested_at: string }>("SELECT hangup_requested_at FROM session WHERE id = 's6'");
      expect(Number(again[0]!.hangup_requested_at)).toBe(T0 + 3_600_009);
      expect((await postgres.checkStore(T0)).routers).toEqual([]);
    } finally {
      await sqlite.close();
      await postgres.close();
      await client.end();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a create\'s PIN purge is a bounded sweep on PostgreSQL too, and the tally stays the number\'s rows', async () => {
    const target = await env.cluster.createDatabase();
    const client = env.cluster.client(target);
    await client.connect();
    await migratePg(client);
    const postgres = await openPostgresAuthority(target);
    try {
      await pinSweepScenario(postgres, async (dialled) => ({
        rows: Number((await client.query('SELECT count(*) AS n FROM pin WHERE dialled = $1', [dialled])).rows[0].n),
        tally: (await client.query<{ pins: number }>('SELECT pins FROM pin_tally WHERE dialled = $1', [dialled])).rows[0]?.pins,
      }));
    } finally {
      await postgres.close();
      await client.end();
    }
  });

  it('what the authority writes reaches a node: its replica equals PostgreSQL, routes the session, and a PIN typed there opens it (the key is replicated)', async () => {
    const { target, client } = await env.authority();
    const authority = await openPostgresAuthority(target);
    const config = { db: join(env.dir, 'node-a.db'), target, node: 'a', statusEveryMs: 100 };
    const node = startNode(config);
    try {
      const now = Date.now();
      const made = await authority.createSession(input('pinned', partyNumber(400), partyNumber(401), now, { ttlMs: 3_600_000 }));
      await authority.createSession(input('released', partyNumber(402), partyNumber(403), now));
      await authority.releaseSession('released', 0, now + 1, { hangup: false });
      await barrier(client, [config.db]);
      const report = await audit(target, config.db);
      expect(report.equal, report.text).toBe(true);
      expect(report.tables.map((t) => t.table)).toEqual(['bridge', 'meta', 'pin', 'pin_key', 'pool_number', 'session']);
      const [first, second] = made.session.parties;
      expect(routeFrom(config.db, second.number, first.maskedAs)).toMatchObject({ status: 'BRIDGE', target: first.number, session: 'pinned' });
      const file = openDb(config.db, { readonly: true });
      try {
        const lookup = storeBridgeLookup(file);
        // The first party calls from another phone and types its PIN on the number it dials.
        expect(lookup.byPin(second.maskedAs, first.pin!)).toMatchObject({ target: second.number, session: 'pinned' });
        expect(lookup.byPin(second.maskedAs, '000000' === first.pin ? '000001' : '000000')).toBeUndefined();
      } finally {
        file.close();
      }
    } finally {
      await node.stop();
      await authority.close();
      await client.end();
    }
  });

  it('a real number never becomes a pool number while a session is made for it, nor the other way round, across two authorities', async () => {
    const { target, client } = await env.authority();
    const [one, two] = [await openPostgresAuthority(target), await openPostgresAuthority(target)];
    try {
      let both = 0;
      const outcomes = new Map<string, number>();
      for (let i = 0; i < 60; i++) {
        const party = partyNumber(700 + i);
        const now = Date.now();
        const [created, added] = await Promise.allSettled([
          one.createSession(input(`race-${i}`, party, partyNumber(900 + i), now)),
          two.addToPool([{ number: party }], { defaultCountry: 'GB', now, rule: 'operator' }),
        ]);
        if (created.status === 'fulfilled' && added.status === 'fulfilled') both++;
        const key = `${created.status === 'fulfilled' ? 'created' : (created.reason as VnumError).code}/${added.status === 'fulfilled' ? 'added' : (added.reason as VnumError).code}`;
        outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
      }
      // Exactly one of each pair stands: the other is refused as VNUM_POOL_CONFLICT.
      expect(both, JSON.stringify([...outcomes])).toBe(0);
      expect([...outcomes.keys()].every((k) => k === 'created/VNUM_POOL_CONFLICT' || k === 'VNUM_POOL_CONFLICT/added'), JSON.stringify([...outcomes])).toBe(true);
      const { rows } = await client.query('SELECT p.number FROM pool_number p JOIN bridge b ON b.caller = p.number');
      expect(rows).toEqual([]);
    } finally {
      await one.close();
      await two.close();
      await client.end();
    }
  });

  it('refuses to open a database without vnum\'s schema, or an address with no server, naming the fix', async () => {
    const bare = await env.cluster.createDatabase();
    const unmigrated = await failure(openPostgresAuthority(bare));
    expect(unmigrated.code).toBe(ErrorCode.DatabaseVersion);
    expect(unmigrated.message).toMatch(/schema version 0, this vnum needs \d+: run vnum cluster migrate/);
    const nowhere = await failure(openPostgresAuthority({ ...bare, port: 1 }, { timeoutMs: 1_000 }));
    expect(nowhere.code).toBe(ErrorCode.AuthorityUnavailable);
    expect(nowhere.message).toMatch(/cannot be reached/);
    const r = vnum(['api', '--authority', url(bare), '--port', '1'], quietEnv);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/run vnum cluster migrate.*\[VNUM_DATABASE_VERSION\]/);
    const down = vnum(['api', '--port', '1'], { ...quietEnv, VNUM_AUTHORITY: url({ ...bare, port: 1 }) });
    expect(down.code).toBe(2);
    expect(down.stderr).toMatch(/the authority postgres@127\.0\.0\.1:1\/\w+ cannot be reached.*\[VNUM_AUTHORITY_UNAVAILABLE\]/);
    const password = vnum(['api', '--authority', 'postgres://vnum:secret@127.0.0.1/vnum'], quietEnv);
    expect(password.code).toBe(1);
    expect(password.stderr).toMatch(/invalid --authority .*:\*\*\*@.*a password in the URL.*\[VNUM_CONFIGURATION\]/);
    expect(password.stderr).not.toMatch(/secret/);
  });

  describe('vnum api --authority, as processes', () => {
    let target: PgTarget;
    let client: pg.Client;
    let key: string;
    const dir = mkdtempSync(join(tmpdir(), 'vnum-authority-api-'));
    const running: ApiProcess[] = [];
    const start = async (): Promise<ApiProcess> => {
      const api = await startApi({ db: join(dir, 'unused.db'), env: { VNUM_AUTHORITY: url(target), VNUM_LOG_LEVEL: 'info' }, args: ['--rate-limit', '0'] });
      running.push(api);
      return api;
    };

    beforeAll(async () => {
      ({ target, client } = await env.authority()); // migrated, with the ten DIDS in the pool
      const made = vnum(['apikey', 'create', '--name', 'test', '--scope', 'admin', '--json', '--authority', url(target)], quietEnv);
      expect(made.code, made.stderr).toBe(0);
      key = JSON.parse(made.stdout).key;
    });
    afterAll(async () => {
      await Promise.all(running.splice(0).map((p) => p.stop('SIGKILL')));
      await client?.end();
      rmSync(dir, { recursive: true, force: true });
    });

    it('vnum apikey --authority makes, lists and revokes the keys the API checks; without --authority the SQLite file is used', async () => {
      const api = await start();
      const http = new ApiClient(api.url, key);
      expect((await http.get('/v1/sessions')).status).toBe(200);
      const made = vnum(['apikey', 'create', '--name', 'reader', '--scope', 'read', '--json'], { ...quietEnv, VNUM_AUTHORITY: url(target) });
      expect(made.code, made.stderr).toBe(0);
      const reader = http.withKey(JSON.parse(made.stdout).key);
      expect((await reader.get('/v1/pool')).status).toBe(200);
      expectProblem(await reader.post('/v1/sessions', { id: 'x', parties: [{ number: partyNumber(1) }, { number: partyNumber(2) }] }), 403, 'VNUM_FORBIDDEN');
      const listed = vnum(['apikey', 'list', '--json', '--authority', url(target)], quietEnv);
      expect(JSON.parse(listed.stdout).map((k: { name: string }) => k.name)).toEqual(['test', 'reader']);
      expect(vnum(['apikey', 'revoke', 'reader', '--authority', url(target)], quietEnv).code).toBe(0);
      expectProblem(await reader.get('/v1/pool'), 401, 'VNUM_UNAUTHORIZED');
      // Without --authority, the single box's file as ever: none was made by the cluster commands.
      const local = vnum(['--db', join(dir, 'local.db'), 'apikey', 'list', '--json'], quietEnv);
      expect(local.code).toBe(1);
      expect(local.stderr).toMatch(/no database at .*local\.db.*\[VNUM_DATABASE_NOT_FOUND\]/);
      // The nodes' call logs and routers' reports as they ship them (test/cluster/calls-authority.test.ts): none here, no node runs.
      const calls = await http.get('/v1/calls');
      expect(calls.status).toBe(200);
      expect(calls.body).toEqual({ calls: [], next: null, watching: false });
      const health = await http.get<{ healthy: boolean; database: { ok: boolean }; routers: unknown[] }>('/v1/health');
      expect(health.status).toBe(503);
      expect(health.body).toMatchObject({ healthy: false, database: { ok: true }, routers: [] });
      expect((await http.get('/v1/ready', { key: null })).body).toEqual({ ready: true });
    });

    it('two API processes, concurrent creates for overlapping parties from a small pool: no caller gets two live bridges on one number, every 201 is in PostgreSQL', async () => {
      const apis = [await start(), await start()];
      const clients = apis.map((api) => new ApiClient(api.url, key));
      // Six hub parties, each in sessions with many others, from a pool of ten: allocations race for the same pairs.
      const hubs = Array.from({ length: 6 }, (_, i) => partyNumber(100 + i));
      const answered = new Map<string, string[]>();
      const statuses = new Map<number, number>();
      let n = 0;
      const worker = async (http: ApiClient, w: number): Promise<void> => {
        for (let i = 0; i < 40; i++) {
          const id = `c-${w}-${i}`;
          const hub = hubs[(w + i) % hubs.length]!;
          const other = i % 3 === 0 ? hubs[(w + i + 1) % hubs.length]! : partyNumber(1_000 + (n++ % 25));
          const response = await http.post('/v1/sessions', { id, parties: [{ number: hub }, { number: other }], ttl: '1h' });
          statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
          if (response.status === 201) {
            answered.set(id, (response.body as { parties: Array<{ maskedAs: string }> }).parties.map((p) => p.maskedAs));
            // Every other session ends at once: its pairs' rows pass to later creates, racing each other for them.
            if (i % 2 === 0) expect((await http.post(`/v1/sessions/${id}/release`, { grace: '0s' })).status).toBe(200);
          } else expect([409, 503], JSON.stringify(response.body)).toContain(response.status);
        }
      };
      await Promise.all(Array.from({ length: 12 }, (_, w) => worker(clients[w % 2]!, w)));
      // Each hub is in at most ten live sessions at once (one per pool number it dials); half the sessions end at once.
      const seen = JSON.stringify([...statuses]);
      expect(statuses.get(201) ?? 0, seen).toBeGreaterThan(40);
      expect(statuses.get(409) ?? 0, seen).toBeGreaterThan(0); // the hubs ran out of numbers: the pool is small
      const { rows } = await client.query<{ id: string; first_masked_as: string; second_masked_as: string }>(
        "SELECT id, first_masked_as, second_masked_as FROM session WHERE id LIKE 'c-%'",
      );
      const stored = new Map(rows.map((r) => [r.id, [r.first_masked_as, r.second_masked_as]]));
      for (const [id, masked] of answered) expect(stored.get(id), id).toEqual(masked);
      expect(stored.size).toBe(answered.size);
      expect(await violations(client, Date.now())).toEqual([]);
      // Concurrent creates on one number queue on its PIN tally: it still equals the number's rows, none lost or counted twice.
      const tallies = await client.query('SELECT t.dialled, t.pins, (SELECT count(*)::int FROM pin p WHERE p.dialled = t.dialled) AS rows FROM pin_tally t');
      expect(tallies.rows.length).toBeGreaterThan(0);
      for (const t of tallies.rows) expect(t.pins, t.dialled).toBe(t.rows);
    }, 120_000);

    it('one API process killed with SIGKILL mid-burst: every acknowledged create is in PostgreSQL, the other goes on, no violation', async () => {
      const [doomed, survivor] = [await start(), await start()];
      const acknowledged = new Map<string, string[]>();
      let failedOnDoomed = 0;
      const burst = async (api: ApiProcess, w: number): Promise<void> => {
        const http = new ApiClient(api.url, key);
        for (let i = 0; i < 200; i++) {
          const id = `k-${w}-${i}`;
          let response;
          try {
            response = await http.post('/v1/sessions', { id, parties: [{ number: partyNumber(5_000 + w * 1_000 + i) }, { number: partyNumber(20_000 + w * 1_000 + i) }], ttl: '1h' });
          } catch {
            failedOnDoomed++; // the connection died with the process: not acknowledged
            if (api === doomed) return;
            throw new Error(`the surviving API failed request ${id}`);
          }
          if (response.status === 201) acknowledged.set(id, (response.body as { parties: Array<{ maskedAs: string }> }).parties.map((p) => p.maskedAs));
        }
      };
      const runs = [0, 1, 2, 3].map((w) => burst(w < 2 ? doomed : survivor, w));
      await sleep(400);
      expect(doomed.child.kill('SIGKILL')).toBe(true);
      await Promise.all(runs);
      expect(failedOnDoomed).toBeGreaterThan(0);
      const { rows } = await client.query<{ id: string; first_masked_as: string; second_masked_as: string }>(
        "SELECT id, first_masked_as, second_masked_as FROM session WHERE id LIKE 'k-%'",
      );
      const stored = new Map(rows.map((r) => [r.id, [r.first_masked_as, r.second_masked_as]]));
      expect([...acknowledged.keys()].filter((id) => !stored.has(id))).toEqual([]);
      for (const [id, masked] of acknowledged) expect(stored.get(id), id).toEqual(masked);
      expect([...acknowledged.keys()].filter((id) => id.startsWith('k-0-') || id.startsWith('k-1-')).length).toBeGreaterThan(0);
      expect(await violations(client, Date.now())).toEqual([]);
    }, 120_000);

    it('PostgreSQL stopped: creates answer 503 VNUM_AUTHORITY_UNAVAILABLE with Retry-After, ready says so; once it is back creates succeed', async () => {
      const api = await start();
      const http = new ApiClient(api.url, key);
      const body = (id: string) => ({ id, parties: [{ number: partyNumber(300) }, { number: partyNumber(301) }] });
      expect((await http.post('/v1/sessions', body('before'))).status).toBe(201);
      env.cluster.stopServer('fast');
      try {
        const down = await http.post('/v1/sessions', body('during'));
        expectProblem(down, 503, 'VNUM_AUTHORITY_UNAVAILABLE');
        expect(down.headers.get('retry-after')).toBe('1');
        expect((down.body as { detail: string }).detail).toMatch(/cannot be reached/);
        expectProblem(await http.get('/v1/sessions/before'), 503, 'VNUM_AUTHORITY_UNAVAILABLE');
        expectProblem(await http.get('/v1/ready', { key: null }), 503, 'VNUM_AUTHORITY_UNAVAILABLE');
        // Keys are checked on the authority too: a request is refused as unavailable, not as unauthorized.
        expect((await http.get('/v1/pool')).status).toBe(503);
      } finally {
        await env.cluster.startServer();
      }
      const deadline = Date.now() + 15_000;
      let after = await http.post('/v1/sessions', body('during'));
      while (after.status === 503 && Date.now() < deadline) {
        await sleep(200);
        after = await http.post('/v1/sessions', body('during'));
      }
      expect(after.status).toBe(201);
      // The test's own connection died with the server: a new one.
      client = env.cluster.client(target);
      await client.connect();
      expect((await client.query("SELECT count(*)::int AS n FROM session WHERE id IN ('before', 'during')")).rows[0].n).toBe(2);
    }, 60_000);
  });
});
