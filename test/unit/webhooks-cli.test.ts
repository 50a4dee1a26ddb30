/**
 * `vnum webhooks` through the built CLI: deliver's settings judged before
 * anything is opened, status (text and JSON), retry and discard of parked
 * events with the error contract, enable and disable, and a real `vnum
 * webhooks deliver` process sending to a real receiver and stopping cleanly.
 */
import { chmodSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openDb } from '../../src/store/db.js';
import { sqliteDeliveryStore } from '../../src/webhooks/delivery-store.js';
import { startVnum, useCliDatabase, vnum } from '../support/cli.js';
import { startReceiver, type Receiver } from '../support/receiver.js';

const SECRET = '0123456789abcdef'.repeat(4);
const cli = useCliDatabase('vnum-webhooks-cli-');

function ok(...args: string[]): string {
  const r = cli.run(...args);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout;
}

function secretFile(mode = 0o600, text = `${SECRET}\n`): string {
  const file = join(cli.dir, 'webhook-secret');
  writeFileSync(file, text, { mode });
  chmodSync(file, mode);
  return file;
}

describe('vnum webhooks deliver: settings judged first', () => {
  const cases: Array<[string, string[], Record<string, string>, RegExp]> = [
    ['no receiver at all', [], {}, /^no receiver: set VNUM_WEBHOOK_URL/],
    ['a receiver without a secret', ['--url', 'https://orders.example.com/x'], {}, /need a signing secret/],
    ['a secret without a receiver', [], { VNUM_WEBHOOK_SECRET: SECRET }, /VNUM_WEBHOOK_SECRET given without a receiver URL/],
    ['this host, by address', ['--url', 'http://127.0.0.1:9/x'], { VNUM_WEBHOOK_SECRET: SECRET }, /^invalid --url "http:\/\/127\.0\.0\.1:9\/x": 127\.0\.0\.1 is loopback/],
    ['this host, by name, from the environment', [], { VNUM_WEBHOOK_URL: 'http://localhost:9/x', VNUM_WEBHOOK_SECRET: SECRET }, /^invalid VNUM_WEBHOOK_URL .*localhost resolves to .* loopback/],
    ['a cloud metadata address', ['--url', 'http://169.254.169.254/latest'], { VNUM_WEBHOOK_SECRET: SECRET }, /link-local/],
    ['credentials in the URL', ['--url', 'https://u:p@orders.example.com/x'], { VNUM_WEBHOOK_SECRET: SECRET }, /no credentials in the URL/],
    ['a timeout beyond its bounds', ['--url', 'https://orders.example.com/x', '--timeout', '5m'], { VNUM_WEBHOOK_SECRET: SECRET }, /^invalid --timeout "5m": from 100ms to 60s/],
    ['a short secret', ['--url', 'https://orders.example.com/x'], { VNUM_WEBHOOK_SECRET: 'hunter2' }, /secret 1 must be 32 to 256/],
  ];
  it.each(cases)('%s: exit 1, one line, VNUM_CONFIGURATION, no database', (_what, args, env, message) => {
    const nested = join(cli.dir, 'not-yet', 'vnum.db');
    const r = vnum(['--db', nested, 'webhooks', 'deliver', ...args], env);
    expect(r.code, r.stderr).toBe(1);
    const lines = r.stderr.split('\n').filter(Boolean);
    expect(lines).toHaveLength(1);
    expect(lines[0]!.replace(/^vnum: /, '')).toMatch(message);
    expect(lines[0]).toMatch(/ \[VNUM_CONFIGURATION\]$/);
    expect(existsSync(join(cli.dir, 'not-yet'))).toBe(false);
  });

  it('a secret file others can read is refused; the secret never appears in the error', () => {
    const file = secretFile(0o644);
    const r = vnum(['--db', cli.db, 'webhooks', 'deliver', '--url', 'https://orders.example.com/x', '--secret-file', file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^vnum: the webhook secret file ".*webhook-secret" is not owner-only: mode 0644 .* \[VNUM_CONFIGURATION\]\n$/);
    expect(r.stderr).not.toContain(SECRET);
    expect(existsSync(cli.db)).toBe(false);
  });

  it('deliver and enable open an existing database and never create one (vnum serve or the first add does)', () => {
    const deliver = vnum(['--db', cli.db, 'webhooks', 'deliver', '--url', 'http://127.0.0.1:9/x', '--allow-local'], { VNUM_WEBHOOK_SECRET: SECRET });
    const enable = vnum(['--db', cli.db, 'webhooks', 'enable']);
    for (const r of [deliver, enable]) {
      expect(r.code, r.stderr).not.toBe(0);
      expect(r.stderr).toMatch(/\[VNUM_DATABASE_NOT_FOUND\]\n$/);
    }
    expect(existsSync(cli.db)).toBe(false);
  });

  it('there is no flag for the secret itself: a command line shows in ps', () => {
    const r = vnum(['--db', cli.db, 'webhooks', 'deliver', '--secret', SECRET]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/unknown option '--secret'.*\[VNUM_USAGE\]/);
  });
});

// A dozen runs of the built CLI per test: a loaded machine takes seconds for each.
describe('vnum webhooks status, enable, disable, retry, discard', { timeout: 90_000 }, () => {
  it('status: recording off on a new database; enable turns it on and events are counted; --json has the documented shape', () => {
    ok('pool', 'add', '+442079460001', '+442079460002');
    expect(ok('webhooks', 'status')).toMatch(/^recording {3}off/m);
    expect(ok('webhooks', 'enable')).toMatch(/recorded from now on/);
    ok('session', 'create', 'order-1', '+447911123456', '+447911123457', '--ttl', '1h');
    ok('session', 'release', 'order-1');
    const text = ok('webhooks', 'status');
    expect(text).toMatch(/^recording {3}on since \d{4}-/m);
    expect(text).toMatch(/^deliverer {3}none running$/m);
    expect(text).toMatch(/^backlog {5}2: 1 pending \(0 being retried\), 1 queued behind earlier events of their session \(0 behind a parked one\), 0 parked$/m);
    const json = JSON.parse(ok('webhooks', 'status', '--json'));
    expect(Object.keys(json)).toEqual(['recording', 'events', 'backlog', 'oldestUndeliveredAt', 'counters', 'deliverers', 'parked']);
    expect(json).toMatchObject({
      recording: { on: true, since: expect.stringMatching(/Z$/) },
      events: { pending: 1, retrying: 0, queued: 1, blocked: 0, parked: 0 },
      backlog: 2,
      counters: { delivered: 0, failedAttempts: 0, parked: 0, discarded: 0, refusalsDropped: 0, refusedNoSession: 0, refusedInvalidCaller: 0 },
      deliverers: [],
      parked: [],
    });
    expect(ok('webhooks', 'disable')).toMatch(/no longer recorded/);
    ok('session', 'create', 'order-2', '+447911123458', '+447911123459');
    expect(JSON.parse(ok('webhooks', 'status', '--json'))).toMatchObject({ recording: { on: false, since: null }, backlog: 2 });
  });

  it('retry and discard: parked events by id or --all; a wrong id changes nothing and says why', async () => {
    ok('pool', 'add', '+442079460001');
    ok('webhooks', 'enable');
    ok('session', 'create', 'order-1', '+447911123456', '+447911123457');
    // Park the event as a deliverer would after its window.
    const db = openDb(cli.db);
    try {
      const outbox = sqliteDeliveryStore(db);
      const [event] = await outbox.claim(Date.now(), 1, 1_000);
      await outbox.failed(event!, Date.now(), 'HTTP 503: try later', { backoffMinMs: 1, backoffMaxMs: 1, retryForMs: 0 });
    } finally {
      db.close();
    }
    const status = JSON.parse(ok('webhooks', 'status', '--json'));
    const id = status.parked[0].id as string;
    expect(status.parked[0]).toMatchObject({ type: 'session.created', session: 'order-1', attempts: 1, lastError: 'HTTP 503: try later' });
    expect(ok('webhooks', 'status')).toMatch(new RegExp(`^${id}  session\\.created  order-1  1 .* HTTP 503: try later$`, 'm'));

    const usage = cli.run('webhooks', 'retry');
    expect(usage.code).toBe(1);
    expect(usage.stderr).toMatch(/or --all \[VNUM_USAGE\]/);
    const unknown = cli.run('webhooks', 'retry', id, 'evt_00000000000000000000000000000000');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/^vnum: no parked event evt_0{32}: .* \[VNUM_EVENT_NOT_PARKED\]\n$/);
    expect(JSON.parse(ok('webhooks', 'status', '--json')).events.parked).toBe(1); // all or nothing
    const bad = cli.run('webhooks', 'discard', 'evt_x');
    expect(bad.stderr).toMatch(/invalid event id "evt_x".*\[VNUM_INVALID_ARGUMENT\]/);

    expect(JSON.parse(ok('webhooks', 'retry', id, '--json'))).toEqual({ retried: [id] });
    expect(JSON.parse(ok('webhooks', 'status', '--json')).events).toMatchObject({ parked: 0, pending: 1 });
    expect(cli.run('webhooks', 'discard', '--all').stdout).toBe('0 parked events discarded\n');
  });
});

