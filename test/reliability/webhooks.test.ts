/**
 * Webhook delivery under failure, with real processes: the built `vnum
 * webhooks deliver`, a real HTTP receiver on loopback, sessions written by
 * another connection meanwhile (docs/reliability.md, "11. Webhooks").
 *
 * 1. Two deliverers at once on one database, each killed with SIGKILL at
 *    random moments and restarted, while the receiver answers slowly, 500
 *    now and then, or hangs: every event is received, each session's in
 *    its order (an event first received only after the one before it was
 *    answered 2xx), session.ended once per session.
 * 2. The receiver down for a long stretch while events keep coming: nothing
 *    is lost or parked, and everything arrives in order once it is back.
 * 3. A flood of refused calls through the built `vnum serve`: every call
 *    answered, call.refused bounded per session, the rest counted.
 *
 * Timings are compressed, and say so: back-off from 20-100 ms to 0.2-2 s
 * (10 s to 1 h by default), an outage of 12 s standing for minutes, a
 * timeout of 300 ms (10 s by default; the lease after a kill is twice it).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { createSession, releaseSession } from '../../src/session/sessions.js';
import { openDb, writeTransaction, type Db } from '../../src/store/db.js';
import { setRecording } from '../../src/webhooks/outbox.js';
import { webhookStatus } from '../../src/webhooks/status.js';
import { VNUM_BIN } from '../support/cli.js';
import { firstDeliveries, orderViolations, startReceiver, type Receiver } from '../support/receiver.js';
import { londonDids, mobile, party, seedPool } from '../support/store.js';
import { startServe } from '../support/serve.js';
import { sleep } from '../support/wait.js';
import { prng, routeCall, sizeFromEnv } from './lib.js';

const KILLS = sizeFromEnv('VNUM_RELIABILITY_WEBHOOK_KILLS', 20);
const SESSIONS = sizeFromEnv('VNUM_RELIABILITY_WEBHOOK_SESSIONS', 60);
const SECRET = 'c0ffee'.repeat(8);
const REAL = (i: number) => [mobile(1_000 + i), mobile(5_000 + i)] as const;

let dir: string;
let db: Db;
let dbPath: string;
let secretFile: string;
let receiver: Receiver;
const running = new Set<ChildProcess>();

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vnum-rel-webhooks-'));
  secretFile = join(dir, 'secret');
  writeFileSync(secretFile, `${SECRET}\n`, { mode: 0o600 });
  chmodSync(secretFile, 0o600);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(async () => {
  for (const child of running) child.kill('SIGKILL');
  running.clear();
  await receiver?.close();
  db?.close();
});

async function freshStore(name: string): Promise<void> {
  dbPath = join(dir, `${name}.db`);
  db = openDb(dbPath);
  seedPool(db, londonDids(12));
  writeTransaction(db, () => setRecording(db, true, Date.now()));
  receiver = await startReceiver({ secrets: [SECRET] });
}

/** The built deliverer, started: resolves once it says it is delivering. */
async function startDeliverer(env: Record<string, string> = {}): Promise<ChildProcess> {
  const child = spawn(process.execPath, [VNUM_BIN, '--db', dbPath, 'webhooks', 'deliver', '--url', receiver.url, '--secret-file', secretFile, '--allow-local'], {
    env: { ...process.env, VNUM_WEBHOOK_TIMEOUT: '300ms', VNUM_WEBHOOK_BACKOFF_MIN: '20ms', VNUM_WEBHOOK_BACKOFF_MAX: '200ms', VNUM_WEBHOOK_CONCURRENCY: '4', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  running.add(child);
  child.once('exit', () => running.delete(child));
  let output = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (output += c));
  const deadline = Date.now() + 15_000;
  while (!output.includes('delivering from this store')) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`the deliverer did not start: ${output}`);
    await sleep(20);
  }
  return child;
}

