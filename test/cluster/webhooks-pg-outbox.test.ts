/**
 * The webhook outbox on the authority (cluster mode, PostgreSQL migration 7):
 * two built `vnum api --authority` processes create and release sessions at
 * once while recording; built `vnum webhooks deliver --authority` processes
 * send every event to a real HTTP receiver: each once, signed, in order per
 * session, with no real number; two deliverers at once never send one event
 * twice; a receiver that is down gets the events once it is back; a
 * deliverer SIGKILLed mid-flight loses nothing (its leases run out);
 * session.ended arrives after the TTL, and at a sliding session's end as a
 * node pushed it; recording off writes no row;
 * status, retry and discard through the CLI with --authority; bad input and
 * an unreachable authority refused with a clear error and a non-zero exit.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { PgTarget } from '../../src/replica/stream.js';
import { ApiClient, freePort, startApi, type ApiProcess } from '../support/api.js';
import { startVnum, vnum, type CliResult } from '../support/cli.js';
import { clusterSuite } from '../support/cluster/suite.js';
import { DIDS, partyNumber } from '../support/cluster/writer.js';
import { firstDeliveries, orderViolations, startReceiver, type Receiver } from '../support/receiver.js';
import { sleep } from '../support/wait.js';

const SECRET = 'fedcba9876543210'.repeat(4);
const quietEnv = { VNUM_AUTHORITY: undefined, VNUM_DB: undefined, VNUM_LOG_LEVEL: undefined, VNUM_LOG_REDACT: undefined, VNUM_DEFAULT_COUNTRY: 'GB' };
const url = (t: PgTarget): string => `postgres://${t.user}@${t.host}:${t.port}/${t.database}`;

/** Poll `probe` (sync or async) every 100 ms until it gives a value; fails naming `what` after `timeoutMs`. */
async function waitFor<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

interface Deliverer {
  pid: number;
  done: Promise<CliResult>;
}

