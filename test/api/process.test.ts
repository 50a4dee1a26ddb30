/**
 * `vnum api` as a process: every setting judged before anything is opened,
 * a taken port, TLS, the probe Docker's health check runs, a graceful stop
 * that lets a request in flight finish, a SIGKILL in a burst of creates and a
 * restart with nothing acknowledged lost, logs without a real number, and
 * the API beside `vnum serve` on one database: a session made over HTTP
 * routes in the router at once.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { recordRoutedCall } from '../../src/calls/store.js';
import { invariantViolations } from '../../src/session/invariant.js';
import { openDb } from '../../src/store/db.js';
import { ApiClient, expectProblem, freePort, startApi, type ApiProcess } from '../support/api.js';
import { VNUM_BIN, vnum } from '../support/cli.js';
import { numberPattern } from '../support/leaks.js';
import { startServe } from '../support/serve.js';
import { routeCall } from '../reliability/lib.js';

const FIXTURES = new URL('./fixtures/', import.meta.url).pathname;

let dir: string;
let db: string;
const running: ApiProcess[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vnum-api-process-'));
  db = join(dir, 'vnum.db');
});
afterEach(async () => {
  await Promise.all(running.splice(0).map((p) => p.stop('SIGKILL')));
  rmSync(dir, { recursive: true, force: true });
});

function adminKey(): string {
  const r = vnum(['--db', db, 'apikey', 'create', '--name', 'admin', '--scope', 'admin', '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout).key;
}
async function start(options: Parameters<typeof startApi>[0]): Promise<ApiProcess> {
  const api = await startApi(options);
  running.push(api);
  return api;
}
function apiCli(args: string[], env: Record<string, string | undefined> = {}) {
  return spawnSync(process.execPath, [VNUM_BIN, '--db', db, 'api', ...args], {
    encoding: 'utf8',
    timeout: 20_000,
    env: Object.fromEntries(Object.entries({ ...process.env, VNUM_DEFAULT_COUNTRY: undefined, ...env }).filter(([, v]) => v !== undefined)) as NodeJS.ProcessEnv,
  });
}
/** The key file as an operator must leave it: owner-only. */
function keyFile(name = 'tls-key.pem', mode = 0o600): string {
  const file = join(dir, name);
  copyFileSync(join(FIXTURES, name), file);
  chmodSync(file, mode);
  return file;
}

