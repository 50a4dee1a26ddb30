/**
 * The deliverer (src/webhooks/deliverer.ts) against a real HTTP receiver on
 * loopback, on a real database file: signed, at least once, in order per
 * session, retried with back-off, parked, and never sent to this host
 * unless allowed. Timings are compressed: back-off from 20 ms, windows of a
 * second or two (the defaults are 10 s, 1 h, 3 days).
 */
import type { Agent } from 'node:http';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/errors.js';
import { reportSessionEnds as sweepEnds } from '../../src/session/events.js';
import { createSession, findSession, releaseSession } from '../../src/session/sessions.js';
import type { Db } from '../../src/store/db.js';
import { writeTransaction } from '../../src/store/db.js';
import { WebhookDeliverer } from '../../src/webhooks/deliverer.js';
import { sqliteDeliveryStore } from '../../src/webhooks/delivery-store.js';
import { post, postAgent } from '../../src/webhooks/post.js';
import { setRecording } from '../../src/webhooks/outbox.js';
import { checkReceiver, webhookSettings } from '../../src/cli/webhook-settings.js';
import type { WebhookSettings } from '../../src/webhooks/deliverer.js';
import { signatureHeader, verifySignature } from '../../src/webhooks/signature.js';
import { retryParked, webhookStatus } from '../../src/webhooks/status.js';
import { afterFailure } from '../../src/webhooks/retry.js';
import { firstDeliveries, startReceiver, type Receiver } from '../support/receiver.js';
import { londonDids, mobile, party, seedPool, tempDb } from '../support/store.js';
import { sleep, until } from '../support/wait.js';

/** session.ended for what has ended by `now`, reading sessions as the deliverer does. */
const reportSessionEnds = (db: Db, now: number) => sweepEnds(db, now, (id) => findSession(db, id, now));

const SECRET = 'a'.repeat(16) + '0123456789abcdef0123456789abcdef';
const OLD_SECRET = 'b'.repeat(16) + 'fedcba9876543210fedcba9876543210';
const A = mobile(1);
const D = mobile(2);
const Z = mobile(3);

function settingsFor(receiver: Receiver, overrides: Partial<WebhookSettings> = {}): WebhookSettings {
  return {
    url: new URL(receiver.url),
    secrets: [SECRET],
    // Long enough that a loaded machine never turns a slow answer into an extra attempt; the hang test sets its own.
    timeoutMs: 5_000,
    concurrency: 4,
    retry: { backoffMinMs: 20, backoffMaxMs: 200, retryForMs: 60_000 },
    allowLocal: true,
    realNumbers: false,
    ...overrides,
  };
}

describe('signatures (Stripe\'s scheme: t=, v1= over "t.body")', () => {
  const body = '{"id":"evt_1"}';

  it('a receiver holding the secret accepts; a changed body, another secret, an old timestamp are refused', () => {
    const header = signatureHeader(body, [SECRET], 1_800_000_000);
    expect(header).toMatch(/^t=1800000000,v1=[0-9a-f]{64}$/);
    expect(verifySignature(header, body, [SECRET], 1_800_000_100)).toEqual({ ok: true, timestamp: 1_800_000_000 });
    expect(verifySignature(header, `${body} `, [SECRET], 1_800_000_000)).toMatchObject({ ok: false, reason: 'no signature matches' });
    expect(verifySignature(header, body, [OLD_SECRET], 1_800_000_000)).toMatchObject({ ok: false });
    expect(verifySignature(header, body, [SECRET], 1_800_000_301)).toMatchObject({ ok: false, reason: 'timestamp outside the tolerance' });
    expect(verifySignature(header.replace('t=1800000000', 't=1800000001'), body, [SECRET], 1_800_000_000)).toMatchObject({ ok: false });
    expect(verifySignature(undefined, body, [SECRET], 0)).toMatchObject({ ok: false });
    expect(verifySignature('v1=00', body, [SECRET], 0)).toMatchObject({ ok: false, reason: 'no timestamp' });
  });

  it('during a rotation both secrets sign: a receiver with either one accepts', () => {
    const header = signatureHeader(body, [SECRET, OLD_SECRET], 1_800_000_000);
    expect(header.split(',')).toHaveLength(3);
    expect(verifySignature(header, body, [OLD_SECRET], 1_800_000_000).ok).toBe(true);
    expect(verifySignature(header, body, [SECRET], 1_800_000_000).ok).toBe(true);
  });
});

