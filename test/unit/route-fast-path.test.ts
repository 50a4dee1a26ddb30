import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { getCountries, getExampleNumber, parsePhoneNumberWithError, type CountryCode } from 'libphonenumber-js/max';
import examples from 'libphonenumber-js/examples.mobile.json' with { type: 'json' };
import { decideRoute, type BridgeLookup, type LiveBridge, type RouteDecision } from '../../src/routing/decide.js';
import { allowsType, DEFAULT_POLICY, refusal } from '../../src/numbers/policy.js';
import { NUMBER_TYPES } from '../../src/numbers/type.js';
import { E164_SHAPE, normaliseNumber, type E164 } from '../../src/numbers/normalise.js';
import { ROUTING_NUMBER_CACHE } from '../../src/numbers/cache.js';
import { isVnumError, type VnumError } from '../../src/errors.js';
import { isLive } from '../../src/session/state.js';
import { createSession } from '../../src/session/sessions.js';
import { storeBridgeLookup } from '../../src/routing/lookup.js';
import { londonDids, mobile, party, seedPool, tempDb } from '../support/store.js';

afterEach(() => ROUTING_NUMBER_CACHE.clear());

const COUNTRIES = getCountries();
const DEFAULTS = [undefined, 'GB', 'US', 'IN', 'FR', 'DE', 'BR'];

function normalised(input: string, country?: string): string {
  try {
    return normaliseNumber(input, country);
  } catch (e) {
    return isVnumError(e) ? `error: ${e.message}` : `not a VnumError: ${String(e)}`;
  }
}

/** Each country's example mobile number, as E.164 (what the store holds for such a party). */
const EXAMPLES: E164[] = COUNTRIES.flatMap((c) => {
  const example = getExampleNumber(c, examples);
  return example?.isValid() ? [example.number as E164] : [];
});

describe('normalisation is idempotent on what it produces (why the as-is lookup is safe)', () => {
  it('every country example number: normalising its E.164 gives it back, whatever the default country', () => {
    expect(EXAMPLES.length).toBeGreaterThan(200);
    for (const e164 of EXAMPLES) {
      expect(e164, e164).toMatch(E164_SHAPE);
      for (const country of DEFAULTS) expect(normalised(e164, country), `${e164} read in ${country}`).toBe(e164);
    }
  });

  it('random valid numbers of several countries, however written: the result normalises to itself', () => {
    const countries: CountryCode[] = ['GB', 'US', 'IN', 'FR', 'DE', 'IT', 'BR', 'AU', 'JP', 'NG', 'MX', 'AR', 'RU', 'CN', 'ZA'];
    let valid = 0;
    fc.assert(
      fc.property(
        fc.constantFrom(...countries),
        fc.stringMatching(/^[0-9]{5,13}$/),
        fc.constantFrom(...DEFAULTS),
        (country, digits, reader) => {
          const example = getExampleNumber(country, examples)!;
          // A number near the example (same leading digits, random rest) is often valid.
          const national = (example.nationalNumber.slice(0, 3) + digits).slice(0, example.nationalNumber.length + (digits.length % 3) - 1);
          const international = `+${example.countryCallingCode}${national}`;
          const first = normalised(international, reader);
          if (first.startsWith('error')) return;
          valid++;
          expect(first).toMatch(E164_SHAPE);
          for (const again of DEFAULTS) expect(normalised(first, again), `${international} -> ${first} read in ${again}`).toBe(first);
          // Written nationally and read in its own country: the same number.
          const parsed = parsePhoneNumberWithError(first);
          if (parsed.country) expect(normalised(parsed.formatNational().replace(/[()]/g, '').trim(), parsed.country)).toBe(first);
        },
      ),
      { numRuns: 3_000 },
    );
    expect(valid).toBeGreaterThan(300);
  });
});

/**
 * decideRoute without the fast path: both numbers normalised first, then the
 * store. A bridge found decides (ENDED, NOT_ALLOWED, BRIDGE); else a dialled
 * number that is no pool number is NOT_POOL whoever calls, then the caller is
 * judged (withheld or invalid: INVALID), then NO_SESSION or ENDED.
 */
