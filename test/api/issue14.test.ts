/**
 * Issue 14 through the HTTP API, over real HTTP against the built `vnum api`:
 * a session's sliding TTL and call settings taken as `vnum session create`
 * takes them (same bounds, same error codes, unknown fields refused), each
 * party's PIN in the create's answer only (sized by the operator's
 * VNUM_PIN_GUESS_BOUND, never by a request), and the pool's handling of
 * callers without a bridge shown and set as `vnum pool list --json` and
 * `vnum pool set` do. Every answer is checked against the OpenAPI document.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { pinDigits } from '../../src/session/pin.js';
import { expectProblem, useApi } from '../support/api.js';
import { vnum } from '../support/cli.js';

const POOL = ['+442079460001', '+442079460002', '+442079460003', '+442079460004'];
const DESK = '+442079460999';
/** Stricter than the default (1e-6): PINs one digit longer than the CLI's default would issue on an empty number. */
const BOUND = '1e-7';

const api = useApi({
  prefix: 'vnum-api-14-',
  pool: POOL,
  keys: { admin: ['ops', 'admin'], pool: ['provisioning', 'pool'], orders: ['orders', 'sessions'] },
  as: 'admin',
  env: { VNUM_PIN_GUESS_BOUND: BOUND },
});
const { keys, cli, cliJson } = api;

