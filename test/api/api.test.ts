/**
 * The HTTP API over real HTTP: the built `vnum api` in its own process on a
 * real database file, every answer checked against the OpenAPI document
 * (test/support/api.ts). The seed's flow, the CLI's idempotency rule, lists
 * and their cursors, the pool, the call log, stats and health, each beside
 * what the CLI says of the same file.
 */
import { describe, expect, it } from 'vitest';
import { applyCallFact, recordRoutedCall, writeRouterStatus } from '../../src/calls/store.js';
import { invariantViolations } from '../../src/session/invariant.js';
import { openDb, type Db } from '../../src/store/db.js';
import { DOCUMENT, expectProblem, useApi } from '../support/api.js';

const POOL = ['+442079460001', '+442079460002', '+442079460003', '+442079460011', '+442079460012', '+442079460013'];
const CUSTOMER = '+447911123456';
const AGENT = '+447400123456';

const api = useApi({
  prefix: 'vnum-api-',
  pool: POOL,
  keys: { admin: ['ops', 'admin'], orders: ['orders', 'sessions'], support: ['support', 'read'], pool: ['provisioning', 'pool'] },
  as: 'admin',
});
const { keys, cli, cliJson } = api;

function withDb<T>(work: (handle: Db) => T): T {
  const handle = openDb(api.db);
  try {
    return work(handle);
  } finally {
    handle.close();
  }
}

describe("the seed's flow: DriverAssigned creates the session, the apps show the masked numbers, delivery releases it", () => {
  it('creates, routes both ways, releases with grace, then routes nowhere', async () => {
    const orders = api.client.withKey(keys.orders);
    const created = await orders.post('/v1/sessions', { id: 'order-1001', parties: [{ number: CUSTOMER }, { number: '07400123456' }], ttl: '2h' });
    expect(created.status).toBe(201);
    expect(created.headers.get('location')).toBe('/v1/sessions/order-1001');
    const session = created.body as any;
    expect(session).toMatchObject({ id: 'order-1001', state: 'active', created: true, releasedAt: null });
    expect(session.parties.map((p: any) => p.number)).toEqual([CUSTOMER, AGENT]);
    const [customerMaskedAs, agentMaskedAs] = session.parties.map((p: any) => p.maskedAs);
    expect(POOL).toContain(customerMaskedAs);
    expect(POOL).toContain(agentMaskedAs);
    expect(Date.parse(session.expiresAt) - Date.parse(session.createdAt)).toBe(7_200_000);

    // Support staff ask what the router decides: the customer dials the agent's masked number.
    const support = api.client.withKey(keys.support);
    const there = await support.get('/v1/route', { query: { caller: CUSTOMER, dialled: agentMaskedAs } });
    expect(there.body).toEqual({ status: 'BRIDGE', target: AGENT, cli: customerMaskedAs, session: 'order-1001', reason: null });
    // as carriers deliver numbers: national, and digits without +
    const back = await support.get('/v1/route', { query: { caller: '07400123456', dialled: customerMaskedAs.slice(1) } });
    expect(back.body).toEqual({ status: 'BRIDGE', target: CUSTOMER, cli: agentMaskedAs, session: 'order-1001', reason: null });

    const released = await orders.post('/v1/sessions/order-1001/release', { grace: '10m' });
    expect(released.status).toBe(200);
    expect(released.body).toMatchObject({ id: 'order-1001', state: 'grace', changed: true });
    expect((await support.get('/v1/route', { query: { caller: CUSTOMER, dialled: agentMaskedAs } })).body.status).toBe('BRIDGE');
    const ended = await orders.post('/v1/sessions/order-1001/release', { grace: '0s' });
    expect(ended.body).toMatchObject({ state: 'ended', changed: true });
    expect((await support.get('/v1/route', { query: { caller: CUSTOMER, dialled: agentMaskedAs } })).body).toMatchObject({ status: 'ENDED', session: 'order-1001' });
    // and the CLI reads the same session with the same field names
    expect(cliJson('session', 'show', 'order-1001')).toEqual((await support.get('/v1/sessions/order-1001')).body);
  });

  it('a release with no body at all takes the CLI defaults: 30 minutes of grace', async () => {
    await api.client.post('/v1/sessions', { id: 'order-defaults', parties: [{ number: '+447911000101' }, { number: '+447911000102' }] });
    const released = await api.client.post('/v1/sessions/order-defaults/release');
    const body = released.body as any;
    expect(Date.parse(body.endsAt) - Date.parse(body.releasedAt)).toBe(30 * 60_000);
    expect(body.hangup).toBeUndefined();
  });
});