function reference(call: { caller: string; dialled: string }, now: number, bridges: BridgeLookup, country?: string): RouteDecision {
  const withheld = ['', 'unknown', 'anonymous', 'restricted', 'private', 'withheld'].includes(call.caller.trim().toLowerCase());
  const attempt = (input: string): E164 | VnumError => {
    try {
      return normaliseNumber(input, country);
    } catch (e) {
      if (isVnumError(e)) return e;
      throw e;
    }
  };
  const caller = withheld ? undefined : attempt(call.caller);
  const dialled = attempt(call.dialled);
  const ok = (n: E164 | VnumError | undefined): n is E164 => typeof n === 'string';
  const none = { target: null, presentedCallerId: null };
  if (ok(caller) && ok(dialled)) {
    const bridge = bridges.live(caller, dialled);
    if (bridge && !isLive(bridge.endsAt, now)) return { status: 'ENDED', ...none, session: bridge.session };
    if (bridge && !allowsType(DEFAULT_POLICY, bridge.targetType)) {
      return { status: 'NOT_ALLOWED', ...none, session: bridge.session, reason: `the target is ${refusal(bridge.targetType)}` };
    }
    if (bridge) return { status: 'BRIDGE', target: bridge.target, presentedCallerId: bridge.presentedCallerId, session: bridge.session };
  }
  if (!ok(dialled)) return { status: 'NOT_POOL', ...none, session: null, reason: `the dialled number is not a pool number: ${dialled.message}` };
  if (!bridges.isPoolNumber(dialled)) return { status: 'NOT_POOL', ...none, session: null, reason: 'the dialled number is not a pool number' };
  if (withheld) return { status: 'INVALID', ...none, session: null, reason: 'the caller withheld their number', code: 'VNUM_INVALID_NUMBER' };
  if (!ok(caller)) return { status: 'INVALID', ...none, session: null, reason: caller!.message, code: caller!.code };
  const previous = bridges.latestSession(caller, dialled);
  return previous === undefined ? { status: 'NO_SESSION', ...none, session: null } : { status: 'ENDED', ...none, session: previous };
}

interface FakeStore {
  bridges: Map<string, LiveBridge>;
  /** Pool numbers beyond the dialled numbers of the bridges (which are always in it). */
  pool?: Set<string>;
  asked: string[];
}

/** A store of bridges keyed by normalised numbers; `liveReturnsLatest` as the real store, or a live-only `live`. */
function fakeLookup(store: FakeStore, now: number, liveReturnsLatest: boolean): BridgeLookup {
  const key = (c: string, d: string): string => `${c}|${d}`;
  return {
    live(c, d) {
      store.asked.push(`live ${key(c, d)}`);
      const b = store.bridges.get(key(c, d));
      return liveReturnsLatest || (b && isLive(b.endsAt, now)) ? b : undefined;
    },
    latestSession(c, d) {
      store.asked.push(`latest ${key(c, d)}`);
      return store.bridges.get(key(c, d))?.session;
    },
    isPoolNumber(n) {
      store.asked.push(`pool ${n}`);
      return store.pool?.has(n) === true || [...store.bridges.keys()].some((k) => k.endsWith(`|${n}`));
    },
    ...(liveReturnsLatest ? { liveReturnsLatest: true } : {}),
  };
}

const NOW = 1_795_600_000_000;
const NUMBERS: E164[] = [...EXAMPLES.filter((_, i) => i % 7 === 0), ...(londonDids(6) as E164[]), mobile(1), mobile(2), '+12015550123' as E164, '+61412345678' as E164];

/** How a carrier (or an attacker) might deliver a number. */
function written(number: E164, how: number, noise: string): string {
  const parsed = parsePhoneNumberWithError(number);
  switch (how) {
    case 0:
      return number;
    case 1:
      return number.slice(1); // digits without +
    case 2:
      return parsed.formatNational();
    case 3:
      return parsed.formatInternational();
    case 4:
      return ` ${number} `;
    case 5:
      return `${number}0`; // one digit too many: often still E.164's shape, seldom valid
    case 6:
      return `+999${number.slice(4)}`; // no such country code, E.164's shape
    case 7:
      return `+0${number.slice(1)}`;
    case 8:
      return `${number}${noise}`; // hostile suffix
    default:
      return noise;
  }
}

