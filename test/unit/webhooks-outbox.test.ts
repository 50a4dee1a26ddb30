/**
 * The webhook outbox's write side (src/webhooks/outbox.ts, the hooks in
 * src/session/sessions.ts and src/calls/store.ts, src/calls/refusals.ts): an
 * event per fact, in the fact's own transaction, never a real number, in
 * order per session, session.ended once and after session.released, and
 * refusals bounded and counted.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AmiEvent } from '../../src/ami/client.js';
import { callFact } from '../../src/calls/facts.js';
import { recordRefusal, RefusalGate, REFUSAL_LIMITS } from '../../src/calls/refusals.js';
import { applyCallFact, markCallLost, markLostCalls, recordRoutedCall } from '../../src/calls/store.js';
import { ErrorCode } from '../../src/errors.js';
import { reportSessionEnds as sweepEnds } from '../../src/session/events.js';
import { createSession, findSession, releaseSession } from '../../src/session/sessions.js';
import type { Db } from '../../src/store/db.js';
import { openDb, writeTransaction } from '../../src/store/db.js';
import { sqliteDeliveryStore } from '../../src/webhooks/delivery-store.js';
import { appendEvent, EVENT_ID, isRecording, setRecording } from '../../src/webhooks/outbox.js';
import { discardParked, retryParked, webhookFigures, webhookStatus } from '../../src/webhooks/status.js';
import { errorOf } from '../support/errors.js';
import { londonDids, mobile, party, seedPool, tempDb } from '../support/store.js';

/** session.ended for what has ended by `now`, reading sessions as the deliverer does. */
const reportSessionEnds = (db: Db, now: number) => sweepEnds(db, now, (id) => findSession(db, id, now));

let store: ReturnType<typeof tempDb>;
const A = mobile(1);
const D = mobile(2);
const Z = mobile(3);
const T0 = 1_795_600_000_000;

interface Row {
  seq: number;
  id: string;
  type: string;
  session_id: string;
  state: string;
  occurred_at: number;
  next_at: number | null;
  data: string;
}

const rows = (): Row[] => store.db.prepare<[], Row>('SELECT * FROM webhook_event ORDER BY seq').all();
const types = (session?: string) => rows().filter((r) => session === undefined || r.session_id === session).map((r) => r.type);
const data = (row: Row) => JSON.parse(row.data) as Record<string, any>;

/** No real number, in any of the outbox's tables. */
function noRealNumbers(): void {
  const everything = JSON.stringify([
    store.db.prepare('SELECT * FROM webhook_event').all(),
    store.db.prepare('SELECT * FROM webhook_session_end').all(),
  ]);
  for (const number of [A, D, Z]) expect(everything).not.toContain(number.slice(-9));
}

function recording(on = true): void {
  writeTransaction(store.db, () => setRecording(store.db, on, T0 - 1));
}

beforeEach(() => {
  store = tempDb();
  seedPool(store.db, londonDids(6));
});
afterEach(() => store.cleanup());

describe('recording', () => {
  it('off (a database nobody turned webhooks on for): facts write no event', () => {
    expect(isRecording(store.db)).toBe(false);
    createSession(store.db, { id: 'order-1', first: party(A), second: party(D), ttlMs: 60_000, now: T0 });
    releaseSession(store.db, 'order-1', 0, T0 + 1);
    expect(reportSessionEnds(store.db, T0 + 10)).toBe(0);
    expect(rows()).toEqual([]);
    expect(store.db.prepare('SELECT count(*) AS n FROM webhook_session_end').get()).toEqual({ n: 0 });
  });

  it('on: turned on once (its first time kept), off again', () => {
    recording();
    writeTransaction(store.db, () => setRecording(store.db, true, T0 + 999));
    expect(webhookStatus(store.db).recording).toEqual({ on: true, since: T0 - 1 });
    recording(false);
    expect(isRecording(store.db)).toBe(false);
  });

  it('an event is only appended inside the transaction of its fact', () => {
    recording();
    expect(() => appendEvent(store.db, { type: 'session.created', session: 's', occurredAt: T0, data: {} }, T0)).toThrow(/outside a transaction/);
  });
});

