import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createSession, getSession, listSessions, releaseSession } from '../../src/session/sessions.js';
import { decideRoute } from '../../src/routing/decide.js';
import { storeBridgeLookup } from '../../src/routing/lookup.js';
import { addToPool } from '../../src/pool/pool.js';
import { ErrorCode, VnumError } from '../../src/errors.js';
import { invariantViolations, londonDids, mobile, party, seedPool, tempDb } from '../support/store.js';

let store: ReturnType<typeof tempDb>;
beforeEach(() => {
  store = tempDb();
});
afterEach(() => store.cleanup());

const A = mobile(1);
const D = mobile(2);
const HOUR = 3_600_000;

function errorOf(fn: () => unknown): VnumError {
  try {
    fn();
  } catch (e) {
    if (e instanceof VnumError) return e;
    throw e;
  }
  throw new Error('expected a VnumError');
}

function route(caller: string, dialled: string, now: number) {
  return decideRoute({ caller, dialled }, now, storeBridgeLookup(store.db), 'GB');
}

describe('sessions', () => {
  it('lends each party a masked number and bridges both directions', () => {
    seedPool(store.db, londonDids(3));
    const { session, created } = createSession(store.db, { id: 'order-1', first: party(A), second: party(D), now: 0 });
    expect(created).toBe(true);
    const [a, d] = session.parties;
    expect(a.number).toBe(A);
    expect(d.number).toBe(D);
    // D dials A's masked number and reaches A, presented with D's masked number; and back.
    expect(route(D, a.maskedAs, 1)).toEqual({ status: 'BRIDGE', target: A, cli: d.maskedAs, session: 'order-1' });
    expect(route(A, d.maskedAs, 1)).toEqual({ status: 'BRIDGE', target: D, cli: a.maskedAs, session: 'order-1' });
    expect(session.state).toBe('active');
    expect(session.expiresAt).toBeNull();
  });

  it('returns the existing session unchanged when created again with the same parties (safe retry)', () => {
    seedPool(store.db, londonDids(3));
    const first = createSession(store.db, { id: 'order-1', first: party(A), second: party(D), now: 0 });
    const again = createSession(store.db, { id: 'order-1', first: party(A), second: party(D), ttlMs: HOUR, now: 10 });
    expect(again.created).toBe(false);
    expect(again.session).toEqual(first.session);
    expect(store.db.prepare('SELECT count(*) FROM bridge').pluck().get()).toBe(2);
  });

  it('refuses the same id with other parties, without naming the other session’s numbers', () => {
    seedPool(store.db, londonDids(3));
    createSession(store.db, { id: 'order-1', first: party(A), second: party(D), now: 0 });
    const error = errorOf(() => createSession(store.db, { id: 'order-1', first: party(A), second: party(mobile(3)), now: 1 }));
    expect(error.code).toBe(ErrorCode.SessionConflict);
    expect(error.message).not.toContain(D);
  });

  it('refuses bad ids, equal parties and pool numbers as parties', () => {
    seedPool(store.db, londonDids(2));
    expect(errorOf(() => createSession(store.db, { id: 'a b', first: party(A), second: party(D), now: 0 })).code).toBe(ErrorCode.InvalidArgument);
    expect(errorOf(() => createSession(store.db, { id: 'x"y', first: party(A), second: party(D), now: 0 })).code).toBe(ErrorCode.InvalidArgument);
    expect(errorOf(() => createSession(store.db, { id: 'o', first: party(A), second: party(A), now: 0 })).message).toMatch(/different/);
    expect(errorOf(() => createSession(store.db, { id: 'o', first: party(A), second: party('+442079460001'), now: 0 })).message).toMatch(/virtual number in the pool/);
    expect(store.db.prepare('SELECT count(*) FROM session').pluck().get()).toBe(0);
  });

  it('expires at its TTL, enforced at lookup time with no sweeper', () => {
    seedPool(store.db, londonDids(2));
    const { session } = createSession(store.db, { id: 'o1', first: party(A), second: party(D), ttlMs: 2 * HOUR, now: 0 });
    expect(session.expiresAt).toBe(2 * HOUR);
    const dialled = session.parties[1].maskedAs;
    expect(route(A, dialled, 2 * HOUR - 1).status).toBe('BRIDGE');
    expect(route(A, dialled, 2 * HOUR)).toEqual({ status: 'ENDED', target: null, cli: null, session: 'o1' });
    expect(getSession(store.db, 'o1', 2 * HOUR).state).toBe('ended');
  });

  it('keeps routing during the grace period after release, then ends', () => {
    seedPool(store.db, londonDids(2));
    const { session } = createSession(store.db, { id: 'o1', first: party(A), second: party(D), now: 0 });
    const released = releaseSession(store.db, 'o1', 30 * 60_000, 1000);
    expect(released.changed).toBe(true);
    expect(released.session.state).toBe('grace');
    expect(released.session.endsAt).toBe(1000 + 30 * 60_000);
    const dialled = session.parties[0].maskedAs;
    expect(route(D, dialled, 1000 + 30 * 60_000 - 1).status).toBe('BRIDGE');
    expect(route(D, dialled, 1000 + 30 * 60_000).status).toBe('ENDED');
  });

  it('release with grace 0 ends now; releasing again never extends; unknown ids are an error', () => {
    seedPool(store.db, londonDids(2));
    createSession(store.db, { id: 'o1', first: party(A), second: party(D), ttlMs: HOUR, now: 0 });
    // A grace longer than the TTL does not extend the session.
    expect(releaseSession(store.db, 'o1', 2 * HOUR, 10).session.endsAt).toBe(HOUR);
    expect(releaseSession(store.db, 'o1', 3 * HOUR, 20).changed).toBe(false);
    const ended = releaseSession(store.db, 'o1', 0, 30);
    expect(ended.session.state).toBe('ended');
    expect(releaseSession(store.db, 'o1', 0, 40).changed).toBe(false);
    expect(store.db.prepare('SELECT count(*) FROM bridge WHERE ends_at IS NULL OR ends_at > 30').pluck().get()).toBe(0);
    expect(errorOf(() => releaseSession(store.db, 'nope', 0, 1)).code).toBe(ErrorCode.SessionNotFound);
  });

  it('lets a party be in as many sessions as there are numbers, then names the count and the pool size', () => {
    seedPool(store.db, londonDids(3));
    for (let i = 0; i < 3; i++) createSession(store.db, { id: `o${i}`, first: party(mobile(100 + i)), second: party(D), now: i });
    const error = errorOf(() => createSession(store.db, { id: 'o9', first: party(mobile(200)), second: party(D), now: 9 }));
    expect(error.code).toBe(ErrorCode.PoolExhausted);
    expect(error.message).toBe(
      `pool exhausted for ${D}: it is in 3 live sessions and the pool has 3 available numbers (3 in all); add numbers with "vnum pool add"`,
    );
    // Once one ends, the number is free again.
    releaseSession(store.db, 'o1', 0, 10);
    expect(createSession(store.db, { id: 'o9', first: party(mobile(200)), second: party(D), now: 11 }).created).toBe(true);
    expect(invariantViolations(store.db, 11)).toEqual([]);
  });

  it('one virtual number carries many sessions: different callers share it', () => {
    seedPool(store.db, londonDids(1));
    for (let i = 0; i < 50; i++) createSession(store.db, { id: `o${i}`, first: party(mobile(100 + i)), second: party(mobile(500 + i)), now: i });
    expect(store.db.prepare('SELECT count(DISTINCT dialled) FROM bridge').pluck().get()).toBe(1);
    expect(invariantViolations(store.db, 100)).toEqual([]);
  });

  it('gives a returning pair its previous numbers back (sticky)', () => {
    seedPool(store.db, londonDids(5));
    const first = createSession(store.db, { id: 'o1', first: party(A), second: party(D), now: 0 }).session;
    releaseSession(store.db, 'o1', 0, 1);
    // Other sessions in between make other numbers the least recently used.
    createSession(store.db, { id: 'o2', first: party(A), second: party(mobile(9)), now: 2 });
    releaseSession(store.db, 'o2', 0, 3);
    const again = createSession(store.db, { id: 'o3', first: party(A), second: party(D), now: 4 }).session;
    expect(again.parties.map((p) => p.maskedAs)).toEqual(first.parties.map((p) => p.maskedAs));
  });

  it('does not give a pair back a number lent to reach someone else since (it is that party’s number now)', () => {
    seedPool(store.db, londonDids(3));
    const [n1, n2, n3] = londonDids(3);
    expect(createSession(store.db, { id: 'o1', first: party(A), second: party(D), now: 0 }).session.parties[0].maskedAs).toBe(n1);
    releaseSession(store.db, 'o1', 0, 1);
    // D reaches three others: n2 and n3 are new to D, then n1 (A's) is the only one free.
    const dials = [0, 1, 2].map((i) => createSession(store.db, { id: `x${i}`, first: party(mobile(100 + i)), second: party(D), now: 2 + i }).session.parties[0].maskedAs);
    expect(dials).toEqual([n2, n3, n1]);
    for (let i = 0; i < 3; i++) releaseSession(store.db, `x${i}`, 0, 10);
    // n1 is mobile(102)'s number in D's call log now: A gets D's least recently used number instead.
    expect(createSession(store.db, { id: 'o2', first: party(A), second: party(D), now: 11 }).session.parties[0].maskedAs).toBe(n2);
  });

  it('lists every session of a party, also those a returning pair made on the same numbers', () => {
    seedPool(store.db, londonDids(2));
    createSession(store.db, { id: 'o1', first: party(A), second: party(D), now: 0 });
    releaseSession(store.db, 'o1', 0, 1);
    createSession(store.db, { id: 'o2', first: party(A), second: party(D), now: 2 });
    expect(listSessions(store.db, { party: D, limit: 10, now: 3 }).sessions.map((s) => s.id)).toEqual(['o2', 'o1']);
  });

  it('audits the bridge rows against the sessions', () => {
    seedPool(store.db, londonDids(2));
    createSession(store.db, { id: 'o1', first: party(A), second: party(D), now: 0 });
    expect(invariantViolations(store.db, 1)).toEqual([]);
    // A bridge whose end no longer matches its session's would route wrongly: the audit names it.
    store.db.prepare('UPDATE bridge SET ends_at = 5 WHERE caller = ?').run(A);
    expect(invariantViolations(store.db, 1)).toEqual([
      { kind: 'unrouted', caller: A, dialled: expect.any(String) },
      { kind: 'stale', caller: A, dialled: expect.any(String) },
    ]);
  });

  it("lends the party's least recently used number first (cool-off)", () => {
    seedPool(store.db, londonDids(3));
    // D dials numbers 01, 02, 03 in turn, each session ended.
    for (let i = 0; i < 3; i++) {
      const s = createSession(store.db, { id: `o${i}`, first: party(mobile(100 + i)), second: party(D), now: i * 10 }).session;
      expect(s.parties[0].maskedAs).toBe(londonDids(3)[i]);
      releaseSession(store.db, `o${i}`, 0, i * 10 + 1);
    }
    // A new counterparty gets the number D used longest ago.
    const next = createSession(store.db, { id: 'o9', first: party(mobile(300)), second: party(D), now: 100 }).session;
    expect(next.parties[0].maskedAs).toBe(londonDids(3)[0]);
  });

  it("prefers numbers in the dialling party's country", () => {
    addToPool(store.db, [{ number: '+14155550199' }, { number: '+442079460050' }], { now: 0 });
    const s = createSession(store.db, { id: 'o', first: party('+14155550123'), second: party(A), now: 0 }).session;
    // A (GB) dials the first party's masked number: a GB one. The US party dials a US one.
    expect(s.parties[0].maskedAs).toBe('+442079460050');
    expect(s.parties[1].maskedAs).toBe('+14155550199');
  });

  it('lends a reserved number only when asked for by number; never a retired one', () => {
    seedPool(store.db, ['+442079460001'], 'reserved');
    seedPool(store.db, ['+442079460002'], 'retired');
    expect(errorOf(() => createSession(store.db, { id: 'o1', first: party(A), second: party(D), now: 0 })).code).toBe(ErrorCode.PoolExhausted);
    const s = createSession(store.db, {
      id: 'o1',
      first: party(A, '+442079460001'),
      second: party(D, '+442079460001'),
      now: 0,
    }).session;
    expect(s.parties.map((p) => p.maskedAs)).toEqual(['+442079460001', '+442079460001']);
    expect(errorOf(() => createSession(store.db, { id: 'o2', first: party(A, '+442079460002'), second: party(D, '+442079460001'), now: 0 })).message).toMatch(/is retired/);
  });

  it('keeps routing sessions on a number retired after they started', () => {
    seedPool(store.db, londonDids(1));
    const s = createSession(store.db, { id: 'o1', first: party(A), second: party(D), now: 0 }).session;
    addToPool(store.db, [{ number: londonDids(1)[0]!, state: 'retired' }], { now: 1 });
    expect(route(A, s.parties[1].maskedAs, 2).status).toBe('BRIDGE');
    expect(errorOf(() => createSession(store.db, { id: 'o2', first: party(mobile(7)), second: party(mobile(8)), now: 3 })).code).toBe(ErrorCode.PoolExhausted);
  });

  it('lists by party and state, newest first, and says when the list was cut', () => {
    seedPool(store.db, londonDids(4));
    createSession(store.db, { id: 'o1', first: party(A), second: party(D), now: 0 });
    createSession(store.db, { id: 'o2', first: party(A), second: party(mobile(3)), now: 1 });
    createSession(store.db, { id: 'o3', first: party(mobile(4)), second: party(mobile(5)), now: 2 });
    releaseSession(store.db, 'o2', 10, 3);
    const ids = (f: Parameters<typeof listSessions>[1]) => listSessions(store.db, f).sessions.map((s) => s.id);
    expect(ids({ party: A, limit: 10, now: 5 })).toEqual(['o2', 'o1']);
    expect(ids({ state: 'grace', limit: 10, now: 5 })).toEqual(['o2']);
    expect(ids({ state: 'active', limit: 10, now: 5 })).toEqual(['o3', 'o1']);
    expect(ids({ state: 'ended', limit: 10, now: 13 })).toEqual(['o2']);
    expect(listSessions(store.db, { limit: 2, now: 5 }).more).toBe(true);
  });
});