describe('the fast path decides exactly as normalising first', () => {
  const storeArb = fc.array(
    fc.record({
      a: fc.nat(NUMBERS.length - 1),
      b: fc.nat(NUMBERS.length - 1),
      endsAt: fc.oneof(fc.constant(null), fc.integer({ min: NOW - 1_000, max: NOW + 1_000 })),
      // Mostly allowed types, sometimes one the policy refuses.
      targetType: fc.oneof(fc.constantFrom('mobile' as const, 'fixed-line' as const), fc.constantFrom(...NUMBER_TYPES)),
    }),
    { maxLength: 25 },
  );
  const poolArb = fc.array(fc.nat(NUMBERS.length - 1), { maxLength: 6 });
  const callArb = fc.record({
    a: fc.nat(NUMBERS.length - 1),
    b: fc.nat(NUMBERS.length - 1),
    howA: fc.nat(10),
    howB: fc.nat(10),
    noise: fc.oneof(fc.string({ maxLength: 20 }), fc.constantFrom('unknown', 'Anonymous', '', '&PJSIP/x', '"', ';x', 'tel:')),
    country: fc.constantFrom(...DEFAULTS),
  });

  it('over random stores and numbers in every shape, valid or not (property)', () => {
    fc.assert(
      fc.property(storeArb, poolArb, fc.array(callArb, { minLength: 1, maxLength: 20 }), fc.boolean(), (rows, pool, calls, liveReturnsLatest) => {
        const store: FakeStore = { bridges: new Map(), pool: new Set(pool.map((i) => NUMBERS[i]!)), asked: [] };
        rows.forEach((r, i) => {
          store.bridges.set(`${NUMBERS[r.a]}|${NUMBERS[r.b]}`, {
            target: NUMBERS[r.b]!,
            presentedCallerId: NUMBERS[r.a]!,
            session: `s${i}`,
            endsAt: r.endsAt,
            targetType: r.targetType,
          });
        });
        const lookup = fakeLookup(store, NOW, liveReturnsLatest);
        for (const c of calls) {
          // Half the calls on a stored pair, so that BRIDGE and ENDED are common.
          const row = rows.length > 0 && c.howA % 2 === 0 ? rows[c.a % rows.length]! : c;
          const call = { caller: written(NUMBERS[row.a]!, c.howA, c.noise), dialled: written(NUMBERS[row.b]!, c.howB, c.noise) };
          expect(decideRoute(call, NOW, lookup, { defaultCountry: c.country }), JSON.stringify({ call, country: c.country })).toEqual(
            reference(call, NOW, lookup, c.country),
          );
        }
      }),
      { numRuns: 400 },
    );
  });

  it('the same over the real store, both directions of live, ended and never-made pairs', () => {
    const store = tempDb();
    try {
      seedPool(store.db, londonDids(6));
      const made = [1, 2, 3, 4].map((i) =>
        createSession(store.db, { id: `o${i}`, first: party(mobile(2 * i)), second: party(mobile(2 * i + 1)), now: NOW - 10_000, ttlMs: i === 4 ? 5_000 : undefined }).session,
      );
      const lookup = storeBridgeLookup(store.db);
      const numbers = made.flatMap((s) => s.parties.flatMap((p) => [p.number, p.maskedAs])).concat([mobile(99)]);
      for (const caller of numbers) {
        for (const dialled of numbers) {
          for (const [how, country] of [[0, 'GB'], [1, 'GB'], [2, 'GB'], [3, undefined], [5, 'GB'], [6, undefined]] as const) {
            const call = { caller: written(caller, how, ''), dialled: written(dialled, (how + 1) % 4, '') };
            expect(decideRoute(call, NOW, lookup, { defaultCountry: country }), JSON.stringify(call)).toEqual(reference(call, NOW, lookup, country));
          }
        }
      }
      const [a, d] = made[0]!.parties;
      expect(decideRoute({ caller: a.number, dialled: d.maskedAs }, NOW, lookup).status).toBe('BRIDGE');
      const [e, f] = made[3]!.parties;
      expect(decideRoute({ caller: e.number, dialled: f.maskedAs }, NOW, lookup).status).toBe('ENDED');
    } finally {
      store.cleanup();
    }
  });
});