function kill(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

/** The outbox's events per session, in write order. */
function outboxBySession(): Map<string, Array<{ id: string; type: string; seq: number }>> {
  const bySession = new Map<string, Array<{ id: string; type: string; seq: number }>>();
  for (const row of db.prepare<[], { id: string; type: string; seq: number; session: string }>('SELECT id, type, seq, session_id AS session FROM webhook_event ORDER BY seq').all()) {
    const list = bySession.get(row.session) ?? [];
    list.push(row);
    bySession.set(row.session, list);
  }
  return bySession;
}

async function drained(timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = webhookStatus(db);
    if (status.backlog === 0 && db.prepare<[], number>('SELECT count(*) FROM webhook_session_end').pluck().get() === 0) return;
    if (Date.now() > deadline) throw new Error(`backlog left: ${JSON.stringify(status.events)}`);
    await sleep(100);
  }
}

/** What every run must show: everything received, in order per session, signed, ended once, no real number. */
function audit(): { events: number; requests: number; duplicates: number } {
  const outbox = outboxBySession();
  const received = firstDeliveries(receiver.received);
  expect(orderViolations(receiver.received)).toEqual([]);
  let events = 0;
  for (const [session, list] of outbox) {
    events += list.length;
    expect(received.get(session)?.map((r) => r.event.id), session).toEqual(list.map((e) => e.id));
    expect(list.filter((e) => e.type === 'session.ended'), session).toHaveLength(1);
  }
  expect(receiver.received.every((r) => r.verified)).toBe(true);
  const bodies = receiver.received.map((r) => r.body).join('\n');
  for (let i = 0; i < SESSIONS; i++) for (const n of REAL(i)) expect(bodies).not.toContain(n.slice(-9));
  const requests = receiver.received.length;
  return { events, requests, duplicates: requests - new Set(receiver.received.map((r) => r.event.id)).size };
}

