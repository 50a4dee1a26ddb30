import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createSession, getSession, listSessions, releaseSession } from '../../src/session/sessions.js';
import { decideRoute } from '../../src/routing/decide.js';
import { storeBridgeLookup } from '../../src/routing/lookup.js';
import { addToPool } from '../../src/pool/pool.js';
import { ErrorCode } from '../../src/errors.js';
import { parseNumber } from '../../src/numbers/normalise.js';
import { ALLOWABLE_TYPES, parseNumberPolicy } from '../../src/numbers/policy.js';
import { invariantViolations, londonDids, mobile, party, seedPool, tempDb } from '../support/store.js';
import { errorOf } from '../support/errors.js';

let store: ReturnType<typeof tempDb>;
beforeEach(() => {
  store = tempDb();
});
afterEach(() => store.cleanup());

const A = mobile(1);
const D = mobile(2);
const HOUR = 3_600_000;

function route(caller: string, dialled: string, now: number) {
  return decideRoute({ caller, dialled }, now, storeBridgeLookup(store.db), { defaultCountry: 'GB' });
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
    expect(route(D, a.maskedAs, 1)).toEqual({ status: 'BRIDGE', target: A, presentedCallerId: d.maskedAs, session: 'order-1' });
    expect(route(A, d.maskedAs, 1)).toEqual({ status: 'BRIDGE', target: D, presentedCallerId: a.maskedAs, session: 'order-1' });
    expect(session.state).toBe('active');
    expect(session.expiresAt).toBeNull();
  });

  it('returns the existing session unchanged when the same request comes again (safe retry)', () => {
    seedPool(store.db, londonDids(3));
    const first = createSession(store.db, { id: 'order-1', first: party(A), second: party(D), ttlMs: HOUR, now: 0 });
    // The same --ttl a minute later is the same request.
    const again = createSession(store.db, { id: 'order-1', first: party(A), second: party(D), ttlMs: HOUR, now: 60_000 });
    expect(again.created).toBe(false);
    // The same session; its PINs were shown to the first create only.
    expect(again.session).toEqual({ ...first.session, parties: first.session.parties.map(({ pin: _pin, ...p }) => p) });
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
    expect(route(A, dialled, 2 * HOUR)).toEqual({ status: 'ENDED', target: null, presentedCallerId: null, session: 'o1' });
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

  it('counts a number sharing the party\'s calling code as local, whatever region libphonenumber names', () => {
    // libphonenumber calls +447911123456 a Guernsey mobile, +447797123456 a
    // Jersey one, +14165550123 Canadian. All share their plans with GB and US:
    // a GB pool number is local to the first two, a US one to the third.
    addToPool(store.db, [{ number: '+14155550199' }, { number: '+442079460050' }], { now: 0 });
    const guernsey = createSession(store.db, { id: 'gg', first: party('+14155550123'), second: party('+447911123456'), now: 0 }).session;
    expect(guernsey.parties[0].maskedAs).toBe('+442079460050');
    const jersey = createSession(store.db, { id: 'je', first: party('+14155550124'), second: party('+447797123456'), now: 0 }).session;
    expect(jersey.parties[0].maskedAs).toBe('+442079460050');
    const canada = createSession(store.db, { id: 'ca', first: party('+442079460999'), second: party('+14165550123'), now: 0 }).session;
    expect(canada.parties[0].maskedAs).toBe('+14155550199');
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

  it('answers NO_SESSION for a number in no session, INVALID for junk or withheld callers, NOT_POOL for a number not in the pool', () => {
    seedPool(store.db, londonDids(2));
    createSession(store.db, { id: 'o1', first: party(A), second: party(D), now: 0 });
    expect(route(mobile(77), londonDids(1)[0]!, 1)).toEqual({ status: 'NO_SESSION', target: null, presentedCallerId: null, session: null });
    for (const caller of ['unknown', 'anonymous', '', `${A}&PJSIP/evil`, '"x", (y)', '9'.repeat(300)]) {
      expect(route(caller, londonDids(1)[0]!, 1)).toMatchObject({ status: 'INVALID', target: null, presentedCallerId: null });
    }
    // Not a pool number: whoever calls, and whether or not the dialled string is a number.
    for (const caller of [A, mobile(77), 'anonymous', `${A}&PJSIP/evil`]) {
      for (const dialled of ['+442079460999', '02079460999', 'abc']) {
        expect(route(caller, dialled, 1)).toMatchObject({ status: 'NOT_POOL', target: null, presentedCallerId: null, session: null });
      }
    }
    // A retired number is still the pool's: no session is NO_SESSION, not NOT_POOL.
    addToPool(store.db, [{ number: londonDids(2)[1]!, state: 'retired' }], { now: 1 });
    expect(route(mobile(77), londonDids(2)[1]!, 1).status).toBe('NO_SESSION');
  });

  it('refuses, at routing time, a bridge whose target the number-type policy refuses', () => {
    seedPool(store.db, londonDids(2));
    const widened = { allowed: new Set(['mobile', 'premium-rate'] as const) };
    const premium = parseNumber('+449098790000');
    const s = createSession(store.db, { id: 'p', first: party(A), second: { number: premium.e164, type: premium.type }, now: 0, policy: widened }).session;
    const toPremium = s.parties[1].maskedAs;
    const lookup = storeBridgeLookup(store.db);
    // The operator tightened the policy again: the call is refused, naming the type, never the number.
    const refused = decideRoute({ caller: A, dialled: toPremium }, 1, lookup, { defaultCountry: 'GB' });
    expect(refused).toEqual({ status: 'NOT_ALLOWED', target: null, presentedCallerId: null, session: 'p', reason: expect.stringMatching(/premium-rate/) });
    expect(refused.reason).not.toContain('9098790000');
    expect(decideRoute({ caller: A, dialled: toPremium }, 1, lookup, { policy: widened }).status).toBe('BRIDGE');
    // The premium number calling the mobile is not the policy's business: it dials a mobile.
    expect(decideRoute({ caller: premium.e164, dialled: s.parties[0].maskedAs }, 1, lookup).status).toBe('BRIDGE');
  });

  it('classifies the target of a row written before the store kept target types, and judges it the same', () => {
    seedPool(store.db, londonDids(2));
    const widened = { allowed: new Set(['mobile', 'premium-rate'] as const) };
    const premium = parseNumber('+449098790000');
    const s = createSession(store.db, { id: 'p', first: party(A), second: { number: premium.e164, type: premium.type }, now: 0, policy: widened }).session;
    // As an older vnum wrote it: no type on the rows.
    store.db.prepare('UPDATE bridge SET target_type = NULL').run();
    const lookup = storeBridgeLookup(store.db);
    expect(decideRoute({ caller: A, dialled: s.parties[1].maskedAs }, 1, lookup)).toMatchObject({ status: 'NOT_ALLOWED', session: 'p' });
    expect(decideRoute({ caller: premium.e164, dialled: s.parties[0].maskedAs }, 1, lookup)).toMatchObject({ status: 'BRIDGE', target: A });
  });
});

describe('number-type policy at create', () => {
  it.each([
    ['+449098790000', 'premium-rate'],
    ['+19005551234', 'premium-rate'],
    ['+448001234567', 'toll-free'],
    ['+447012345678', 'personal'],
    ['+447640123456', 'pager'],
    ['+445512345678', 'uan'],
    ['+881612345678', 'international-network'],
    ['+80012345678', 'international-network'],
    ['+979123456789', 'international-network'],
  ])('refuses %s as a party (%s), writing nothing', (number, type) => {
    seedPool(store.db, londonDids(2));
    const parsed = parseNumber(number);
    expect(parsed.type).toBe(type);
    for (const [first, second] of [
      [{ number: parsed.e164, type: parsed.type }, party(D)],
      [party(A), { number: parsed.e164, type: parsed.type }],
    ]) {
      const error = errorOf(() => createSession(store.db, { id: 'x', first: first!, second: second!, now: 0 }));
      expect(error.code).toBe(ErrorCode.NumberNotAllowed);
      expect(error.message).toContain(type);
    }
    expect(store.db.prepare('SELECT count(*) FROM session').pluck().get()).toBe(0);
    expect(store.db.prepare('SELECT count(*) FROM bridge').pluck().get()).toBe(0);
  });

  it('accepts fixed lines, mobiles, NANP numbers and VoIP lines by default', () => {
    seedPool(store.db, londonDids(4));
    for (const [i, number] of ['+442079460555', '+14155550123', '+33912345678', '+445612345678'].entries()) {
      const parsed = parseNumber(number);
      expect(createSession(store.db, { id: `ok${i}`, first: party(A), second: { number: parsed.e164, type: parsed.type }, now: 0 }).created).toBe(true);
    }
  });

  it('a widened policy lets the named types in, never the international networks', () => {
    seedPool(store.db, londonDids(2));
    const policy = parseNumberPolicy('default,toll-free');
    const tollFree = parseNumber('+448001234567');
    expect(createSession(store.db, { id: 'tf', first: party(A), second: { number: tollFree.e164, type: tollFree.type }, now: 0, policy }).created).toBe(true);
    expect(() => parseNumberPolicy('default,international-network')).toThrow(/always refused/);
    const satellite = parseNumber('+881612345678');
    const all = parseNumberPolicy(ALLOWABLE_TYPES.join(','));
    expect(errorOf(() => createSession(store.db, { id: 'sat', first: party(A), second: { number: satellite.e164, type: satellite.type }, now: 0, policy: all })).code).toBe(
      ErrorCode.NumberNotAllowed,
    );
  });
});