describe('retries: the same idempotency rule as the CLI', () => {
  const parties = [{ number: '+447911000201' }, { number: '+447911000202' }];

  it('the same request again gets the session back (200, created false); another request is a conflict saying what differs', async () => {
    const first = await api.client.post('/v1/sessions', { id: 'retry-1', parties, ttl: '1h' });
    expect(first.status).toBe(201);
    const again = await api.client.post('/v1/sessions', { id: 'retry-1', parties, ttl: '1h' });
    expect(again.status).toBe(200);
    // The same session, without the PINs: only the create that issued them could show them (README, "Retries").
    const { parties: issued, ...rest } = first.body as any;
    expect(issued.every((p: any) => /^[0-9]{6,12}$/.test(p.pin))).toBe(true);
    expect(again.body).toEqual({ ...rest, parties: issued.map(({ pin: _pin, ...p }: any) => p), created: false });
    // naming the masked number it got is the same request too
    const named = await api.client.post('/v1/sessions', {
      id: 'retry-1',
      parties: [{ ...parties[0], maskedAs: (first.body as any).parties[0].maskedAs }, parties[1]],
      ttl: '1h',
    });
    expect(named.status).toBe(200);

    const other = await api.client.post('/v1/sessions', { id: 'retry-1', parties: [parties[0], { number: '+447911000299' }], ttl: '1h' });
    expectProblem(other, 409, 'VNUM_SESSION_CONFLICT');
    expect((other.body as any).differs).toEqual(['parties']);
    expect((other.body as any).detail).not.toContain('447911000299');
    const swapped = await api.client.post('/v1/sessions', { id: 'retry-1', parties: [parties[1], parties[0]], ttl: '1h' });
    expect((swapped.body as any).differs).toEqual(['party order']);
    const ttl = await api.client.post('/v1/sessions', { id: 'retry-1', parties, ttl: '2h' });
    expect((ttl.body as any).differs).toEqual(['ttl']);
  });

  it('a released session is never reopened: 409 VNUM_SESSION_ENDED carrying that session', async () => {
    await api.client.post('/v1/sessions', { id: 'retry-2', parties });
    await api.client.post('/v1/sessions/retry-2/release', { grace: '5m' });
    const retried = await api.client.post('/v1/sessions', { id: 'retry-2', parties });
    expectProblem(retried, 409, 'VNUM_SESSION_ENDED');
    expect((retried.body as any).session).toMatchObject({ id: 'retry-2', state: 'grace' });
  });

  it('the rule is shared with the CLI: a session made by the CLI is found again by the API and the other way round', async () => {
    expect(cli('session', 'create', 'cli-made', '+447911000301', '+447911000302', '--ttl', '3h').code).toBe(0);
    const retried = await api.client.post('/v1/sessions', { id: 'cli-made', parties: [{ number: '+447911000301' }, { number: '+447911000302' }], ttl: '3h' });
    expect(retried.status).toBe(200);
    expect((retried.body as any).created).toBe(false);
    await api.client.post('/v1/sessions', { id: 'api-made', parties: [{ number: '+447911000303' }, { number: '+447911000304' }] });
    expect(cliJson('session', 'create', 'api-made', '+447911000303', '+447911000304').created).toBe(false);
  });
});

describe('lists: filters and opaque cursors', () => {
  it('walks every session newest first in pages, each once', async () => {
    for (let i = 0; i < 5; i++) {
      const created = await api.client.post('/v1/sessions', { id: `page-${i}`, parties: [{ number: `+4479110004${String(i).padStart(2, '0')}` }, { number: '+447911000499' }] });
      expect(created.status).toBe(201);
    }
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await api.client.get('/v1/sessions', { query: { party: '+447911000499', limit: 2, cursor } });
      seen.push(...(page.body as any).sessions.map((s: any) => s.id));
      cursor = (page.body as any).next ?? undefined;
      pages++;
    } while (cursor !== undefined);
    expect(seen).toEqual(['page-4', 'page-3', 'page-2', 'page-1', 'page-0']);
    expect(pages).toBe(3);
    // the whole list, unfiltered, is the CLI's
    const all = await api.client.get('/v1/sessions', { query: { limit: 1000 } });
    expect((all.body as any).sessions).toEqual(cliJson('session', 'list'));
  });

  it('filters by party (either side, as the carrier writes it) and by state', async () => {
    const byAgent = await api.client.get('/v1/sessions', { query: { party: '07911000499' } });
    expect((byAgent.body as any).sessions).toHaveLength(5);
    const asFirst = await api.client.get('/v1/sessions', { query: { party: '+447911000402' } });
    expect((asFirst.body as any).sessions.map((s: any) => s.id)).toEqual(['page-2']);
    const ended = await api.client.get('/v1/sessions', { query: { state: 'ended' } });
    expect((ended.body as any).sessions.map((s: any) => s.id)).toContain('order-1001');
    expect((ended.body as any).sessions.every((s: any) => s.state === 'ended')).toBe(true);
  });

  it('a cursor from another list, or made up, is refused', async () => {
    const pool = await api.client.get('/v1/pool', { query: { limit: 1 } });
    const poolCursor = (pool.body as any).next as string;
    expect(poolCursor).toMatch(/^[A-Za-z0-9_-]+$/);
    expectProblem(await api.client.get('/v1/sessions', { query: { cursor: poolCursor } }), 400, 'VNUM_INVALID_ARGUMENT');
    expectProblem(await api.client.get('/v1/sessions', { query: { cursor: 'bm9wZQ' } }), 400, 'VNUM_INVALID_ARGUMENT');
  });
});