describe('back-off', () => {
  it('doubles from the minimum to the maximum with jitter, and parks once the window has closed', () => {
    const policy = { backoffMinMs: 1_000, backoffMaxMs: 8_000, retryForMs: 60_000 };
    const waits = [1, 2, 3, 4, 5, 6].map((n) => (afterFailure(policy, n, 0, 0, () => 1) as { nextAt: number }).nextAt);
    expect(waits).toEqual([1_000, 2_000, 4_000, 8_000, 8_000, 8_000]);
    expect((afterFailure(policy, 3, 0, 0, () => 0) as { nextAt: number }).nextAt).toBe(2_000);
    // The last attempt is when the window closes; a failure then parks.
    expect(afterFailure(policy, 9, 0, 59_000, () => 1)).toEqual({ parked: false, nextAt: 60_000 });
    expect(afterFailure(policy, 10, 0, 60_000)).toEqual({ parked: true });
  });
});

describe('settings', () => {
  const env = { VNUM_WEBHOOK_URL: 'https://orders.example.com/vnum', VNUM_WEBHOOK_SECRET: SECRET };
  const refused = (e: NodeJS.ProcessEnv, pattern: RegExp) => {
    let error: unknown;
    try {
      webhookSettings({}, e);
    } catch (err) {
      error = err;
    }
    expect(error, JSON.stringify(e)).toMatchObject({ code: ErrorCode.Configuration, message: expect.stringMatching(pattern) });
  };

  it('off without a URL; defaults; flags before the environment', () => {
    expect(webhookSettings({}, {})).toBeNull();
    const s = webhookSettings({}, env)!;
    expect(s).toMatchObject({ secrets: [SECRET], timeoutMs: 10_000, concurrency: 8, allowLocal: false, realNumbers: false });
    expect(s.retry).toEqual({ backoffMinMs: 10_000, backoffMaxMs: 3_600_000, retryForMs: 3 * 86_400_000 });
    expect(webhookSettings({ url: 'https://b.example/x', timeout: '2s' }, env)).toMatchObject({ timeoutMs: 2_000, url: new URL('https://b.example/x') });
    expect(webhookSettings({}, { ...env, VNUM_WEBHOOK_SECRET: `${SECRET},${OLD_SECRET}`, VNUM_WEBHOOK_REAL_NUMBERS: 'on' })).toMatchObject({
      secrets: [SECRET, OLD_SECRET],
      realNumbers: true,
    });
  });

  it('every mistake is VNUM_CONFIGURATION naming the setting', () => {
    refused({ VNUM_WEBHOOK_SECRET: SECRET }, /VNUM_WEBHOOK_SECRET given without a receiver URL/);
    refused({ VNUM_WEBHOOK_TIMEOUT: '2s' }, /VNUM_WEBHOOK_TIMEOUT given without/);
    refused({ VNUM_WEBHOOK_URL: env.VNUM_WEBHOOK_URL }, /need a signing secret/);
    refused({ ...env, VNUM_WEBHOOK_URL: 'ftp://orders.example.com/' }, /only http and https/);
    refused({ ...env, VNUM_WEBHOOK_URL: 'https://user:pw@orders.example.com/' }, /no credentials in the URL/);
    refused({ ...env, VNUM_WEBHOOK_URL: 'https://orders.example.com/a\nb' }, /without blanks or control characters/);
    refused({ ...env, VNUM_WEBHOOK_URL: 'orders.example.com' }, /not a URL/);
    refused({ ...env, VNUM_WEBHOOK_URL: 'https://orders.example.com/#x' }, /fragment/);
    refused({ ...env, VNUM_WEBHOOK_SECRET: 'short' }, /secret 1 must be 32 to 256/);
    refused({ ...env, VNUM_WEBHOOK_SECRET: `${SECRET},${SECRET}` }, /same secret twice/);
    refused({ ...env, VNUM_WEBHOOK_SECRET: `${SECRET},${OLD_SECRET},${SECRET}x` }, /3 secrets: one, or two while rotating/);
    refused({ ...env, VNUM_WEBHOOK_TIMEOUT: '0s' }, /invalid VNUM_WEBHOOK_TIMEOUT "0s": from 100ms to 60s/);
    refused({ ...env, VNUM_WEBHOOK_CONCURRENCY: '0' }, /VNUM_WEBHOOK_CONCURRENCY/);
    refused({ ...env, VNUM_WEBHOOK_RETRY_FOR: '30d' }, /VNUM_WEBHOOK_RETRY_FOR/);
    refused({ ...env, VNUM_WEBHOOK_BACKOFF_MIN: '2m', VNUM_WEBHOOK_BACKOFF_MAX: '1m' }, /VNUM_WEBHOOK_BACKOFF_MAX "60s": shorter than VNUM_WEBHOOK_BACKOFF_MIN/);
    refused({ ...env, VNUM_WEBHOOK_ALLOW_LOCAL: 'maybe' }, /VNUM_WEBHOOK_ALLOW_LOCAL "maybe": on or off/);
  });

  it('the receiver must not be this host, unless allowed: loopback, its own addresses, link-local, by name too', async () => {
    const own = Object.values(networkInterfaces())
      .flat()
      .find((i) => i && !i.internal && i.family === 'IPv4')?.address;
    const hosts = ['127.0.0.1', '127.1.2.3', 'localhost', '[::1]', '[::ffff:127.0.0.1]', '0.0.0.0', '169.254.169.254', ...(own ? [own] : [])];
    for (const host of hosts) {
      const s = webhookSettings({}, { ...env, VNUM_WEBHOOK_URL: `http://${host}:8080/x` })!;
      await expect(checkReceiver(s), host).rejects.toMatchObject({ code: ErrorCode.Configuration, message: expect.stringMatching(/own host unless VNUM_WEBHOOK_ALLOW_LOCAL=on/) });
      await expect(checkReceiver({ ...s, allowLocal: true }), host).resolves.toBeUndefined();
    }
    // Another host, even on a private network, is what webhooks are for.
    await expect(checkReceiver(webhookSettings({}, { ...env, VNUM_WEBHOOK_URL: 'http://10.200.0.7:8080/x' })!)).resolves.toBeUndefined();
    await expect(checkReceiver(webhookSettings({}, { ...env, VNUM_WEBHOOK_URL: 'https://no-such-host.invalid/x' })!)).rejects.toMatchObject({
      code: ErrorCode.Configuration,
      message: expect.stringMatching(/does not resolve/),
    });
  });
});

