import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import pino from 'pino';
import { parseNumber } from '../src/numbers/normalise.js';
import { addToPool } from '../src/pool/pool.js';
import { createSession, type PartyInput } from '../src/session/sessions.js';
import { openDb, writeTransaction, type Db } from '../src/store/db.js';
import { WebhookDeliverer } from '../src/webhooks/deliverer.js';
import { sqliteDeliveryStore } from '../src/webhooks/delivery-store.js';
import { setRecording } from '../src/webhooks/outbox.js';
import { post, postAgent } from '../src/webhooks/post.js';
import type { WebhookSettings } from '../src/webhooks/deliverer.js';
import { signatureHeader } from '../src/webhooks/signature.js';
import { formatCount, type Benchmark, type BenchContext, type Figure } from './benchmark.js';
import { agentNumber, customerNumber, orderId, poolNumbers, prng, seedStore, type SeededStore } from './seed.js';

/**
 * What webhooks cost: session creates/s while the outbox records (the event
 * written in the create's transaction) against the same creates with
 * recording off, on one store; and events delivered/s by the deliverer
 * (claim, sign, POST, record, next event of the session) against bare signed
 * POSTs at the same concurrency to the same loopback receiver.
 */
const SIZES = {
  full: { sessions: 200_000, creates: 20_000, events: 5_000 },
  smoke: { sessions: 500, creates: 200, events: 100 },
};
const POOL_SIZE = 1000;
const CONCURRENCY = 8;
const SECRET = 'bench'.repeat(8);

export const webhooksBenchmark: Benchmark = {
  name: 'webhooks',
  description: 'session creates/s with the webhook outbox recording, against recording off; events delivered/s against bare signed POSTs',
  async run(context) {
    const sizes = context.smoke ? SIZES.smoke : SIZES.full;
    context.log(`seeding ${formatCount(sizes.sessions)} sessions`);
    const store = seedStore(join(context.workDir, 'webhooks.db'), { sessions: sizes.sessions, poolSize: POOL_SIZE, log: context.log });
    const figures: Figure[] = [measureCreates(context, store, sizes.creates)];
    figures.push(await measureDelivery(context, store, sizes.events));
    return { figures };
  },
};

function newParties(store: SeededStore, count: number, from: number): [PartyInput, PartyInput][] {
  const random = prng(7 + from);
  const party = (number: string): PartyInput => {
    const parsed = parseNumber(number);
    return { number: parsed.e164, type: parsed.type };
  };
  return Array.from({ length: count }, (_, i) => [party(customerNumber(store.customers + from + i)), party(agentNumber(Math.floor(random() * store.agents)))]);
}

/** Rounds alternate recording off and on, on one file, so a noisy neighbour hurts both alike. */
function measureCreates(context: BenchContext, store: SeededStore, count: number): Figure {
  context.log(`${formatCount(count)} creates, half with the outbox recording`);
  const db = openDb(store.path);
  try {
    const parties = newParties(store, count, 0);
    const rounds = 4;
    const per = Math.ceil(count / (rounds * 2));
    const ms = { off: 0, on: 0 };
    const done = { off: 0, on: 0 };
    let next = 0;
    for (let round = 0; round < rounds; round++) {
      for (const mode of ['off', 'on'] as const) {
        writeTransaction(db, () => setRecording(db, mode === 'on', store.now));
        const started = performance.now();
        for (let i = 0; i < per && next < count; i++, next++) {
          const [first, second] = parties[next]!;
          createSession(db, { id: orderId(store.sessions + 1 + next), first, second, ttlMs: 3_600_000, now: store.now + 1 + next });
          done[mode]++;
        }
        db.pragma('wal_checkpoint(PASSIVE)');
        ms[mode] += performance.now() - started;
      }
    }
    const rate = (mode: 'on' | 'off') => (done[mode] / ms[mode]) * 1000;
    return {
      name: `session creates/s at ${formatCount(store.sessions)} sessions, webhook outbox recording (session.created + its end tracked)`,
      unit: '/s',
      value: rate('on'),
      baseline: { name: 'the same creates with recording off, same file, alternating rounds', value: rate('off') },
      size: `${formatCount(done.on)} + ${formatCount(done.off)} creates on ${formatCount(store.sessions)} sessions`,
    };
  } finally {
    db.close();
  }
}