describe('settings are judged before anything is opened', () => {
  it.each([
    [['--port', '0'], {}, /invalid --port "0": a whole number from 1 to 65535/],
    [['--port', '70000'], {}, /invalid --port "70000"/],
    [[], { VNUM_API_PORT: 'http' }, /invalid VNUM_API_PORT "http"/],
    [['--host', 'not a host!'], {}, /invalid --host "not a host!"/],
    [['--rate-limit', '-1'], {}, /invalid --rate-limit "-1": a whole number from 0 to 1000000/],
    [[], { VNUM_API_RATE_LIMIT: '1e9' }, /invalid VNUM_API_RATE_LIMIT "1e9"/],
    [['--trust-proxy', '0.0.0.0/0'], {}, /invalid --trust-proxy "0.0.0.0\/0"/],
    [['--trust-proxy', 'proxy.local'], {}, /invalid --trust-proxy "proxy.local"/],
    [['--drain', '2m'], {}, /invalid --drain "2m": from 0s to 60s/],
    [['--tls-cert', '/etc/hostname'], {}, /TLS needs both a certificate and its key: --tls-key is missing/],
    [[], { VNUM_LOG_LEVEL: 'loud' }, /invalid VNUM_LOG_LEVEL "loud"/],
    [['--metrics-port', '0'], {}, /invalid --metrics-port "0": a whole number from 1 to 65535/],
    [[], { VNUM_API_METRICS_PORT: 'yes' }, /invalid VNUM_API_METRICS_PORT "yes"/],
    [['--metrics-host', 'not a host!'], {}, /invalid --metrics-host "not a host!"/],
  ])('%j %j: exit 1, VNUM_CONFIGURATION, no database made', (args, env, message) => {
    const r = apiCli(args, env);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).toMatch(/\[VNUM_CONFIGURATION\]$/m);
    expect(existsSync(db)).toBe(false);
  });

  it('a TLS key others can read, a certificate that is not one, a key that is not the certificate\'s: refused, naming the file', () => {
    const cert = join(FIXTURES, 'tls-cert.pem');
    const open = keyFile('tls-key.pem', 0o644);
    const readable = apiCli(['--tls-cert', cert, '--tls-key', open]);
    expect(readable.stderr).toMatch(/the private key is not owner-only: mode 0644.*chmod 600.*\[VNUM_CONFIGURATION\]/);
    const wrongCert = apiCli(['--tls-cert', join(FIXTURES, 'README.md'), '--tls-key', keyFile()]);
    expect(wrongCert.stderr).toMatch(/invalid TLS certificate .*README\.md.*\[VNUM_CONFIGURATION\]/);
    const mismatched = apiCli(['--tls-cert', cert, '--tls-key', keyFile('other-key.pem')]);
    expect(mismatched.stderr).toMatch(/invalid TLS certificate .*key values mismatch.*\[VNUM_CONFIGURATION\]/);
    const missing = apiCli(['--tls-cert', join(dir, 'nope.pem'), '--tls-key', keyFile()]);
    expect(missing.stderr).toMatch(/invalid --tls-cert ".*nope\.pem": cannot read it: ENOENT/);
    expect(existsSync(db)).toBe(false);
  });

  it('the settings every command shares keep their own codes', () => {
    expect(apiCli(['--country', 'XX']).stderr).toMatch(/\[VNUM_INVALID_COUNTRY\]/);
    expect(apiCli([], { VNUM_ALLOWED_NUMBER_TYPES: 'everything' }).stderr).toMatch(/VNUM_ALLOWED_NUMBER_TYPES.*\[VNUM_INVALID_ARGUMENT\]/);
    expect(existsSync(db)).toBe(false);
  });

  it('a port already taken: VNUM_LISTEN_FAILED, exit 1', async () => {
    const port = await freePort();
    const holder = net.createServer().listen(port, '127.0.0.1');
    await new Promise((resolve) => holder.once('listening', resolve));
    try {
      const r = apiCli(['--host', '127.0.0.1', '--port', String(port)]);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE.*\\[VNUM_LISTEN_FAILED\\]`));
    } finally {
      holder.close();
    }
  });
});

describe('TLS and the probe', () => {
  it('serves HTTPS with the certificate and key files; plain HTTP on that port gets nothing; the probe answers 0 either way, 1 when nothing listens', async () => {
    const cert = join(FIXTURES, 'tls-cert.pem');
    const api = await start({ db, tls: true, args: ['--tls-cert', cert, '--tls-key', keyFile()] });
    const body = await new Promise<string>((resolve, reject) => {
      https
        .get(`${api.url}/v1/ready`, { ca: readFileSync(cert) }, (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (c: string) => (text += c));
          res.on('end', () => resolve(`${res.statusCode} ${text}`));
        })
        .on('error', reject);
    });
    expect(body).toBe('200 {"ready":true}');
    await expect(fetch(`http://127.0.0.1:${api.port}/v1/ready`)).rejects.toThrow();
    const asked = apiCli(['--probe', '--host', '127.0.0.1', '--port', String(api.port), '--tls-cert', cert, '--tls-key', keyFile()]);
    expect(asked.stdout).toMatch(/^ready: 200/);
    expect(asked.status).toBe(0);
    await api.stop();
    const gone = apiCli(['--probe', '--host', '127.0.0.1', '--port', String(api.port)]);
    expect(gone.status).toBe(1);
    expect(gone.stdout).toMatch(/^not ready: .*ECONNREFUSED/);
  }, 60_000);
});