describe('the pool', () => {
  it('lists in number order a page at a time, with the CLI\'s fields', async () => {
    const first = await api.client.get('/v1/pool', { query: { limit: 4 } });
    const second = await api.client.get('/v1/pool', { query: { limit: 4, cursor: (first.body as any).next } });
    expect([...(first.body as any).numbers, ...(second.body as any).numbers]).toEqual(cliJson('pool', 'list'));
    expect((second.body as any).next).toBeNull();
  });

  it('adds, reserves (as pool add --reserved), retires; a pool key may, an orders key may not', async () => {
    const pool = api.client.withKey(keys.pool);
    const added = await pool.post('/v1/pool', { numbers: ['+442079460004', '020 7946 0005'], country: 'GB' });
    expect(added.body).toEqual({ added: 2, updated: 0, unchanged: 0, kept: [] });
    const reserved = await pool.post('/v1/pool', { numbers: ['+442079460005'], reserved: true });
    expect(reserved.body).toEqual({ added: 0, updated: 1, unchanged: 0, kept: [] });
    expect((await pool.get('/v1/pool', { query: { state: 'reserved' } })).body).toMatchObject({ numbers: [{ number: '+442079460005', state: 'reserved' }] });
    const retired = await pool.post('/v1/pool/+442079460004/retire');
    expect(retired.body).toEqual({ number: '+442079460004', state: 'retired', changed: true });
    expect((await pool.post('/v1/pool/%2B442079460004/retire')).body).toEqual({ number: '+442079460004', state: 'retired', changed: false });
    expectProblem(await pool.post('/v1/pool/+442079460099/retire'), 404, 'VNUM_NOT_IN_POOL');
    expectProblem(await api.client.withKey(keys.orders).post('/v1/pool', { numbers: ['+442079460006'] }), 403, 'VNUM_FORBIDDEN');
  });

  it('imports a provider export as CSV, never undoing the operator, and a re-import changes nothing', async () => {
    const csv = 'number,country,state\n+442079460004,GB,available\n+442079460006,GB,\n+442079460007,GB,reserved\n';
    const imported = await api.client.withKey(keys.pool).request('POST', '/v1/pool/import', { raw: csv, contentType: 'text/csv; charset=utf-8' });
    expect(imported.body).toEqual({
      added: 2,
      updated: 0,
      unchanged: 1,
      kept: [{ number: '+442079460004', state: 'retired', reason: 'an import never puts a retired number back in service; "vnum pool add" does' }],
    });
    const again = await api.client.request('POST', '/v1/pool/import', { raw: csv, contentType: 'text/csv' });
    expect(again.body).toMatchObject({ added: 0, updated: 0, unchanged: 3 });
  });

  it('a reserved number is lent only when a session asks for it; an unknown one is 404, none left is 409', async () => {
    const asked = await api.client.post('/v1/sessions', { id: 'reserved-1', parties: [{ number: '+447911000601', maskedAs: '+442079460005' }, { number: '+447911000602' }] });
    expect((asked.body as any).parties[0].maskedAs).toBe('+442079460005');
    expectProblem(
      await api.client.post('/v1/sessions', { id: 'reserved-2', parties: [{ number: '+447911000603', maskedAs: '+442079460098' }, { number: '+447911000604' }] }),
      404,
      'VNUM_NOT_IN_POOL',
    );
    // one party in more live sessions than there are available numbers
    const available = (await api.client.get('/v1/stats')).body as any;
    for (let i = 0; i < available.pool.available; i++) {
      expect((await api.client.post('/v1/sessions', { id: `busy-${i}`, parties: [{ number: '+447911000700' }, { number: `+4479110007${String(i + 1).padStart(2, '0')}` }] })).status).toBe(201);
    }
    expectProblem(await api.client.post('/v1/sessions', { id: 'busy-x', parties: [{ number: '+447911000700' }, { number: '+447911000799' }] }), 409, 'VNUM_POOL_EXHAUSTED');
    expect(withDb((handle) => invariantViolations(handle, Date.now()))).toEqual([]);
  });
});