clusterSuite('the webhook outbox on the authority (cluster mode)', (env) => {
  let target: PgTarget;
  let client: pg.Client;
  let key: string;
  let receiver: Receiver;
  const dir = mkdtempSync(join(tmpdir(), 'vnum-webhooks-pg-'));
  const apis: ApiProcess[] = [];
  const deliverers: Deliverer[] = [];
  const cli = (...args: string[]): CliResult => vnum([...args, '--authority', url(target)], quietEnv);
  const count = async (sql: string): Promise<number> => Number((await client.query(sql)).rows[0].n);

  const deliver = (...args: string[]): Deliverer => {
    const d = startVnum(
      ['webhooks', 'deliver', '--authority', url(target), '--url', receiver.url, '--allow-local', '--backoff-min', '100ms', '--backoff-max', '300ms', ...args],
      { ...quietEnv, VNUM_WEBHOOK_SECRET: SECRET, VNUM_LOG_LEVEL: 'info' },
    );
    deliverers.push(d);
    return d;
  };
  const stop = async (d: Deliverer, signal: NodeJS.Signals = 'SIGTERM'): Promise<CliResult> => {
    try {
      process.kill(d.pid, signal);
    } catch {
      /* gone already */
    }
    return d.done;
  };
  const liveDeliverers = async (): Promise<number> =>
    count(`SELECT count(*) AS n FROM webhook_deliverer WHERE NOT stopped AND updated_at > ${Date.now() - 3_000}`);

  beforeAll(async () => {
    ({ target, client } = await env.authority()); // migrated, the ten DIDS in the pool
    const made = vnum(['apikey', 'create', '--name', 'test', '--scope', 'admin', '--json', '--authority', url(target)], quietEnv);
    expect(made.code, made.stderr).toBe(0);
    key = JSON.parse(made.stdout).key;
    receiver = await startReceiver({ secrets: [SECRET] });
    for (let i = 0; i < 2; i++) {
      apis.push(await startApi({ db: join(dir, 'unused.db'), env: { VNUM_AUTHORITY: url(target), VNUM_LOG_LEVEL: 'info' }, args: ['--rate-limit', '0'] }));
    }
  }, 60_000);
  afterAll(async () => {
    await Promise.all(deliverers.map((d) => stop(d, 'SIGKILL')));
    await Promise.all(apis.map((api) => api.stop('SIGKILL')));
    await receiver?.close();
    await client?.end();
    rmSync(dir, { recursive: true, force: true });
  });

  it('recording off: creates and releases write no outbox row; vnum webhooks enable --authority turns it on', async () => {
    const http = new ApiClient(apis[0]!.url, key);
    const made = await http.post('/v1/sessions', { id: 'off-1', parties: [{ number: partyNumber(1) }, { number: partyNumber(2) }], ttl: '1h' });
    expect(made.status).toBe(201);
    expect((await http.post('/v1/sessions/off-1/release', { grace: '0s' })).status).toBe(200);
    expect(await count('SELECT count(*) AS n FROM webhook_event')).toBe(0);
    expect(await count('SELECT count(*) AS n FROM webhook_session_end')).toBe(0);
    const off = cli('webhooks', 'status', '--json');
    expect(off.code, off.stderr).toBe(0);
    expect(JSON.parse(off.stdout)).toMatchObject({ recording: { on: false, since: null }, backlog: 0 });

    const enabled = cli('webhooks', 'enable');
    expect(enabled.code, enabled.stderr).toBe(0);
    expect(enabled.stdout).toBe('webhook events recorded from now on\n');
    const on = JSON.parse(cli('webhooks', 'status', '--json').stdout);
    expect(on.recording.on).toBe(true);
    // The outbox's tables stay on the authority: not one of them is published to the nodes.
    const { rows: published } = await client.query("SELECT tablename FROM pg_publication_tables WHERE pubname = 'vnum_replica' AND tablename LIKE 'webhook%'");
    expect(published).toEqual([]);
  }, 60_000);

  it('appendPgEvent from 8 connections at once to one session: one event due, the rest queued behind it in seq order; closing promotes the next', async () => {
    const { appendPgEvent } = await import('../../src/webhooks/pg-outbox.js');
    const { closePgEvent } = await import('../../src/webhooks/pg-outbox.js');
    const connections = await Promise.all(
      Array.from({ length: 8 }, async () => {
        const c = env.cluster.client(target);
        await c.connect();
        return c;
      }),
    );
    try {
      await Promise.all(
        connections.map(async (c, w) => {
          for (let i = 0; i < 10; i++) {
            await c.query('BEGIN');
            await appendPgEvent(c, { type: 'call.bridged', session: 'lane-1', occurredAt: Date.now(), data: { w, i } }, Date.now());
            await sleep(Math.random() * 3); // hold the lane a moment: the others' appends wait, not race
            await c.query('COMMIT');
          }
        }),
      );
      const { rows } = await client.query("SELECT seq::int, state FROM webhook_event WHERE session_id = 'lane-1' ORDER BY seq");
      expect(rows).toHaveLength(80);
      expect(rows.map((r) => r.state)).toEqual(['pending', ...Array(79).fill('queued')]);
      const c = connections[0]!;
      await c.query('BEGIN');
      expect(await closePgEvent(c, { seq: rows[0].seq, session: 'lane-1' }, 'discarded', Date.now())).toBe(true);
      expect(await closePgEvent(c, { seq: rows[0].seq, session: 'lane-1' }, 'discarded', Date.now())).toBe(false);
      await c.query('COMMIT');
      const { rows: after } = await client.query("SELECT seq::int, state FROM webhook_event WHERE session_id = 'lane-1' AND done_at IS NULL ORDER BY seq LIMIT 2");
      expect(after).toEqual([{ seq: rows[1].seq, state: 'pending' }, { seq: rows[2].seq, state: 'queued' }]);
    } finally {
      await client.query("UPDATE webhook_event SET state = 'discarded', done_at = 1, next_at = NULL WHERE session_id = 'lane-1'");
      await client.query("UPDATE webhook_counter SET value = 0 WHERE name = 'discarded'");
      await Promise.all(connections.map((c) => c.end()));
    }
  }, 60_000);

  it('two APIs creating and releasing at once, two deliverers: every event once, signed, in order per session, no real number; session.ended after the TTL', async () => {
    const clients = apis.map((api) => new ApiClient(api.url, key));
    const sessions: string[] = [];
    const parties = new Map<string, string[]>();
    // 4 workers (2 per API), 10 sessions each: every other one released at once (grace 0), the rest end by their 3 s TTL.
    await Promise.all(
      [0, 1, 2, 3].map(async (w) => {
        const http = clients[w % 2]!;
        for (let i = 0; i < 10; i++) {
          const id = `s-${w}-${i}`;
          const pair = [partyNumber(100 + w * 20 + i * 2), partyNumber(101 + w * 20 + i * 2)];
          const made = await http.post('/v1/sessions', { id, parties: pair.map((number) => ({ number })), ttl: '3s' });
          expect(made.status, JSON.stringify(made.body)).toBe(201);
          sessions.push(id);
          parties.set(id, pair);
          // Released through the other API: the release's event follows the create's, whichever instance wrote it.
          if (i % 2 === 0) expect((await clients[(w + 1) % 2]!.post(`/v1/sessions/${id}/release`, { grace: '0s' })).status).toBe(200);
        }
      }),
    );
    // The created and released events are in PostgreSQL, each session's lane with one due event at most.
    expect(await count("SELECT count(*) AS n FROM webhook_event WHERE type = 'session.created'")).toBe(40);
    expect(await count("SELECT count(*) AS n FROM webhook_event WHERE type = 'session.released'")).toBe(20);
    expect(await count("SELECT count(*) AS n FROM (SELECT session_id FROM webhook_event WHERE state = 'pending' GROUP BY session_id HAVING count(*) > 1) x")).toBe(0);

    const started = Date.now();
    const metricsPort = await freePort();
    const two = [deliver('--concurrency', '4', '--metrics-port', String(metricsPort)), deliver('--concurrency', '4')];
    await waitFor('two deliverers reporting', async () => ((await liveDeliverers()) === 2 ? true : undefined), 20_000);
    // created + ended for all 40, released for 20.
    await waitFor('100 events delivered', () => (receiver.delivered().length >= 100 ? true : undefined), 30_000);
    await sleep(1_500); // anything sent twice would arrive now
    const ours = receiver.received.filter((r) => r.event.session.startsWith('s-'));
    const ids = ours.map((r) => r.event.id);
    expect(new Set(ids).size).toBe(100);
    expect(ids.length, 'an event was sent twice').toBe(100);
    expect(orderViolations(ours)).toEqual([]);
    for (const r of ours) {
      expect(r.verified).toBe(true);
      expect(r.headers['vnum-event-id']).toBe(r.event.id);
      for (const n of parties.get(r.event.session)!) expect(r.body).not.toContain(n.slice(-9));
      for (const p of r.event.data.session.parties) expect(Object.keys(p)).toEqual(['maskedAs']);
    }
    const bySession = firstDeliveries(ours);
    expect([...bySession.keys()].sort()).toEqual([...sessions].sort());
    for (const [id, events] of bySession) {
      const released = Number(id.split('-')[2]) % 2 === 0;
      expect(events.map((e) => e.event.type), id).toEqual(released ? ['session.created', 'session.released', 'session.ended'] : ['session.created', 'session.ended']);
      const ended = events.at(-1)!;
      expect(ended.event.data.cause).toBe(released ? 'release' : 'ttl');
      expect(ended.event.data.session).toMatchObject({ id, state: 'ended' });
      // After the TTL: not before the session's end.
      expect(Date.parse(ended.event.occurredAt)).toBe(Date.parse(ended.event.data.session.endsAt));
      expect(ended.at).toBeGreaterThanOrEqual(Date.parse(ended.event.data.session.endsAt));
    }
    expect(Date.now() - started).toBeLessThan(30_000);
    const status = JSON.parse(cli('webhooks', 'status', '--json').stdout);
    expect(status).toMatchObject({ backlog: 0, counters: { delivered: 100 } });
    expect(status.deliverers.filter((d: { stopped: boolean }) => !d.stopped)).toHaveLength(2);
    // The single box's webhook series, from the authority's figures (read every 5 s in the background).
    const scraped = await waitFor('metrics with 100 delivered', async () => {
      const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      return /^vnum_webhook_deliveries_total 100$/m.test(text) ? text : undefined;
    }, 15_000);
    expect(scraped).toMatch(/^vnum_webhook_recording 1$/m);
    expect(scraped).toMatch(/^vnum_webhook_backlog 0$/m);
    expect(scraped).toMatch(/^vnum_webhook_events\{state="parked"\} 0$/m);
    for (const d of two) expect((await stop(d)).code).toBe(0);
    expect(JSON.parse(cli('webhooks', 'status', '--json').stdout).deliverers.every((d: { stopped: boolean }) => d.stopped)).toBe(true);
  }, 90_000);

  it('the receiver down: retried, then delivered once it is back; a deliverer SIGKILLed mid-flight loses nothing', async () => {
    const http = new ApiClient(apis[1]!.url, key);
    await receiver.down();
    const d = deliver('--timeout', '1s');
    expect((await http.post('/v1/sessions', { id: 'down-1', parties: [{ number: partyNumber(500) }, { number: partyNumber(501) }], ttl: '1h' })).status).toBe(201);
    await waitFor('failed attempts', () => ((JSON.parse(cli('webhooks', 'status', '--json').stdout).counters.failedAttempts as number) >= 2 ? true : undefined), 20_000);
    expect(receiver.received.some((r) => r.event.session === 'down-1')).toBe(false);
    await receiver.up();
    await waitFor('down-1 delivered', () => (receiver.delivered().some((r) => r.event.session === 'down-1') ? true : undefined), 10_000);

    // Mid-flight: the receiver holds the request; the deliverer is killed while it waits.
    receiver.answer = (r) => (r.event.session === 'kill-1' ? 'hang' : { status: 200 });
    expect((await http.post('/v1/sessions', { id: 'kill-1', parties: [{ number: partyNumber(502) }, { number: partyNumber(503) }], ttl: '1h' })).status).toBe(201);
    await waitFor('kill-1 in flight', () => (receiver.received.some((r) => r.event.session === 'kill-1') ? true : undefined), 10_000);
    const killedAt = Date.now();
    expect((await stop(d, 'SIGKILL')).code).toBe(null);
    receiver.answer = () => ({ status: 200 });
    deliver('--timeout', '1s');
    await waitFor('kill-1 delivered by the next deliverer', () => (receiver.delivered().some((r) => r.event.session === 'kill-1') ? true : undefined), 15_000);
    const copies = receiver.received.filter((r) => r.event.session === 'kill-1');
    expect(copies.length).toBe(2);
    expect(copies[0]!.event.id).toBe(copies[1]!.event.id);
    // Not before its lease ran out (timeout 1 s + 1 s).
    expect(copies[1]!.at - killedAt).toBeGreaterThan(500);
    expect(await count("SELECT count(*) AS n FROM webhook_event WHERE session_id = 'kill-1' AND state = 'delivered'")).toBe(1);

    // A sliding session whose end a node pushed (vnum serve --authority: only session.ends_at and the bridges move):
    // session.ended comes once, at the pushed end, not at the end tracked at its create.
    const { pgSlider } = await import('../../src/authority/pg-slide.js');
    const made = await http.post<{ endsAt: string }>('/v1/sessions', { id: 'slide-1', parties: [{ number: partyNumber(504) }, { number: partyNumber(505) }], ttl: '1h', idleTimeout: '5s' });
    expect(made.status).toBe(201);
    const firstEnd = Date.parse(made.body.endsAt);
    await sleep(2_000);
    const slider = pgSlider(target);
    try {
      expect(await slider.send({ session: 'slide-1', at: Date.now(), keepAlive: false })).toBe('pushed');
    } finally {
      await slider.close();
    }
    const pushedEnd = Number((await client.query("SELECT ends_at FROM session WHERE id = 'slide-1'")).rows[0].ends_at);
    expect(pushedEnd).toBeGreaterThan(firstEnd + 1_500);
    await waitFor('slide-1 ended', () => (receiver.delivered().some((r) => r.event.session === 'slide-1' && r.event.type === 'session.ended') ? true : undefined), 15_000);
    await sleep(1_500);
    const slid = receiver.received.filter((r) => r.event.session === 'slide-1');
    expect(slid.map((r) => r.event.type)).toEqual(['session.created', 'session.ended']);
    expect(Date.parse(slid[1]!.event.data.session.endsAt)).toBe(pushedEnd);
    expect(slid[1]!.event.data.cause).toBe('idle');
    expect(slid[1]!.at).toBeGreaterThanOrEqual(pushedEnd);
  }, 90_000);

  it('parked events: status, retry and discard with --authority; bad ids and an unreachable authority refused', async () => {
    for (const d of deliverers) await stop(d, 'SIGTERM');
    const http = new ApiClient(apis[0]!.url, key);
    receiver.answer = (r) => (r.event.session === 'park-1' ? { status: 503 } : { status: 200 });
    const d = deliver('--retry-for', '1s');
    expect((await http.post('/v1/sessions', { id: 'park-1', parties: [{ number: partyNumber(600) }, { number: partyNumber(601) }], ttl: '1h' })).status).toBe(201);
    expect((await http.post('/v1/sessions/park-1/release', { grace: '1h' })).status).toBe(200);
    const parked = await waitFor('park-1 parked', () => {
      const s = JSON.parse(cli('webhooks', 'status', '--json').stdout);
      return s.parked.length === 1 ? s : undefined;
    }, 20_000);
    expect(parked.parked[0]).toMatchObject({ type: 'session.created', session: 'park-1', lastError: 'HTTP 503' });
    expect(parked.events).toMatchObject({ parked: 1, queued: 1, blocked: 1 });
    const id = parked.parked[0].id as string;
    const text = cli('webhooks', 'status');
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(new RegExp(`^${id}  session\\.created  park-1 .* HTTP 503$`, 'm'));

    // Bad input: a malformed id, an id not parked; nothing changes.
    const bad = cli('webhooks', 'retry', 'evt_nope');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/invalid event id "evt_nope".*\[VNUM_INVALID_ARGUMENT\]/);
    const notParked = cli('webhooks', 'discard', 'evt_0123456789abcdef0123456789abcdef');
    expect(notParked.code).toBe(1);
    expect(notParked.stderr).toMatch(/no parked event evt_0123456789abcdef0123456789abcdef.*\[VNUM_EVENT_NOT_PARKED\]/);
    const unreachable = vnum(['webhooks', 'status', '--authority', url({ ...target, port: 1 })], quietEnv);
    expect(unreachable.code).toBe(2);
    expect(unreachable.stderr).toMatch(/cannot be reached.*\[VNUM_AUTHORITY_UNAVAILABLE\]/);
    expect(await count("SELECT count(*) AS n FROM webhook_event WHERE state = 'parked'")).toBe(1);

    // Retry: due again, parked again (the receiver still refuses); then discard: the session's next event follows.
    const retried = cli('webhooks', 'retry', id, '--json');
    expect(retried.code, retried.stderr).toBe(0);
    expect(JSON.parse(retried.stdout)).toEqual({ retried: [id] });
    await waitFor('parked again', async () => ((await count(`SELECT count(*) AS n FROM webhook_event WHERE id = '${id}' AND state = 'parked'`)) === 1 ? true : undefined), 20_000);
    const discarded = cli('webhooks', 'discard', '--all');
    expect(discarded.code, discarded.stderr).toBe(0);
    expect(discarded.stdout).toBe('1 parked event discarded\n');
    receiver.answer = () => ({ status: 200 });
    await waitFor('park-1 released delivered', () => (receiver.delivered().some((r) => r.event.session === 'park-1' && r.event.type === 'session.released') ? true : undefined), 10_000);
    const after = JSON.parse(cli('webhooks', 'status', '--json').stdout);
    expect(after).toMatchObject({ backlog: 0, counters: { discarded: 1 } });
    expect(after.counters.parked).toBeGreaterThanOrEqual(2);
    expect((await stop(d)).code).toBe(0);

    // Disable: no more rows.
    expect(cli('webhooks', 'disable').code).toBe(0);
    const before = await count('SELECT count(*) AS n FROM webhook_event');
    expect((await http.post('/v1/sessions', { id: 'off-2', parties: [{ number: partyNumber(700) }, { number: partyNumber(701) }], ttl: '1h' })).status).toBe(201);
    expect(await count('SELECT count(*) AS n FROM webhook_event')).toBe(before);
  }, 90_000);

  it('deliver refuses an unreachable authority, and --metrics-port without --authority, with a clear error', () => {
    const single = vnum(
      ['--db', join(dir, 'single.db'), 'webhooks', 'deliver', '--url', receiver.url, '--allow-local', '--metrics-port', '9'],
      { ...quietEnv, VNUM_WEBHOOK_SECRET: SECRET },
    );
    expect(single.code).toBe(1);
    expect(single.stderr).toMatch(/--metrics-port is for --authority .*\[VNUM_CONFIGURATION\]/);
    const r = vnum(
      ['webhooks', 'deliver', '--authority', url({ ...target, port: 1 }), '--url', receiver.url, '--allow-local'],
      { ...quietEnv, VNUM_WEBHOOK_SECRET: SECRET },
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/cannot be reached.*\[VNUM_AUTHORITY_UNAVAILABLE\]/);
  });
});