describe('delivery to a real receiver', () => {
  let store: ReturnType<typeof tempDb>;
  let receiver: Receiver;
  let deliverer: WebhookDeliverer | undefined;
  const log = pino({ level: 'silent' });

  beforeEach(async () => {
    store = tempDb();
    seedPool(store.db, londonDids(6));
    writeTransaction(store.db, () => setRecording(store.db, true, Date.now()));
    receiver = await startReceiver({ secrets: [SECRET] });
  });
  afterEach(async () => {
    await deliverer?.stop();
    deliverer = undefined;
    await receiver.close();
    store.cleanup();
  });

  function start(settings: WebhookSettings): WebhookDeliverer {
    deliverer = new WebhookDeliverer({
      store: sqliteDeliveryStore(store.db),
      settings,
      logger: log,
      pollMs: 10,
      tickMs: 20,
      tick: (now) => void reportSessionEnds(store.db, now),
    });
    deliverer.start();
    return deliverer;
  }

  it('every event once, signed, in order per session, with no real number; the event id in a header and the body', async () => {
    start(settingsFor(receiver));
    for (const [id, first, second] of [['o1', A, D], ['o2', Z, D], ['o3', A, Z]] as const) {
      createSession(store.db, { id, first: party(first), second: party(second), now: Date.now() });
      releaseSession(store.db, id, 0, Date.now());
    }
    await until(() => receiver.delivered().length === 9, 10_000);
    await sleep(100);
    expect(receiver.received).toHaveLength(9);
    for (const r of receiver.received) {
      expect(r.verified).toBe(true);
      expect(r.headers['vnum-event-id']).toBe(r.event.id);
      expect(r.headers['content-type']).toBe('application/json');
      for (const n of [A, D, Z]) expect(r.body).not.toContain(n.slice(-9));
    }
    for (const [session, events] of firstDeliveries(receiver.received)) {
      expect(events.map((e) => e.event.type), session).toEqual(['session.created', 'session.released', 'session.ended']);
      expect(events.map((e) => e.event.sequence)).toEqual([...events.map((e) => e.event.sequence)].sort((a, b) => a - b));
    }
    await until(() => webhookStatus(store.db).counters.delivered === 9, 10_000);
    expect(webhookStatus(store.db)).toMatchObject({ backlog: 0, counters: { delivered: 9, failed_attempts: 0 } });
  });

  it('with the operator\'s opt-in, the parties\' real numbers are added when sent', async () => {
    start(settingsFor(receiver, { realNumbers: true }));
    const { session } = createSession(store.db, { id: 'o1', first: party(A), second: party(D), now: Date.now() });
    await until(() => receiver.delivered().length > 0, 10_000);
    const r = receiver.delivered()[0]!;
    expect(r.event.data.session.parties).toEqual([
      { number: A, maskedAs: session.parties[0].maskedAs },
      { number: D, maskedAs: session.parties[1].maskedAs },
    ]);
    // The outbox itself still holds none.
    expect(JSON.stringify(store.db.prepare('SELECT * FROM webhook_event').all())).not.toContain(A.slice(-9));
  });

  it('a receiver answering 500: retried with back-off until it takes it; the session\'s next event waits meanwhile; other sessions do not', async () => {
    let failures = 0;
    receiver.answer = (r) => (r.event.session === 'slow' && failures++ < 4 ? { status: 500, body: 'database down' } : { status: 200 });
    start(settingsFor(receiver));
    createSession(store.db, { id: 'slow', first: party(A), second: party(D), now: Date.now() });
    releaseSession(store.db, 'slow', 60_000, Date.now());
    createSession(store.db, { id: 'fast', first: party(Z), second: party(D), now: Date.now() });
    await until(() => receiver.delivered().length === 3, 10_000);
    const slow = receiver.received.filter((r) => r.event.session === 'slow');
    expect(slow.map((r) => r.event.type)).toEqual([...Array(5).fill('session.created'), 'session.released']);
    // Back-off: the gaps between attempts grow (20, 40, 80, 160 ms, each between half and all of that).
    const gaps = slow.slice(1, 5).map((r, i) => r.at - slow[i]!.at);
    expect(gaps[3]!).toBeGreaterThanOrEqual(70);
    // The fast session was not held up by the slow one.
    const fastAt = receiver.received.find((r) => r.event.session === 'fast')!.at;
    expect(fastAt).toBeLessThan(slow[4]!.at);
    // The receiver counts a delivery when it answers; the deliverer records it a moment later.
    await until(() => webhookStatus(store.db).counters.delivered === 3, 10_000);
    expect(webhookStatus(store.db).counters).toMatchObject({ delivered: 3, failed_attempts: 4 });
  });

  it('a receiver that hangs: the attempt times out and the event is sent again', async () => {
    let hung = 0;
    receiver.answer = () => (hung++ < 2 ? 'hang' : { status: 204 });
    start(settingsFor(receiver, { timeoutMs: 200 }));
    createSession(store.db, { id: 'o', first: party(A), second: party(D), now: Date.now() });
    await until(() => receiver.delivered().length > 0, 10_000);
    expect(receiver.received.map((r) => r.event.id)).toEqual(Array(3).fill(receiver.received[0]!.event.id));
    expect(webhookStatus(store.db).counters.failed_attempts).toBe(2);
  });

  it('a receiver down past the window: parked and visible; retried by the operator, then delivered in order', async () => {
    await receiver.down();
    start(settingsFor(receiver, { retry: { backoffMinMs: 20, backoffMaxMs: 100, retryForMs: 500 } }));
    createSession(store.db, { id: 'o', first: party(A), second: party(D), now: Date.now() });
    releaseSession(store.db, 'o', 60_000, Date.now());
    await until(() => webhookStatus(store.db).events.parked === 1, 10_000);
    const status = webhookStatus(store.db);
    expect(status.events).toMatchObject({ parked: 1, queued: 1, blocked: 1 });
    expect(status.parked[0]).toMatchObject({ type: 'session.created', session: 'o', lastError: expect.stringMatching(/ECONNREFUSED/) });
    expect(status.parked[0]!.attempts).toBeGreaterThan(3);
    await receiver.up();
    await sleep(300);
    expect(receiver.received).toEqual([]); // parked stays parked
    retryParked(store.db, 'all', Date.now());
    await until(() => receiver.delivered().length === 2, 10_000);
    expect(receiver.delivered().map((r) => r.event.type)).toEqual(['session.created', 'session.released']);
  });

  it('a redirect is a failure, never followed', async () => {
    const target = await startReceiver({ secrets: [SECRET] });
    try {
      let redirected = 0;
      receiver.answer = () => (redirected++ < 1 ? { status: 307, headers: { Location: target.url } } : { status: 200 });
      start(settingsFor(receiver));
      createSession(store.db, { id: 'o', first: party(A), second: party(D), now: Date.now() });
      await until(() => receiver.delivered().length > 0, 10_000);
      expect(receiver.received).toHaveLength(2);
      expect(target.received).toEqual([]);
    } finally {
      await target.close();
    }
  });

  it('without the operator\'s leave, a name that resolves to this host is refused at connect time, and nothing reaches it', async () => {
    const settings = settingsFor(receiver, { url: new URL(`http://localhost:${receiver.port}/x`), allowLocal: false });
    start(settings);
    createSession(store.db, { id: 'o', first: party(A), second: party(D), now: Date.now() });
    const lastError = store.db.prepare<[], string | null>('SELECT last_error FROM webhook_event').pluck();
    await until(() => lastError.get() !== null, 10_000);
    const error = lastError.get();
    expect(error).toMatch(/localhost resolves to .* is loopback: refused/);
    expect(receiver.received).toEqual([]);
  });
});