describe('the call log, stats and health', () => {
  it('lists calls with the CLI\'s fields, by session, live only, since, in pages; says whether a router watches', async () => {
    const now = Date.now();
    withDb((handle) => {
      for (let i = 0; i < 3; i++) {
        recordRoutedCall(handle, { uniqueid: `1700000000.${i}`, channel: `PJSIP/carrier-0000000${i}`, session: 'busy-0', target: '+447911000700', at: now - 1000 + i });
      }
      applyCallFact(handle, { kind: 'hangup', uniqueid: '1700000000.0', at: now, cause: 16, causeText: 'Normal Clearing' });
    });
    const all = await api.client.get('/v1/calls', { query: { session: 'busy-0' } });
    expect((all.body as any).calls).toEqual(cliJson('calls', '--session', 'busy-0'));
    expect((all.body as any).calls.map((c: any) => c.caller)).toEqual(['second', 'second', 'second']);
    expect((all.body as any).watching).toBe(false);
    const live = await api.client.get('/v1/calls', { query: { live: true } });
    expect((live.body as any).calls.map((c: any) => c.uniqueid)).toEqual(['1700000000.2', '1700000000.1']);
    const paged = await api.client.get('/v1/calls', { query: { limit: 2 } });
    const rest = await api.client.get('/v1/calls', { query: { limit: 2, cursor: (paged.body as any).next } });
    expect((rest.body as any).calls.map((c: any) => c.uniqueid)).toEqual(['1700000000.0']);
    expect((await api.client.get('/v1/calls', { query: { since: '1m' } })).body).toMatchObject({ calls: expect.any(Array) });
    expect(((await api.client.get('/v1/calls', { query: { since: '2000-01-01' } })).body as any).calls).toHaveLength(3);
  });

  it('a release with hangup asks vnum serve to hang up its calls in progress, and says how many ended within wait', async () => {
    const released = await api.client.post('/v1/sessions/busy-0/release', { grace: '0s', hangup: true, wait: '300ms' });
    expect((released.body as any).hangup).toEqual({ requestedAt: expect.any(String), requested: 2, ended: 0 });
    // Asked at the release's time.
    expect((released.body as any).hangup.requestedAt).toBe((released.body as any).releasedAt);
    const marked = withDb((handle) => handle.prepare("SELECT count(*) AS n FROM call WHERE session_id = 'busy-0' AND hangup_reason = 'release'").get() as { n: number });
    expect(marked.n).toBe(2);
  });

  it('stats are the CLI\'s, the busiest party redacted', async () => {
    const stats = await api.client.withKey(keys.support).get('/v1/stats');
    expect(stats.body).toEqual(cliJson('stats'));
    expect((stats.body as any).busiestParty.number).toMatch(/^\+\*+\d{4}$/);
  });

  it('health: 503 while no router reports, 200 once one reports fresh; a stale or stopped one counts as the issue says', async () => {
    const none = await api.client.get('/v1/health');
    expect(none.status).toBe(503);
    expect(none.body).toMatchObject({ healthy: false, database: { ok: true, path: api.db }, routers: [] });
    const report = (router: string, amiState: string, updatedAt: number) =>
      withDb((handle) =>
        writeRouterStatus(handle, { router, pid: 1, startedAt: 0, updatedAt, amiState: amiState as never, amiSince: 0, amiError: null, asteriskVersion: '22.5.0' }),
      );
    report('127.0.0.1:4573', 'logged-in', Date.now());
    const healthy = await api.client.get('/v1/health');
    expect(healthy.status).toBe(200);
    expect(healthy.body).toMatchObject({ healthy: true, routers: [{ address: '127.0.0.1:4573', ok: true, ami: { state: 'logged-in' }, asterisk: { version: '22.5.0' } }] });
    report('127.0.0.1:4574', 'stopped', Date.now() - 60_000);
    expect((await api.client.get('/v1/health')).status).toBe(200);
    report('127.0.0.1:4575', 'logged-in', Date.now() - 60_000);
    const stale = await api.client.get('/v1/health');
    expect(stale.status).toBe(503);
    expect((stale.body as any).routers.find((r: any) => r.address === '127.0.0.1:4575').ami.error).toMatch(/gone or stuck/);
    report('127.0.0.1:4575', 'disabled', Date.now());
    expect((await api.client.get('/v1/health')).status).toBe(200);
    expect((await api.client.get('/v1/health', { query: { requireAmi: true } })).status).toBe(503);
  });

  it('ready and the document need no key; the document served is docs/openapi.json', async () => {
    const anonymous = api.client.withKey(null);
    expect((await anonymous.get('/v1/ready')).body).toEqual({ ready: true });
    expect((await anonymous.get('/v1/openapi.json')).body).toEqual(DOCUMENT);
    expectProblem(await anonymous.get('/v1/stats'), 401, 'VNUM_UNAUTHORIZED');
  });
});