describe('routing decision', () => {
  it('normalises the caller and the dialled number as carriers deliver them', () => {
    seedPool(store.db, londonDids(2));
    const s = createSession(store.db, { id: 'o1', first: party(A), second: party(D), now: 0 }).session;
    const dialled = s.parties[1].maskedAs; // what A dials
    for (const caller of [A, `0${A.slice(3)}`, A.slice(1)]) {
      for (const did of [dialled, dialled.slice(1), `0${dialled.slice(3)}`]) {
        expect(route(caller, did, 1)).toMatchObject({ status: 'BRIDGE', target: D });
      }
    }
  });

  it('answers NO_SESSION for a number in no session, INVALID for junk or withheld callers', () => {
    seedPool(store.db, londonDids(2));
    createSession(store.db, { id: 'o1', first: party(A), second: party(D), now: 0 });
    expect(route(mobile(77), londonDids(1)[0]!, 1)).toEqual({ status: 'NO_SESSION', target: null, cli: null, session: null });
    for (const caller of ['unknown', 'anonymous', '', `${A}&PJSIP/evil`, '"x", (y)', '9'.repeat(300)]) {
      expect(route(caller, londonDids(1)[0]!, 1)).toMatchObject({ status: 'INVALID', target: null, cli: null });
    }
    expect(route(A, 'abc', 1).status).toBe('INVALID');
  });
});