describe('stopping and crashing', () => {
  it('SIGTERM: stops taking connections, lets the request in flight finish, closes the store, exits 0', async () => {
    const key = adminKey();
    expect(vnum(['--db', db, 'pool', 'add', '+442079460001', '+442079460002']).code).toBe(0);
    const api = await start({ db });
    const client = new ApiClient(api.url, key);
    await client.post('/v1/sessions', { id: 'o1', parties: [{ number: '+447911000001' }, { number: '+447911000002' }] });
    const handle = openDb(db);
    recordRoutedCall(handle, { uniqueid: '1.1', channel: 'PJSIP/carrier-1', session: 'o1', target: '+447911000002', at: Date.now() });
    handle.close();
    // a release that waits 1.5 s for its call to hang up (nothing hangs it up: no vnum serve)
    const inFlight = client.post('/v1/sessions/o1/release', { grace: '0s', hangup: true, wait: '1500ms' });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const exit = api.stop('SIGTERM');
    const answered = await inFlight;
    expect(answered.status).toBe(200);
    expect((answered.body as any).hangup).toEqual({ requestedAt: expect.any(String), requested: 1, ended: 0 });
    expect(await exit).toEqual({ code: 0, signal: null });
    expect(api.log()).toMatch(/"msg":"stopping: finishing requests in flight"[\s\S]*"msg":"vnum api stopped"/);
  });

  it('SIGKILL in the middle of a burst of creates, then a restart: every acknowledged create is there, the invariant holds, retries are safe', async () => {
    const key = adminKey();
    expect(vnum(['--db', db, 'pool', 'add', ...Array.from({ length: 20 }, (_, i) => `+4420794600${String(i + 1).padStart(2, '0')}`)]).code).toBe(0);
    const api = await start({ db });
    const client = new ApiClient(api.url, key);
    const body = (i: number) => ({ id: `burst-${i}`, parties: [{ number: `+447911${String(i).padStart(6, '0')}` }, { number: `+447400${String(i % 50).padStart(6, '0')}` }] });
    const acknowledged: string[] = [];
    const burst = Array.from({ length: 300 }, (_, i) =>
      client.post('/v1/sessions', body(i)).then(
        (r) => {
          if (r.status === 201) acknowledged.push(`burst-${i}`);
        },
        () => undefined, // cut by the kill
      ),
    );
    // killed once some are acknowledged and others are still in flight
    const deadline = Date.now() + 20_000;
    while (acknowledged.length < 20 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    process.kill(api.pid, 'SIGKILL');
    await Promise.all(burst);
    await api.stop();
    expect(acknowledged.length).toBeGreaterThanOrEqual(20);
    expect(acknowledged.length).toBeLessThan(300);

    const again = await start({ db });
    const handle = openDb(db, { mode: 'read' });
    const stored = new Set(handle.prepare<[], { id: string }>('SELECT id FROM session').all().map((r) => r.id));
    expect(invariantViolations(handle, Date.now())).toEqual([]);
    handle.close();
    for (const id of acknowledged) expect(stored.has(id), id).toBe(true);
    // the order system retries everything it sent: the acknowledged come back unchanged, the rest are created now
    const retried = new ApiClient(again.url, key);
    for (let i = 0; i < 300; i++) {
      const r = await retried.post('/v1/sessions', body(i));
      expect(r.status, `burst-${i}`).toBe(stored.has(`burst-${i}`) ? 200 : 201);
    }
  }, 60_000);
});

describe('logs', () => {
  it('never carry a real number: not from bodies, paths, queries or error messages that echo them', async () => {
    const key = adminKey();
    expect(vnum(['--db', db, 'pool', 'add', '+442079460001', '+442079460002']).code).toBe(0);
    const api = await start({ db, env: { VNUM_LOG_LEVEL: 'debug' } });
    const client = new ApiClient(api.url, key);
    const A = '+447911123456';
    const D = '+447400123456';
    await client.post('/v1/sessions', { id: 'o1', parties: [{ number: A }, { number: D }] });
    await client.get('/v1/sessions', { query: { party: A } });
    await client.get('/v1/route', { query: { caller: A, dialled: '+442079460001' } });
    await client.get('/v1/route', { query: { caller: `${A}&x`, dialled: '+442079460001' } });
    await client.post('/v1/sessions', { id: 'o2', parties: [{ number: A }, { number: '+449098790000' }] });
    await client.post('/v1/pool', { numbers: [D] });
    await client.get(`/v1/nothing/${A}`);
    await client.request('POST', '/v1/sessions', { raw: `{"id":"${A}",`, contentType: 'application/json' });
    // the last line is written after its answer went out
    const requests = () => api.log().split('\n').filter((l) => l.includes('"msg":"request"')).length;
    for (let waited = 0; requests() < 8 && waited < 5_000; waited += 20) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(requests()).toBe(8);
    const log = api.log();
    for (const number of [A, D, '+449098790000']) expect(log).not.toMatch(numberPattern(number));
  });
});

describe('beside vnum serve on one database', () => {
  it('a session created over HTTP routes in the running router at once; released, it stops', async () => {
    const key = adminKey();
    expect(vnum(['--db', db, 'pool', 'add', '+442079460001', '+442079460002']).code).toBe(0);
    const serve = await startServe({ db });
    try {
      const api = await start({ db });
      const client = new ApiClient(api.url, key);
      const created = (await client.post('/v1/sessions', { id: 'o1', parties: [{ number: '+447911000001' }, { number: '+447911000002' }] })).body as any;
      const { answer } = await routeCall(serve.port, '+447911000001', created.parties[1].maskedAs);
      expect(answer).toEqual({ status: 'BRIDGE', target: '+447911000002', cli: created.parties[0].maskedAs, session: 'o1' });
      await client.post('/v1/sessions/o1/release', { grace: '0s' });
      expect((await routeCall(serve.port, '+447911000001', created.parties[1].maskedAs)).answer?.status).toBe('ENDED');
      expectProblem(await client.post('/v1/sessions', { id: 'o1', parties: [{ number: '+447911000001' }, { number: '+447911000002' }] }), 409, 'VNUM_SESSION_ENDED');
    } finally {
      await serve.stop();
    }
  });
});