describe('session events', () => {
  beforeEach(() => recording());

  it('session.created: the masked numbers, no real number; a retry of the same create writes nothing more', () => {
    const { session } = createSession(store.db, { id: 'order-1', first: party(A), second: party(D), ttlMs: 3_600_000, now: T0 });
    createSession(store.db, { id: 'order-1', first: party(A), second: party(D), ttlMs: 3_600_000, now: T0 + 5 });
    const [row] = rows();
    expect(rows()).toHaveLength(1);
    expect(row).toMatchObject({ type: 'session.created', session_id: 'order-1', state: 'pending', occurred_at: T0, next_at: T0 });
    expect(row!.id).toMatch(EVENT_ID);
    expect(data(row!)).toEqual({
      session: {
        id: 'order-1',
        state: 'active',
        createdAt: new Date(T0).toISOString(),
        expiresAt: new Date(T0 + 3_600_000).toISOString(),
        releasedAt: null,
        endsAt: new Date(T0 + 3_600_000).toISOString(),
        idleTimeoutMs: null,
        calls: {},
        parties: [{ maskedAs: session.parties[0].maskedAs }, { maskedAs: session.parties[1].maskedAs }],
      },
    });
    noRealNumbers();
  });

  it('a create that fails writes no event: the event is part of the fact\'s transaction', () => {
    // The outbox refuses this one insert: the session must not exist either.
    store.db.exec(`CREATE TEMP TRIGGER refuse BEFORE INSERT ON webhook_event WHEN NEW.session_id = 'order-x' BEGIN SELECT RAISE(ABORT, 'refused'); END`);
    expect(() => createSession(store.db, { id: 'order-x', first: party(A), second: party(D), now: T0 })).toThrow(/refused/);
    expect(store.db.prepare("SELECT count(*) AS n FROM session WHERE id = 'order-x'").get()).toEqual({ n: 0 });
    expect(rows()).toEqual([]);
    // And a create refused by the domain (a conflict) writes none.
    createSession(store.db, { id: 'order-1', first: party(A), second: party(D), now: T0 });
    expect(errorOf(() => createSession(store.db, { id: 'order-1', first: party(A), second: party(Z), now: T0 })).code).toBe(ErrorCode.SessionConflict);
    expect(types()).toEqual(['session.created']);
  });

  it('later events of a session wait behind the earliest undelivered one; other sessions do not', async () => {
    createSession(store.db, { id: 'order-1', first: party(A), second: party(D), now: T0 });
    createSession(store.db, { id: 'order-2', first: party(Z), second: party(D), now: T0 });
    releaseSession(store.db, 'order-1', 60_000, T0 + 10);
    expect(rows().map((r) => [r.session_id, r.type, r.state])).toEqual([
      ['order-1', 'session.created', 'pending'],
      ['order-2', 'session.created', 'pending'],
      ['order-1', 'session.released', 'queued'],
    ]);
    // Delivering the first makes the second due, at once.
    const outbox = sqliteDeliveryStore(store.db);
    const claimed = await outbox.claim(T0 + 20, 10, 5_000);
    expect(claimed.map((e) => [e.session, e.type, e.attempts])).toEqual([
      ['order-1', 'session.created', 1],
      ['order-2', 'session.created', 1],
    ]);
    // Leased: nobody takes them again meanwhile.
    expect(await outbox.claim(T0 + 21, 10, 5_000)).toEqual([]);
    await outbox.delivered(claimed[0]!, T0 + 30);
    expect((await outbox.claim(T0 + 31, 10, 5_000)).map((e) => e.type)).toEqual(['session.released']);
  });

  it('session.ended: by the clock, once, after session.released, with its cause', () => {
    createSession(store.db, { id: 'ttl', first: party(A), second: party(D), ttlMs: 1_000, now: T0 });
    createSession(store.db, { id: 'rel', first: party(Z), second: party(D), ttlMs: 60_000, now: T0 });
    createSession(store.db, { id: 'open', first: party(A), second: party(Z), now: T0 });
    releaseSession(store.db, 'rel', 500, T0 + 100);
    expect(reportSessionEnds(store.db, T0 + 599)).toBe(0);
    expect(reportSessionEnds(store.db, T0 + 600)).toBe(1);
    expect(reportSessionEnds(store.db, T0 + 999)).toBe(0);
    expect(reportSessionEnds(store.db, T0 + 1_000)).toBe(1);
    expect(reportSessionEnds(store.db, T0 + 90_000)).toBe(0);
    expect(types('rel')).toEqual(['session.created', 'session.released', 'session.ended']);
    expect(types('ttl')).toEqual(['session.created', 'session.ended']);
    expect(types('open')).toEqual(['session.created']);
    const ended = rows().filter((r) => r.type === 'session.ended');
    expect(ended.map((r) => [r.session_id, r.occurred_at, data(r).cause, data(r).session.state])).toEqual([
      ['rel', T0 + 600, 'release', 'ended'],
      ['ttl', T0 + 1_000, 'ttl', 'ended'],
    ]);
    // A session without a TTL is tracked once released.
    releaseSession(store.db, 'open', 0, T0 + 100_000);
    expect(reportSessionEnds(store.db, T0 + 100_000)).toBe(1);
    expect(types('open')).toEqual(['session.created', 'session.released', 'session.ended']);
    noRealNumbers();
  });

  it('a second release that ends the session sooner: released again, ended once', () => {
    createSession(store.db, { id: 'o', first: party(A), second: party(D), now: T0 });
    releaseSession(store.db, 'o', 60_000, T0 + 10);
    releaseSession(store.db, 'o', 60_000, T0 + 20); // later: would not end it sooner, unchanged
    releaseSession(store.db, 'o', 0, T0 + 30);
    reportSessionEnds(store.db, T0 + 30);
    reportSessionEnds(store.db, T0 + 70_000);
    expect(types('o')).toEqual(['session.created', 'session.released', 'session.released', 'session.ended']);
  });

  it('a release whose clock was read before an end already reported records no session.released after session.ended', () => {
    createSession(store.db, { id: 'o', first: party(A), second: party(D), ttlMs: 1_000, now: T0 });
    expect(reportSessionEnds(store.db, T0 + 1_005)).toBe(1);
    // The release read its clock at T0 + 999 and got the write lock only now.
    const result = releaseSession(store.db, 'o', 0, T0 + 999);
    expect(result.changed).toBe(true);
    expect(reportSessionEnds(store.db, T0 + 2_000)).toBe(0);
    expect(types('o')).toEqual(['session.created', 'session.ended']);
  });

  it('recording turned off and on while a release moved the end: still reported once, with the real end', () => {
    createSession(store.db, { id: 'o', first: party(A), second: party(D), ttlMs: 10_000, now: T0 });
    recording(false);
    releaseSession(store.db, 'o', 0, T0 + 100);
    recording(true);
    releaseSession(store.db, 'o', 0, T0 + 200); // ended already: unchanged, nothing recorded
    for (const t of [T0 + 1_000, T0 + 10_000, T0 + 10_001, T0 + 20_000]) reportSessionEnds(store.db, t);
    const ended = rows().filter((r) => r.type === 'session.ended');
    expect(ended.map((r) => r.occurred_at)).toEqual([T0 + 100]);
  });

  it('two connections sweeping: each end reported once', () => {
    const other = openDb(store.path);
    try {
      for (let i = 0; i < 20; i++) createSession(store.db, { id: `s${i}`, first: party(mobile(100 + i)), second: party(mobile(200 + i)), ttlMs: 1_000 + i, now: T0 });
      let total = 0;
      for (let t = T0 + 1_000; t <= T0 + 1_030; t += 3) total += reportSessionEnds(t % 2 ? other : store.db, t);
      expect(total).toBe(20);
      expect(types().filter((t) => t === 'session.ended')).toHaveLength(20);
    } finally {
      other.close();
    }
  });
});

