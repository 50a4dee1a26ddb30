/**
 * POST /v1/pool/sync over real HTTP: the same domain function as `vnum pool
 * sync` (src/pool/sync.ts), the export in the body (CSV or JSON), the
 * options in the query; every answer checked against the OpenAPI document.
 */
import { beforeEach, expect, it } from 'vitest';
import { expectProblem, useApi } from '../support/api.js';

const POOL = Array.from({ length: 10 }, (_, i) => `+4420794600${String(i + 1).padStart(2, '0')}`);

const api = useApi({
  prefix: 'vnum-api-sync-',
  pool: POOL,
  keys: { pool: ['provisioning', 'pool'], sessions: ['orders', 'sessions'], read: ['support', 'read'] },
  as: 'pool',
});
const { keys, cli, cliJson } = api;
const states = (): Record<string, string> => Object.fromEntries((cliJson('pool', 'list') as Array<{ number: string; state: string }>).map((n) => [n.number, n.state]));

beforeEach(() => {
  // every test starts from the ten numbers available
  expect(cli('pool', 'add', ...POOL).code).toBe(0);
});

const csv = (numbers: string[]) => `number\n${numbers.join('\n')}\n`;
const sync = (body: string | unknown, query: Record<string, string | boolean> = {}, contentType = 'text/csv') =>
  typeof body === 'string' ? api.client.request('POST', '/v1/pool/sync', { raw: body, contentType, query }) : api.client.request('POST', '/v1/pool/sync', { json: body, query });

it('a dry run plans and reports, and writes nothing', async () => {
  const before = states();
  const r = await sync(csv([...POOL.slice(0, 9), '+442079460099']), { retireMissing: true, dryRun: true });
  expect(r.status).toBe(200);
  expect(r.body).toMatchObject({ dryRun: true, listed: 10, added: 1, retired: 1, retireLimit: { retiring: 1, exceeded: false } });
  expect((r.body as any).changes.map((c: any) => c.number)).toEqual(['+442079460010', '+442079460099']);
  expect(states()).toEqual(before);
});

it('adds what is new and, with retireMissing, retires what the provider dropped; JSON exports too', async () => {
  const r = await sync({ numbers: [...POOL.slice(0, 9).map((number) => ({ number })), { number: '+442079460098' }] }, { retireMissing: true });
  expect(r.status).toBe(200);
  expect(r.body).toMatchObject({ dryRun: false, added: 1, retired: 1 });
  const after = states();
  expect(after['+442079460098']).toBe('available');
  expect(after['+442079460010']).toBe('retired');
  // without retireMissing a number the export does not list is only reported
  const kept = await sync(csv(POOL.slice(0, 8)));
  expect(kept.status).toBe(200);
  expect((kept.body as any).unlisted.map((u: any) => u.number)).toContain('+442079460009');
  expect(states()['+442079460009']).toBe('available');
});

it('refuses an export that would retire more than the allowed share: 409 VNUM_RETIRE_LIMIT with the plan, nothing written', async () => {
  const before = states();
  const r = await sync(csv(POOL.slice(0, 5)), { retireMissing: true });
  expectProblem(r, 409, 'VNUM_RETIRE_LIMIT');
  const summary = (r.body as any).summary;
  expect(summary.retireLimit).toMatchObject({ maxPercent: 10, allowed: 1, exceeded: true });
  expect(summary.retireLimit.retiring).toBeGreaterThanOrEqual(5);
  expect(summary.retired).toBe(summary.retireLimit.retiring);
  expect(states()).toEqual(before);
  // the operator says so
  const allowed = await sync(csv(POOL.slice(0, 5)), { retireMissing: true, maxRetire: '100%' });
  expect(allowed.status).toBe(200);
  expect((allowed.body as any).retired).toBe(summary.retired);
});

it('bad input: an empty export, garbage, a share that is no percentage, an unknown option: a problem, nothing written', async () => {
  const before = states();
  // an export with no rows, and bytes that are no text export: refused as the CLI refuses them
  for (const body of ['number\n', '\u0000\u0001garbage', '']) {
    const r = await sync(body);
    expect(r.status, body).toBeGreaterThanOrEqual(400);
    expect(['VNUM_INVALID_EXPORT', 'VNUM_INVALID_CSV', 'VNUM_INVALID_ARGUMENT'], body).toContain((r.body as any).code);
  }
  expectProblem(await sync(csv(['+44 not a number'])), 422, 'VNUM_INVALID_NUMBER');
  expectProblem(await sync({ no: 'list' }), 422, 'VNUM_INVALID_EXPORT');
  expectProblem(await sync(csv(POOL), { maxRetire: '150%' }), 400, 'VNUM_INVALID_ARGUMENT');
  expectProblem(await sync(csv(POOL), { maxRetire: 'ten' }), 400, 'VNUM_INVALID_ARGUMENT');
  expectProblem(await sync(csv(POOL), { retireEverything: true }), 400, 'VNUM_INVALID_ARGUMENT');
  expectProblem(await api.client.request('POST', '/v1/pool/sync', {}), 400, 'VNUM_INVALID_ARGUMENT');
  expect(states()).toEqual(before);
});

it('needs the pool scope (or admin): a read or sessions key is 403, no key 401, and nothing is done', async () => {
  const before = states();
  for (const key of [keys.read, keys.sessions]) {
    expectProblem(await api.client.request('POST', '/v1/pool/sync', { raw: csv(POOL.slice(0, 9)), contentType: 'text/csv', key, query: { retireMissing: true } }), 403, 'VNUM_FORBIDDEN');
  }
  expectProblem(await api.client.request('POST', '/v1/pool/sync', { raw: csv(POOL), contentType: 'text/csv', key: null }), 401, 'VNUM_UNAUTHORIZED');
  expect(states()).toEqual(before);
});