describe('what a receiver answers is bounded (src/webhooks/post.ts)', () => {
  /** A raw TCP "receiver" that answers every request with `answer(socket)`: full control over bytes and timing. */
  async function rawReceiver(answer: (socket: Socket) => void): Promise<{ url: URL; server: Server; closed: () => number }> {
    let closed = 0;
    const server = createServer((socket) => {
      socket.on('error', () => {});
      socket.on('close', () => closed++);
      socket.once('data', () => answer(socket));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return { url: new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`), server, closed: () => closed };
  }
  const agents: Agent[] = [];
  const servers: Server[] = [];
  afterEach(async () => {
    for (const agent of agents.splice(0)) agent.destroy();
    await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))));
  });
  async function send(answer: (socket: Socket) => void, timeoutMs = 500) {
    const receiver = await rawReceiver(answer);
    servers.push(receiver.server);
    const agent = postAgent(receiver.url, 1, true);
    agents.push(agent);
    const result = post(receiver.url, '{"id":"evt_1"}', { 'Content-Type': 'application/json' }, { timeoutMs, allowLocal: true, agent });
    return { result, receiver };
  }

  it('an endless body: read up to 64 KiB, the connection dropped, 200 printable characters kept', async () => {
    const { result, receiver } = await send((socket) => {
      socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n');
      const chunk = Buffer.alloc(16 * 1024, 'x\u0007');
      const pump = () => {
        while (!socket.destroyed && socket.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`));
        if (!socket.destroyed) socket.once('drain', pump);
      };
      pump();
    }, 5_000);
    const answer = await result;
    expect(answer.status).toBe(200);
    expect(answer.excerpt).toMatch(/^[x ]{1,200}$/);
    await until(() => receiver.closed() === 1, 5_000);
  });

  it('a slow drip (the status at once, then a byte at a time): the whole exchange has one time limit', async () => {
    const { result } = await send((socket) => {
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n');
      const drip = setInterval(() => (socket.destroyed ? clearInterval(drip) : socket.write('x')), 20);
    }, 300);
    await expect(result).rejects.toThrow('no answer within 300 ms');
  });

  it('a status line dripped a byte at a time: the same limit', async () => {
    const { result } = await send((socket) => {
      const line = Buffer.from('HTTP/1.1 200 OK\r\n');
      let at = 0;
      const drip = setInterval(() => (socket.destroyed || at >= line.length ? clearInterval(drip) : socket.write(line.subarray(at, ++at))), 40);
    }, 300);
    await expect(result).rejects.toThrow('no answer within 300 ms');
  });

  it('headers beyond Node\'s 16 KiB limit: a failure, not an answer', async () => {
    const { result } = await send((socket) => socket.end(`HTTP/1.1 200 OK\r\nX-Big: ${'y'.repeat(100_000)}\r\nContent-Length: 0\r\n\r\n`));
    await expect(result).rejects.toThrow(/header/i);
  });

  it('a 200 cut off before the end of its body: a failure (sent again), not a delivery', async () => {
    const { result } = await send((socket) => {
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nok');
      setTimeout(() => socket.destroy(), 20);
    });
    await expect(result).rejects.toThrow(/answer was cut off/);
  });
});