describe('call events', () => {
  const event = (name: string, fields: Record<string, string>, at: number): AmiEvent => ({ name, fields: { event: name, ...fields }, at, timestamped: true });
  const apply = (name: string, fields: Record<string, string>, at: number) => applyCallFact(store.db, callFact(event(name, fields, at))!);
  let masked: [string, string];

  beforeEach(() => {
    recording();
    const { session } = createSession(store.db, { id: 'order-1', first: party(A), second: party(D), now: T0 });
    masked = [session.parties[0].maskedAs, session.parties[1].maskedAs];
  });

  it('bridged, answered, ended: each once, with which party called, the masked numbers, duration and cause', () => {
    expect(recordRoutedCall(store.db, { uniqueid: '100.1', channel: 'PJSIP/carrier-1', session: 'order-1', target: D, at: T0 + 10 })).toBe(true);
    apply('DialBegin', { uniqueid: '100.1', destuniqueid: '100.2' }, T0 + 20);
    apply('DialEnd', { uniqueid: '100.1', dialstatus: 'ANSWER' }, T0 + 2_000);
    apply('DialEnd', { uniqueid: '100.1', dialstatus: 'ANSWER' }, T0 + 2_100); // seen twice: reported once
    apply('Hangup', { uniqueid: '100.1', cause: '16', 'cause-txt': 'Normal Clearing' }, T0 + 9_500);
    apply('Hangup', { uniqueid: '100.1', cause: '16' }, T0 + 9_600);
    const calls = rows().filter((r) => r.type.startsWith('call.'));
    expect(calls.map((r) => [r.type, r.occurred_at])).toEqual([
      ['call.bridged', T0 + 10],
      ['call.answered', T0 + 2_000],
      ['call.ended', T0 + 9_500],
    ]);
    const ended = data(calls[2]!);
    expect(calls.map((r) => r.session_id)).toEqual(['order-1', 'order-1', 'order-1']);
    expect(ended).toMatchObject({
      call: {
        uniqueid: '100.1',
        caller: 'first',
        // The first party dialled the second's masked number and was shown to it as its own.
        dialled: masked[1],
        presented: masked[0],
        state: 'ended',
        durationMs: 7_500,
        dialStatus: 'ANSWER',
        hangupCause: 16,
        hangupCauseText: 'Normal Clearing',
        hangupReason: null,
      },
    });
    expect(data(calls[0]!).call).toMatchObject({ state: 'routed', answeredAt: null });
    expect(calls.map((r) => r.state)).toEqual(['queued', 'queued', 'queued']); // behind session.created
    noRealNumbers();
  });

  it('lost (its end unknown): call.ended once, state lost; the exact end found later sends no second one', () => {
    recordRoutedCall(store.db, { uniqueid: '3.1', channel: 'PJSIP/c-1', session: 'order-1', target: A, at: T0 });
    recordRoutedCall(store.db, { uniqueid: '3.2', channel: 'PJSIP/c-2', session: 'order-1', target: A, at: T0 });
    expect(markLostCalls(store.db, new Set(), T0 + 100)).toBe(2);
    apply('Hangup', { uniqueid: '3.1', cause: '16' }, T0 + 50);
    expect(markCallLost(store.db, 2, T0 + 200)).toBe(false);
    const ended = rows().filter((r) => r.type === 'call.ended');
    expect(ended.map((r) => [data(r).call.uniqueid, data(r).call.state, data(r).call.caller])).toEqual([
      ['3.1', 'lost', 'second'],
      ['3.2', 'lost', 'second'],
    ]);
  });

  it('a call not recorded (no such party) writes no event either', () => {
    expect(recordRoutedCall(store.db, { uniqueid: '9.1', channel: 'PJSIP/c', session: 'order-1', target: Z, at: T0 })).toBe(false);
    expect(types()).toEqual(['session.created']);
  });
});

