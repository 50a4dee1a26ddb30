/**
 * API keys: made, listed and revoked by the CLI, shown once, stored only as
 * a hash; no key, a bad one, a revoked one, a scope not granted: 401/403 and
 * nothing done. A flood of bad keys is refused before any key is looked up;
 * the rate limit comes before the key check.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDb } from '../../src/store/db.js';
import { ApiClient, expectProblem, startApi, type ApiProcess } from '../support/api.js';
import { vnum } from '../support/cli.js';

let dir: string;
let db: string;
let api: ApiProcess;
let client: ApiClient;

function cli(...args: string[]) {
  return vnum(['--db', db, ...args]);
}
function createKey(name: string, scope: string): { id: string; key: string } {
  const r = cli('apikey', 'create', '--name', name, '--scope', scope, '--json');
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}
/** Everything a refused request could have written. */
function written(): string {
  const handle = openDb(db, { mode: 'read' });
  try {
    const rows = ['session', 'bridge', 'pool_number', 'call', 'meta'].map((t) => handle.prepare(`SELECT * FROM ${t}`).all());
    return JSON.stringify(rows);
  } finally {
    handle.close();
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vnum-api-access-'));
  db = join(dir, 'vnum.db');
  expect(cli('pool', 'add', '+442079460001', '+442079460002').code).toBe(0);
  api = await startApi({ db });
  client = new ApiClient(api.url);
});
afterAll(async () => {
  await api?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('vnum apikey', () => {
  it('create prints the key once; only the SHA-256 of its secret is stored; list never shows it', () => {
    const text = cli('apikey', 'create', '--name', 'orders-text', '--scope', 'sessions');
    expect(text.code).toBe(0);
    const token = /^(vnum_[0-9a-f]{16}_[A-Za-z0-9_-]{43})$/m.exec(text.stdout)?.[1];
    expect(token).toBeDefined();
    expect(text.stderr).toMatch(/cannot be shown again/);
    const [, id, secret] = /^vnum_([0-9a-f]{16})_(.+)$/.exec(token!)!;
    const handle = openDb(db, { mode: 'read' });
    const row = handle.prepare('SELECT * FROM api_key WHERE id = ?').get(id) as Record<string, unknown>;
    handle.close();
    expect(row.secret_sha256).toEqual(createHash('sha256').update(secret!).digest());
    expect(Object.values(row).some((v) => typeof v === 'string' && v.includes(secret!))).toBe(false);
    for (const file of [db, `${db}-wal`]) {
      try {
        expect(readFileSync(file).includes(secret!), file).toBe(false);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
    }
    const listed = cli('apikey', 'list', '--json');
    expect(listed.stdout).not.toContain(secret);
    expect(JSON.parse(listed.stdout)).toContainEqual(
      expect.objectContaining({ id, name: 'orders-text', scopes: ['sessions'], revokedAt: null, lastUsedAt: null }),
    );
    expect(cli('apikey', 'list').stdout).toMatch(/orders-text\s+sessions/);
  });

  it('refuses a bad name, an unknown scope, no scope, a name already in use; revoke by id or name, unknown is VNUM_API_KEY_NOT_FOUND', () => {
    expect(cli('apikey', 'create', '--name', 'bad name', '--scope', 'read').stderr).toMatch(/invalid key name .*\[VNUM_INVALID_ARGUMENT\]/);
    expect(cli('apikey', 'create', '--name', 'x', '--scope', 'read,root').stderr).toMatch(/unknown scope "root": use read, sessions, pool, admin.*\[VNUM_INVALID_ARGUMENT\]/);
    expect(cli('apikey', 'create', '--name', 'x', '--scope', ',').stderr).toMatch(/no scope given/);
    expect(cli('apikey', 'create', '--name', 'x').stderr).toMatch(/--scope.*\[VNUM_USAGE\]/);
    createKey('twice', 'read');
    const again = cli('apikey', 'create', '--name', 'twice', '--scope', 'read');
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/an API key named "twice" exists: revoke it first/);
    const revoked = cli('apikey', 'revoke', 'twice', '--json');
    expect(JSON.parse(revoked.stdout)).toMatchObject({ name: 'twice', changed: true, revokedAt: expect.any(String) });
    expect(createKey('twice', 'read').id).toMatch(/^[0-9a-f]{16}$/);
    const missing = cli('apikey', 'revoke', 'nobody');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/no API key "nobody".*\[VNUM_API_KEY_NOT_FOUND\]/);
  });
});

describe('the API refuses, and does nothing, without a good key', () => {
  const create = { id: 'o-refused', parties: [{ number: '+447911000001' }, { number: '+447911000002' }] };

  it('no key, a malformed header, an unknown key, a revoked key: 401 with WWW-Authenticate; nothing written', async () => {
    const before = written();
    const noKey = await client.post('/v1/sessions', create);
    expectProblem(noKey, 401, 'VNUM_UNAUTHORIZED');
    expect(noKey.headers.get('www-authenticate')).toBe('Bearer realm="vnum"');
    expect((noKey.body as any).detail).toMatch(/no API key/);
    const good = createKey('soon-revoked', 'sessions');
    for (const header of [`Basic ${Buffer.from('a:b').toString('base64')}`, `Bearer`, `Bearer ${good.key} extra`, good.key]) {
      expectProblem(await client.post('/v1/sessions', create, { key: null, headers: { authorization: header } }), 401, 'VNUM_UNAUTHORIZED');
    }
    // the right shape, the right id, the wrong secret
    const forged = `${good.key.slice(0, 22)}${'A'.repeat(43)}`;
    const unknown = await client.post('/v1/sessions', create, { key: forged });
    expectProblem(unknown, 401, 'VNUM_UNAUTHORIZED');
    expect((unknown.body as any).detail).toBe('unknown API key');
    expect(cli('apikey', 'revoke', good.id).code).toBe(0);
    // revocation needs no restart: the next request is refused
    const revoked = await client.post('/v1/sessions', create, { key: good.key });
    expectProblem(revoked, 401, 'VNUM_UNAUTHORIZED');
    expect((revoked.body as any).detail).toBe('this API key has been revoked');
    expect(written()).toBe(before);
  });

  it('a scope not granted: 403 naming the key and the scope; nothing written', async () => {
    const before = written();
    const read = createKey('read-only', 'read');
    const pool = createKey('pool-only', 'pool');
    const sessions = createKey('sessions-only', 'sessions');
    const refused = await client.post('/v1/sessions', create, { key: read.key });
    expectProblem(refused, 403, 'VNUM_FORBIDDEN');
    expect((refused.body as any).detail).toBe('API key "read-only" (scopes read) does not grant sessions, which this request needs');
    expectProblem(await client.post('/v1/sessions', create, { key: pool.key }), 403, 'VNUM_FORBIDDEN');
    expectProblem(await client.post('/v1/pool', { numbers: ['+442079460009'] }, { key: sessions.key }), 403, 'VNUM_FORBIDDEN');
    expectProblem(await client.post('/v1/pool/+442079460001/retire', undefined, { key: sessions.key }), 403, 'VNUM_FORBIDDEN');
    expectProblem(await client.post('/v1/sessions/o1/release', {}, { key: read.key }), 403, 'VNUM_FORBIDDEN');
    expect(written()).toBe(before);
    // every scope reads
    for (const key of [read, pool, sessions]) expect((await client.get('/v1/stats', { key: key.key })).status).toBe(200);
  });

  it('admin may do everything; a key used has its last use recorded (to the minute)', async () => {
    const admin = createKey('admin', 'admin');
    expect((await client.post('/v1/sessions', create, { key: admin.key })).status).toBe(201);
    expect((await client.post('/v1/pool', { numbers: ['+442079460009'] }, { key: admin.key })).status).toBe(200);
    const listed = JSON.parse(cli('apikey', 'list', '--json').stdout) as Array<{ id: string; lastUsedAt: string | null }>;
    expect(Date.parse(listed.find((k) => k.id === admin.id)!.lastUsedAt!)).toBeGreaterThan(Date.now() - 60_000);
  });
});

describe('floods', () => {
  it('an address past 30 bad keys in a minute is refused outright (429, Retry-After), a good key from it too, until the minute is over', async () => {
    const own = await startApi({ db });
    try {
      const flooded = new ApiClient(own.url);
      const good = createKey('flooded', 'read');
      for (let i = 0; i < 30; i++) expectProblem(await flooded.get('/v1/stats', { key: `vnum_${'0'.repeat(16)}_${'A'.repeat(43)}` }), 401, 'VNUM_UNAUTHORIZED');
      const blocked = await flooded.get('/v1/stats', { key: good.key });
      expectProblem(blocked, 429, 'VNUM_RATE_LIMITED');
      expect(Number(blocked.headers.get('retry-after'))).toBeGreaterThan(0);
      expect((blocked.body as any).detail).toMatch(/too many requests without a valid API key/);
      // public routes stay open: a monitor still sees the API ready
      expect((await flooded.get('/v1/ready')).status).toBe(200);
    } finally {
      await own.stop();
    }
  });

  it('the rate limit per address comes before the key check: past it, 429 whatever the key', async () => {
    const own = await startApi({ db, args: ['--rate-limit', '5'] });
    try {
      const limited = new ApiClient(own.url);
      // 20 at once: 5 pass per one-second window (10 if the burst straddles two), the rest are cut before their key is read
      const statuses = (await Promise.all(Array.from({ length: 20 }, () => limited.get('/v1/stats')))).map((r) => r.status);
      expect(statuses.filter((s) => s === 401).length).toBeGreaterThanOrEqual(5);
      expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(10);
      expect(statuses.filter((s) => s === 429).length).toBe(20 - statuses.filter((s) => s === 401).length);
      // unknown paths are limited too
      const strays = await Promise.all(Array.from({ length: 12 }, () => limited.get('/v1/nowhere')));
      const refused = strays.find((r) => r.status === 429)!;
      expect(refused).toBeDefined();
      expectProblem(refused, 429, 'VNUM_RATE_LIMITED');
      expect(refused.headers.get('retry-after')).toMatch(/^\d+$/);
    } finally {
      await own.stop();
    }
  });
});