describe('POST /v1/sessions takes what vnum session create takes for issue 14', () => {
  it('a sliding TTL and call settings: stored, shown as the CLI shows them, and the same request again is a safe retry', async () => {
    const request = {
      id: 'shaped-1',
      parties: [{ number: '+447911000001' }, { number: '+447911000002' }],
      ttl: '2h',
      idleTimeout: '10m',
      calleeAnnouncement: 'followme/call-from',
      callerAnnouncement: 'vnumwait',
      callLimit: '30m',
      limitWarning: '1m',
      ringTimeout: '45s',
      record: false,
    };
    const created = await api.client.withKey(keys.orders).post('/v1/sessions', request);
    expect(created.status).toBe(201);
    const body = created.body as any;
    const calls = { calleeAnnouncement: 'followme/call-from', callerAnnouncement: 'vnumwait', callLimitMs: 1_800_000, limitWarningMs: 60_000, ringTimeoutMs: 45_000, record: false };
    expect(body).toMatchObject({ id: 'shaped-1', state: 'active', idleTimeoutMs: 600_000, calls, created: true });
    // Sliding: it ends 10 minutes after creation (no call yet), at the latest when the 2 h TTL runs out.
    expect(Date.parse(body.endsAt) - Date.parse(body.createdAt)).toBe(600_000);
    expect(Date.parse(body.expiresAt) - Date.parse(body.createdAt)).toBe(7_200_000);
    // The CLI reads back the same session (without PINs: only the create that issued them knows them).
    const { created: _c, parties, ...rest } = body;
    expect(cliJson('session', 'show', 'shaped-1')).toEqual({ ...rest, parties: parties.map(({ pin: _p, ...p }: any) => p) });

    // The same request again: 200, the same session, no PINs (they are stored as digests; see README, "Retries").
    const again = await api.client.post('/v1/sessions', request);
    expect(again.status).toBe(200);
    expect(again.body).toEqual({ ...rest, parties: parties.map(({ pin: _p, ...p }: any) => p), created: false });
    // Other settings under that id: a conflict naming what differs, as the CLI's.
    const other = await api.client.post('/v1/sessions', { ...request, idleTimeout: '20m', callLimit: '10m' });
    expectProblem(other, 409, 'VNUM_SESSION_CONFLICT');
    expect((other.body as any).differs).toEqual(['idle', 'calls']);
  });

  it('each party\'s PIN is in the create\'s answer, sized by the operator\'s VNUM_PIN_GUESS_BOUND, and never in a read', async () => {
    const created = await api.client.post('/v1/sessions', { id: 'pins-1', parties: [{ number: '+447911000011' }, { number: '+447911000012' }] });
    expect(created.status).toBe(201);
    const [first, second] = (created.body as any).parties;
    // Each PIN is for the number its party dials; at most one other live session there so far.
    const shortest = pinDigits(0, Number(BOUND));
    expect(shortest).toBeGreaterThan(pinDigits(0, 1e-6));
    for (const party of [first, second]) expect(party.pin).toMatch(new RegExp(`^[0-9]{${shortest},${pinDigits(1, Number(BOUND))}}$`));
    expect(first.pin).not.toBe(second.pin);
    const read = (await api.client.get('/v1/sessions/pins-1')).body as any;
    expect(read.parties.every((p: any) => !('pin' in p))).toBe(true);
    const listed = (await api.client.get('/v1/sessions', { query: { party: '+447911000011' } })).body as any;
    expect(JSON.stringify(listed)).not.toContain(first.pin);
  });

  it('vnum api refuses a PIN guess bound no PIN could meet before it opens anything, naming it', () => {
    const file = join(api.dir, 'never.db');
    const r = vnum(['--db', file, 'api', '--host', '127.0.0.1', '--port', '1'], { VNUM_PIN_GUESS_BOUND: '0.5' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/invalid PIN guess bound "0.5".*VNUM_CONFIGURATION/);
    expect(existsSync(file)).toBe(false);
  });

  const BAD: Array<[string, Record<string, unknown>, number, string, RegExp]> = [
    ['idle timeout under 5 s', { idleTimeout: '1s' }, 400, 'VNUM_INVALID_ARGUMENT', /idleTimeout "1s": from 5s to 365d/],
    ['idle timeout negative', { idleTimeout: '-5s' }, 400, 'VNUM_INVALID_ARGUMENT', /invalid idleTimeout "-5s"/],
    ['idle timeout longer than the TTL', { idleTimeout: '2h', ttl: '1h' }, 400, 'VNUM_INVALID_ARGUMENT', /not be longer than the TTL/],
    ['ring timeout 0', { ringTimeout: '0s' }, 400, 'VNUM_INVALID_ARGUMENT', /ringTimeout/],
    ['ring timeout 10 m', { ringTimeout: '10m' }, 400, 'VNUM_INVALID_ARGUMENT', /ringTimeout "10m": from 1s to 5m/],
    ['call limit 2 d', { callLimit: '2d' }, 400, 'VNUM_INVALID_ARGUMENT', /callLimit/],
    ['call limit in ms', { callLimit: '1500ms' }, 400, 'VNUM_INVALID_ARGUMENT', /whole seconds/],
    ['warning after the end', { callLimit: '60s', limitWarning: '90s' }, 400, 'VNUM_INVALID_ARGUMENT', /before the end/],
    ['sound with dialplan syntax', { calleeAnnouncement: 'beep,1)' }, 400, 'VNUM_INVALID_ARGUMENT', /invalid calleeAnnouncement "beep,1\)"/],
    ['sound chaining a Dial', { calleeAnnouncement: 'x&Dial(PJSIP/+447700900999)' }, 400, 'VNUM_INVALID_ARGUMENT', /an Asterisk sound name/],
    ['sound climbing out', { calleeAnnouncement: '../../etc/shadow' }, 400, 'VNUM_INVALID_ARGUMENT', /an Asterisk sound name/],
    ['class with syntax', { callerAnnouncement: 'moh)' }, 400, 'VNUM_INVALID_ARGUMENT', /a music-on-hold class name/],
    ['record as a string', { record: 'yes' }, 400, 'VNUM_INVALID_ARGUMENT', /record/],
    ['call limit as a number', { callLimit: 60 }, 400, 'VNUM_INVALID_ARGUMENT', /callLimit/],
    ['the response\'s own shape', { calls: { callLimitMs: 60_000 } }, 400, 'VNUM_INVALID_ARGUMENT', /calls/],
    ['a field the CLI has no flag for', { pinGuessBound: 0.5 }, 400, 'VNUM_INVALID_ARGUMENT', /pinGuessBound/],
  ];
  it.each(BAD)('%s: a problem with the CLI\'s code naming the cause, nothing written', async (_what, fields, status, code, cause) => {
    const response = await api.client.post('/v1/sessions', { id: 'bad-1', parties: [{ number: '+447911000021' }, { number: '+447911000022' }], ...fields });
    expectProblem(response, status, code);
    const problem = response.body as { detail: string; errors?: Array<{ pointer: string; detail: string }> };
    expect([problem.detail, ...(problem.errors ?? []).map((e) => `${e.pointer} ${e.detail}`)].join('\n')).toMatch(cause);
    expectProblem(await api.client.get('/v1/sessions/bad-1'), 404, 'VNUM_SESSION_NOT_FOUND');
  });
});

describe('the pool\'s handling of callers without a bridge', () => {
  it('GET /v1/pool shows each number\'s PIN mode, out-of-session handling and desk, as vnum pool list --json', async () => {
    expect(cli('pool', 'set', POOL[0]!, '--pin', 'all', '--out-of-session', 'fallback', '--fallback', DESK).code).toBe(0);
    const page = (await api.client.get('/v1/pool', { query: { limit: 100 } })).body as any;
    expect(page.numbers).toEqual(cliJson('pool', 'list'));
    expect(page.numbers[0]).toMatchObject({ number: POOL[0], pin: 'all', outOfSession: 'fallback', fallback: DESK });
    expect(page.numbers[1]).toMatchObject({ number: POOL[1], pin: null, outOfSession: null, fallback: null });
  });

  it('POST /v1/pool/{number}/handling sets them as vnum pool set does: a value sets, null returns to the default, absent leaves', async () => {
    const pool = api.client.withKey(keys.pool);
    const set = await pool.post(`/v1/pool/${encodeURIComponent(POOL[1]!)}/handling`, { pin: 'withheld', fallback: '020 7946 0998' });
    expect(set.body).toEqual({ number: POOL[1], pin: 'withheld', outOfSession: null, fallback: '+442079460998', changed: true });
    const same = await pool.post(`/v1/pool/${encodeURIComponent(POOL[1]!)}/handling`, { pin: 'withheld' });
    expect(same.body).toMatchObject({ changed: false });
    const back = await pool.post(`/v1/pool/${encodeURIComponent(POOL[1]!)}/handling`, { pin: null, outOfSession: 'announce' });
    expect(back.body).toEqual({ number: POOL[1], pin: null, outOfSession: 'announce', fallback: '+442079460998', changed: true });
    expect(cliJson('pool', 'list').find((n: any) => n.number === POOL[1])).toMatchObject({ pin: null, outOfSession: 'announce', fallback: '+442079460998' });
  });

  it('refuses what vnum pool set refuses, writing nothing; an orders key may not', async () => {
    const before = cliJson('pool', 'list');
    const url = `/v1/pool/${encodeURIComponent(POOL[2]!)}/handling`;
    expectProblem(await api.client.post(url, { pin: 'sometimes' }), 400, 'VNUM_INVALID_ARGUMENT');
    expectProblem(await api.client.post(url, { outOfSession: 'hangup' }), 400, 'VNUM_INVALID_ARGUMENT');
    expectProblem(await api.client.post(url, {}), 400, 'VNUM_INVALID_ARGUMENT');
    expectProblem(await api.client.post(url, { pin: 'all', desk: DESK }), 400, 'VNUM_INVALID_ARGUMENT');
    expectProblem(await api.client.post(url, { pin: 'all', fallback: POOL[3] }), 409, 'VNUM_POOL_CONFLICT');
    expectProblem(await api.client.post(url, { fallback: 'not a number' }), 422, 'VNUM_INVALID_NUMBER');
    expectProblem(await api.client.post('/v1/pool/%2B442079460098/handling', { pin: 'all' }), 404, 'VNUM_NOT_IN_POOL');
    expectProblem(await api.client.withKey(keys.orders).post(url, { pin: 'all' }), 403, 'VNUM_FORBIDDEN');
    expect(cliJson('pool', 'list')).toEqual(before);
  });
});