describe('refused calls', () => {
  beforeEach(() => recording());
  const call = (callerId: string, uniqueId = '7.1') => ({ callerId, uniqueId });

  it('a refused call of a session: call.refused with which party called and what it dialled; sessionless ones only counted', () => {
    const { session } = createSession(store.db, { id: 'order-1', first: party(A), second: party(D), ttlMs: 1_000, now: T0 });
    const gate = new RefusalGate({ defaultCountry: 'GB' }, T0);
    // The second party, dialling as carriers deliver it: national format.
    const refusal = gate.admit(call(`0${D.slice(3)}`), 'ENDED', 'order-1', T0 + 5_000);
    expect(refusal).toMatchObject({ session: 'order-1', caller: D, reason: 'session-ended' });
    expect(recordRefusal(store.db, refusal!, T0 + 5_000)).toBe('recorded');
    expect(gate.admit(call(A), 'NOT_ALLOWED', 'order-1', T0 + 5_001)).toMatchObject({ reason: 'number-type-policy' });
    for (const status of ['NO_SESSION', 'NO_SESSION', 'INVALID', 'NOT_POOL', 'ERROR', 'BRIDGE']) expect(gate.admit(call(Z), status, '', T0)).toBeUndefined();
    expect(Object.fromEntries(gate.takeCounts())).toEqual({ refused_no_session: 2, refused_invalid_caller: 1 });
    expect(gate.takeCounts().size).toBe(0);
    const [refused] = rows().filter((r) => r.type === 'call.refused');
    expect(refused!.session_id).toBe('order-1');
    expect(data(refused!)).toEqual({
      call: { uniqueid: '7.1', caller: 'second', dialled: session.parties[0].maskedAs, reason: 'session-ended' },
    });
    expect(refused!.occurred_at).toBe(T0 + 5_000);
    // A number that is no party of the session (cannot come from the router): nothing.
    expect(recordRefusal(store.db, { ...refusal!, caller: Z }, T0)).toBe('not-a-party');
    noRealNumbers();
  });

  it('a flood: 5 events per session, then one a minute; 100 overall, then 20 a second; the rest counted', () => {
    const gate = new RefusalGate({}, T0);
    let admitted = 0;
    for (let i = 0; i < 50; i++) if (gate.admit(call(A), 'ENDED', 'order-1', T0 + i)) admitted++;
    expect(admitted).toBe(REFUSAL_LIMITS.perSession.capacity);
    expect(gate.admit(call(A), 'ENDED', 'order-1', T0 + 60_000)).toBeDefined();
    expect(gate.admit(call(A), 'ENDED', 'order-1', T0 + 60_001)).toBeUndefined();
    // Many sessions at once: the overall bucket.
    let overall = 0;
    for (let i = 0; i < 1_000; i++) if (gate.admit(call(A), 'ENDED', `s-${i}`, T0 + 70_000)) overall++;
    expect(overall).toBe(REFUSAL_LIMITS.overall.capacity);
    let later = 0;
    for (let i = 0; i < 100; i++) if (gate.admit(call(A), 'ENDED', `t-${i}`, T0 + 71_000)) later++;
    expect(later).toBe(REFUSAL_LIMITS.overall.perSecond);
    expect(gate.takeCounts().get('refusals_dropped')).toBe(45 + 1 + 900 + 80);
  });
});