describe('what the fast path saves (fails if it is bypassed)', () => {
  const A = mobile(1);
  const D = mobile(2);
  const bridge: LiveBridge = { target: D, presentedCallerId: mobile(3), session: 'o1', endsAt: null, targetType: 'mobile' };
  const GB = { defaultCountry: 'GB' };

  function setup(liveReturnsLatest: boolean, bridges: Array<[string, LiveBridge]> = [[`${A}|${D}`, bridge]]) {
    const store: FakeStore = { bridges: new Map(bridges), asked: [] };
    return { store, lookup: fakeLookup(store, NOW, liveReturnsLatest) };
  }

  it('a stored pair delivered as E.164: one lookup, no number normalised, no pool read', () => {
    const { store, lookup } = setup(true);
    expect(decideRoute({ caller: A, dialled: D }, NOW, lookup, GB)).toMatchObject({ status: 'BRIDGE', session: 'o1' });
    expect(store.asked).toEqual([`live ${A}|${D}`]);
    expect(ROUTING_NUMBER_CACHE.size).toBe(0);
  });

  it('a stored pair whose target the policy refuses: the same one lookup, NOT_ALLOWED naming the type, no number parsed', () => {
    const { store, lookup } = setup(true, [[`${A}|${D}`, { ...bridge, targetType: 'premium-rate' }]]);
    const decision = decideRoute({ caller: A, dialled: D }, NOW, lookup, GB);
    expect(decision).toMatchObject({ status: 'NOT_ALLOWED', target: null, presentedCallerId: null, session: 'o1' });
    expect(decision.reason).toMatch(/premium-rate/);
    expect(decision.reason).not.toContain(D.slice(-6));
    expect(store.asked).toEqual([`live ${A}|${D}`]);
    expect(ROUTING_NUMBER_CACHE.size).toBe(0);
    // Widened to premium rate, the same row bridges.
    const widened = { ...GB, policy: { allowed: new Set(['mobile', 'premium-rate'] as const) } };
    expect(decideRoute({ caller: A, dialled: D }, NOW, lookup, widened).status).toBe('BRIDGE');
  });

  it('an E.164 caller with the DID as digits: only the DID is normalised', () => {
    const { store, lookup } = setup(true);
    expect(decideRoute({ caller: A, dialled: D.slice(1) }, NOW, lookup, GB).status).toBe('BRIDGE');
    expect(store.asked).toEqual([`live ${A}|${D}`]);
    expect(ROUTING_NUMBER_CACHE.size).toBe(1);
  });

  it('a caller in no session: the key is asked once (the store says live() covers ended pairs), then the pool', () => {
    const { store, lookup } = setup(true);
    expect(decideRoute({ caller: mobile(9), dialled: D }, NOW, lookup, GB).status).toBe('NO_SESSION');
    expect(store.asked).toEqual([`live ${mobile(9)}|${D}`, `pool ${D}`]);
  });

  it('a lookup whose live() sees live bridges only is still asked for the latest session (ENDED is not lost)', () => {
    const { store, lookup } = setup(false, [[`${A}|${D}`, { ...bridge, endsAt: NOW - 1 }]]);
    expect(decideRoute({ caller: A, dialled: D }, NOW, lookup, GB)).toMatchObject({ status: 'ENDED', session: 'o1' });
    expect(store.asked).toEqual([`live ${A}|${D}`, `pool ${D}`, `latest ${A}|${D}`]);
  });

  it('an E.164-shaped caller that is not a valid number, calling a pool number: INVALID naming the caller', () => {
    const { lookup } = setup(true);
    const bad = '+99912345678';
    const decision = decideRoute({ caller: bad, dialled: D }, NOW, lookup, GB);
    expect(decision.status).toBe('INVALID');
    expect(decision.reason).toContain(bad);
  });

  it('a dialled number that is not in the pool, or no number at all: NOT_POOL whoever calls (withheld and invalid callers too)', () => {
    const { store, lookup } = setup(true);
    const office = '+442079460999';
    for (const caller of [A, mobile(9), 'anonymous', '', '+99912345678', 'x&y']) {
      for (const dialled of [office, office.slice(1), '020 7946 0999', 'nonsense', '+4479', '2001']) {
        expect(decideRoute({ caller, dialled }, NOW, lookup, GB), `${caller} -> ${dialled}`).toMatchObject({ status: 'NOT_POOL', session: null });
      }
    }
    expect(decideRoute({ caller: A, dialled: '+4479' }, NOW, lookup, GB).reason).toContain('"+4479"');
    // Withheld callers and invalid ones calling a pool number are still INVALID.
    expect(decideRoute({ caller: 'anonymous', dialled: D }, NOW, lookup, GB).status).toBe('INVALID');
    expect(decideRoute({ caller: 'x&y', dialled: D }, NOW, lookup, GB).status).toBe('INVALID');
    // No bridged call ever asks the pool.
    store.asked.length = 0;
    decideRoute({ caller: A, dialled: D }, NOW, lookup, GB);
    expect(store.asked.filter((q) => q.startsWith('pool'))).toEqual([]);
  });
});