describe('a vnum webhooks deliver process', { timeout: 90_000 }, () => {
  let receiver: Receiver | undefined;
  afterEach(async () => receiver?.close());

  it('delivers what the CLI records, signed, and stops cleanly on SIGTERM', async () => {
    receiver = await startReceiver({ secrets: [SECRET] });
    ok('pool', 'add', '+442079460001', '+442079460002');
    const deliver = startVnum(['--db', cli.db, 'webhooks', 'deliver', '--url', receiver.url, '--secret-file', secretFile(), '--allow-local'], {
      VNUM_WEBHOOK_BACKOFF_MIN: '50ms',
    });
    const deadline = Date.now() + 15_000;
    while (!existsSync(cli.db) || !JSON.parse(ok('webhooks', 'status', '--json')).recording.on) {
      if (Date.now() > deadline) throw new Error('the deliverer did not start');
      await new Promise((r) => setTimeout(r, 50));
    }
    ok('session', 'create', 'order-1', '+447911123456', '+447911123457');
    while (receiver.delivered().length < 1) {
      if (Date.now() > deadline) throw new Error('nothing delivered');
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(receiver.delivered()[0]).toMatchObject({ verified: true, event: { type: 'session.created', session: 'order-1' } });
    expect(receiver.delivered()[0]!.headers['user-agent']).toMatch(/^vnum-webhooks\/\d+\.\d+\.\d+$/);
    process.kill(deliver.pid, 'SIGTERM');
    const result = await deliver.done;
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toMatch(/"vnum webhooks stopped"/);
    expect(result.stderr).not.toContain(SECRET);
    const status = JSON.parse(ok('webhooks', 'status', '--json'));
    expect(status.deliverers[0]).toMatchObject({ url: receiver.url, stopped: true });
    expect(status.counters.delivered).toBe(1);
  });
});