/** Rounds alternate bare POSTs and the deliverer, each over its own new events, so a noisy neighbour hurts both alike. */
async function measureDelivery(context: BenchContext, store: SeededStore, events: number): Promise<Figure> {
  const receiver = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  receiver.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const url = new URL(`http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`);
  const db = openDb(join(context.workDir, 'delivery.db'));
  try {
    context.log(`${formatCount(events)} events through the deliverer, and as many bare POSTs, in alternating rounds`);
    addToPool(db, poolNumbers(POOL_SIZE).map((number) => ({ number })), { now: Date.now() });
    writeTransaction(db, () => setRecording(db, true, Date.now()));
    const rounds = 4;
    const per = Math.ceil(events / rounds);
    const ms = { bare: 0, deliverer: 0 };
    let recorded = 0;
    for (let round = 0; round < rounds; round++) {
      const bodies = recordEvents(db, store, per, recorded);
      recorded += per;
      ms.bare += await barePosts(url, bodies);
      ms.deliverer += await deliverAll(db, url, recorded);
    }
    return {
      name: `webhook events delivered/s (claim, sign, POST, record; ${CONCURRENCY} sessions at once)`,
      unit: '/s',
      value: (recorded / ms.deliverer) * 1000,
      baseline: { name: `bare signed POSTs/s, ${CONCURRENCY} at once, same loopback receiver, alternating rounds`, value: (recorded / ms.bare) * 1000 },
      size: `${formatCount(recorded)} + ${formatCount(recorded)} events, one per session`,
    };
  } finally {
    db.close();
    await new Promise((resolve) => receiver.close(resolve));
  }
}

/** One session.created for each of `count` new sessions, recorded; their bodies serve the baseline too. */
function recordEvents(db: Db, store: SeededStore, count: number, from: number): string[] {
  const parties = newParties(store, count, 1_000_000 + from);
  const after = db.prepare<[], number>('SELECT coalesce(max(seq), 0) FROM webhook_event').pluck().get() ?? 0;
  for (let i = 0; i < count; i++) {
    const [first, second] = parties[i]!;
    createSession(db, { id: `bench-${from + i}`, first, second, now: Date.now() });
  }
  return db.prepare<[number], string>('SELECT data FROM webhook_event WHERE seq > ? ORDER BY seq').pluck().all(after);
}

/** Milliseconds to POST every body, signed, CONCURRENCY at once. */
async function barePosts(url: URL, bodies: string[]): Promise<number> {
  const agent = postAgent(url, CONCURRENCY, true);
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < bodies.length) {
        const body = bodies[next++]!;
        const headers = { 'Content-Type': 'application/json', 'Vnum-Signature': signatureHeader(body, [SECRET], Math.floor(Date.now() / 1000)) };
        await post(url, body, headers, { timeoutMs: 10_000, allowLocal: true, agent });
      }
    }),
  );
  const elapsed = performance.now() - started;
  agent.destroy();
  return elapsed;
}

/** Milliseconds for a deliverer to bring the delivered count to `total`. */
async function deliverAll(db: Db, url: URL, total: number): Promise<number> {
  const settings: WebhookSettings = {
    url,
    secrets: [SECRET],
    timeoutMs: 10_000,
    concurrency: CONCURRENCY,
    retry: { backoffMinMs: 100, backoffMaxMs: 1_000, retryForMs: 60_000 },
    allowLocal: true,
    realNumbers: false,
  };
  const deliverer = new WebhookDeliverer({ store: sqliteDeliveryStore(db), settings, logger: pino({ level: 'silent' }), pollMs: 5 });
  const delivered = db.prepare<[], number>("SELECT value FROM webhook_counter WHERE name = 'delivered'").pluck();
  const started = performance.now();
  deliverer.start();
  while ((delivered.get() ?? 0) < total) await new Promise((r) => setTimeout(r, 5));
  const elapsed = performance.now() - started;
  await deliverer.stop();
  return elapsed;
}