it('two deliverers, SIGKILLed at random and mid-request, a slow flaky receiver: every event, in order per session, ended once', async () => {
  await freshStore('kills');
  const random = prng(13);
  // Slow enough that kills land mid-flight; 1 in 8 answered 500, 1 in 40 never answered.
  receiver.answer = () => {
    const roll = random();
    if (roll < 0.025) return 'hang';
    return roll < 0.15 ? { status: 500, body: 'try later', delayMs: 10 } : { status: 200, delayMs: 20 + Math.floor(random() * 80) };
  };
  const deliverers = [await startDeliverer(), await startDeliverer()];
  // The writer: sessions created and released (grace 0 or 300 ms: session.ended follows by the clock) while the kills go on.
  let written = 0;
  const writer = (async () => {
    for (let i = 0; i < SESSIONS; i++) {
      const [first, second] = REAL(i);
      createSession(db, { id: `order-${i}`, first: party(first), second: party(second), now: Date.now() });
      await sleep(20 + random() * 60);
      releaseSession(db, `order-${i}`, random() < 0.5 ? 0 : 300, Date.now());
      written++;
      await sleep(10 + random() * 40);
    }
  })();
  const started = Date.now();
  let kills = 0;
  let midRequest = 0;
  while (kills < KILLS) {
    if (kills % 2 === 0) {
      // At a random moment, one of the two.
      await sleep(100 + random() * 300);
      const which = (kills / 2) % 2;
      await kill(deliverers[which]!);
      deliverers[which] = await startDeliverer();
      kills++;
    } else {
      // While the receiver holds a request open: both, so the one sending it surely dies mid-request.
      const deadline = Date.now() + 5_000;
      while (receiver.open() === 0 && Date.now() < deadline) await sleep(2);
      if (receiver.open() > 0) midRequest++;
      await Promise.all(deliverers.map(kill));
      deliverers[0] = await startDeliverer();
      deliverers[1] = await startDeliverer();
      kills += 2;
    }
  }
  await writer;
  await drained(60_000);
  await sleep(300);
  const figures = audit();
  console.log(
    `webhooks under SIGKILL: ${kills} kills of 2 deliverers (${midRequest} rounds with a request open), ${written} sessions, ` +
      `${figures.events} events, ${figures.requests} requests (${figures.duplicates} repeats: 500s, hangs, kills), ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
  expect(figures.events).toBe(SESSIONS * 3);
  expect(midRequest).toBeGreaterThan(0);
}, 180_000);

it('a receiver down for a long stretch while events keep coming: nothing lost, nothing parked, all in order once it is back', async () => {
  await freshStore('outage');
  await startDeliverer({ VNUM_WEBHOOK_BACKOFF_MIN: '100ms', VNUM_WEBHOOK_BACKOFF_MAX: '2s', VNUM_WEBHOOK_RETRY_FOR: '10m' });
  await receiver.down();
  const downAt = Date.now();
  for (let i = 0; i < SESSIONS; i++) {
    const [first, second] = REAL(i);
    createSession(db, { id: `order-${i}`, first: party(first), second: party(second), now: Date.now() });
    releaseSession(db, `order-${i}`, 0, Date.now());
    await sleep(12_000 / SESSIONS);
  }
  const during = webhookStatus(db);
  expect(during.events.parked).toBe(0);
  expect(during.counters.failed_attempts).toBeGreaterThan(SESSIONS);
  await receiver.up();
  const upAt = Date.now();
  await drained(30_000);
  const figures = audit();
  console.log(
    `webhooks after an outage: down ${((upAt - downAt) / 1000).toFixed(1)} s, ${figures.events} events waiting, ${during.counters.failed_attempts} failed attempts meanwhile, ` +
      `all delivered ${((Date.now() - upAt) / 1000).toFixed(1)} s after it came back (back-off capped at 2 s)`,
  );
  expect(figures.events).toBe(SESSIONS * 3);
  expect(webhookStatus(db).counters.parked).toBe(0);
}, 120_000);

it('a flood of refused calls through the real router: every call answered, call.refused bounded per session, the rest counted', async () => {
  await freshStore('refusals');
  const ended = REAL(0);
  createSession(db, { id: 'over', first: party(ended[0]), second: party(ended[1]), ttlMs: 1, now: Date.now() - 1_000 });
  const overMasked = db.prepare<[], { m: string }>("SELECT second_masked_as AS m FROM session WHERE id = 'over'").get()!.m;
  const serve = await startServe({ db: dbPath });
  try {
    const statuses = new Map<string, number>();
    const note = (status: string | undefined) => statuses.set(status ?? 'none', (statuses.get(status ?? 'none') ?? 0) + 1);
    const CALLS = 300;
    for (let round = 0; round < CALLS; round += 20) {
      await Promise.all(
        Array.from({ length: 20 }, async (_, j) => {
          const i = round + j;
          // The ended session's first party redialling; strangers; withheld numbers.
          const [caller, dialled] = i % 3 === 0 ? [ended[0], overMasked] : i % 3 === 1 ? [mobile(9_000 + i), overMasked] : ['anonymous', overMasked];
          note((await routeCall(serve.port, caller, dialled)).answer?.status);
        }),
      );
    }
    expect(Object.fromEntries(statuses)).toEqual({ ENDED: CALLS / 3, NO_SESSION: CALLS / 3, INVALID: CALLS / 3 });
  } finally {
    expect(await serve.stop()).toBe(0);
  }
  const refused = db.prepare<[], { session: string; data: string }>("SELECT session_id AS session, data FROM webhook_event WHERE type = 'call.refused'").all();
  expect(refused.map((r) => r.session)).toEqual(Array(5).fill('over'));
  expect(refused.map((r) => JSON.parse(r.data).call)).toEqual(Array(5).fill({ uniqueid: '1732526400.17', caller: 'first', dialled: overMasked, reason: 'session-ended' }));
  const counters = webhookStatus(db).counters;
  expect(counters).toMatchObject({ refusals_dropped: 100 - 5, refused_no_session: 100, refused_invalid_caller: 100 });
  console.log(`refused calls: 300 answered (100 ENDED, 100 NO_SESSION, 100 INVALID); 5 call.refused recorded, ${counters.refusals_dropped} dropped by the per-session bound, 200 counted without a session`);
}, 60_000);