describe('parked events: retry and discard', () => {
  beforeEach(() => recording());

  it('retry makes a parked event due again; discard gives up on it and lets its session\'s next event go', async () => {
    createSession(store.db, { id: 'o', first: party(A), second: party(D), now: T0 });
    releaseSession(store.db, 'o', 1_000, T0 + 1);
    const outbox = sqliteDeliveryStore(store.db);
    const [first] = await outbox.claim(T0 + 2, 10, 1_000);
    const policy = { backoffMinMs: 10, backoffMaxMs: 10, retryForMs: 0 };
    expect(await outbox.failed(first!, T0 + 3, 'HTTP 500', policy)).toEqual({ parked: true });
    let status = webhookStatus(store.db);
    expect(status.events).toMatchObject({ parked: 1, queued: 1, blocked: 1, pending: 0 });
    expect(status.parked[0]).toMatchObject({ id: first!.id, type: 'session.created', session: 'o', attempts: 1, lastError: 'HTTP 500' });
    expect(await outbox.claim(T0 + 10_000, 10, 1_000)).toEqual([]); // nothing moves behind a parked event
    expect(errorOf(() => retryParked(store.db, ['evt_0123456789abcdef0123456789abcdef'], T0)).code).toBe(ErrorCode.EventNotParked);
    expect(errorOf(() => retryParked(store.db, ['nope'], T0)).code).toBe(ErrorCode.InvalidArgument);
    expect(retryParked(store.db, 'all', T0 + 20)).toEqual([first!.id]);
    const [again] = await outbox.claim(T0 + 21, 10, 1_000);
    expect(again).toMatchObject({ id: first!.id, attempts: 1, firstFailedAt: null });
    await outbox.failed(again!, T0 + 22, 'HTTP 500', policy);
    expect(discardParked(store.db, [first!.id], T0 + 30)).toEqual([first!.id]);
    expect((await outbox.claim(T0 + 31, 10, 1_000)).map((e) => e.type)).toEqual(['session.released']);
    status = webhookStatus(store.db);
    expect(status.counters).toMatchObject({ parked: 2, discarded: 1, failed_attempts: 2 });
  });

  it('the figures metrics read: backlog by state, oldest undelivered, failures and parkings, without the lists', async () => {
    expect(webhookFigures(store.db)).toMatchObject({ backlog: 0, oldestUndeliveredAt: null, counters: { failed_attempts: 0, parked: 0 } });
    createSession(store.db, { id: 'o', first: party(A), second: party(D), now: T0 });
    releaseSession(store.db, 'o', 1_000, T0 + 1);
    createSession(store.db, { id: 'p', first: party(Z), second: party(D), now: T0 + 2 });
    const outbox = sqliteDeliveryStore(store.db);
    const claimed = await outbox.claim(T0 + 3, 10, 1_000);
    const o = claimed.find((e) => e.session === 'o')!;
    const p = claimed.find((e) => e.session === 'p')!;
    await outbox.failed(o, T0 + 4, 'HTTP 500', { backoffMinMs: 10, backoffMaxMs: 10, retryForMs: 0 });
    await outbox.failed(p, T0 + 4, 'HTTP 502', { backoffMinMs: 10, backoffMaxMs: 10, retryForMs: 60_000 });
    const figures = webhookFigures(store.db);
    expect(figures).toEqual({
      recording: { on: true, since: T0 - 1 },
      events: { pending: 1, retrying: 1, queued: 1, blocked: 1, parked: 1 },
      backlog: 3,
      oldestUndeliveredAt: expect.any(Number),
      counters: expect.objectContaining({ delivered: 0, failed_attempts: 2, parked: 1 }),
    });
    const { deliverers: _d, parked: _p, ...sameFigures } = webhookStatus(store.db);
    expect(sameFigures).toEqual(figures);
  });
});
