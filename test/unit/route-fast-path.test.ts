import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { getCountries, getExampleNumber, parsePhoneNumberWithError, type CountryCode } from 'libphonenumber-js/max';
import examples from 'libphonenumber-js/examples.mobile.json' with { type: 'json' };
import { decideRoute, type BridgeLookup, type LiveBridge, type RouteDecision } from '../../src/routing/decide.js';
import { normaliseNumber, type E164 } from '../../src/numbers/normalise.js';
import { ROUTING_NUMBER_CACHE } from '../../src/numbers/cache.js';
import { isVnumError } from '../../src/errors.js';
import { isLive } from '../../src/session/state.js';
import { createSession } from '../../src/session/sessions.js';
import { storeBridgeLookup } from '../../src/routing/lookup.js';
import { londonDids, mobile, party, seedPool, tempDb } from '../support/store.js';

afterEach(() => ROUTING_NUMBER_CACHE.clear());

const COUNTRIES = getCountries();
const DEFAULTS = [undefined, 'GB', 'US', 'IN', 'FR', 'DE', 'BR'];
const E164_SHAPE = /^\+[1-9][0-9]{6,14}$/;

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

/** decideRoute as it was before the fast path: both numbers normalised, then the store. */
function reference(call: { caller: string; dialled: string }, now: number, bridges: BridgeLookup, country?: string): RouteDecision {
  if (['', 'unknown', 'anonymous', 'restricted', 'private', 'withheld'].includes(call.caller.trim().toLowerCase())) {
    return { status: 'INVALID', target: null, cli: null, session: null, reason: 'the caller withheld their number' };
  }
  let caller: E164;
  let dialled: E164;
  try {
    caller = normaliseNumber(call.caller, country);
    dialled = normaliseNumber(call.dialled, country);
  } catch (e) {
    if (isVnumError(e)) return { status: 'INVALID', target: null, cli: null, session: null, reason: e.message };
    throw e;
  }
  const bridge = bridges.live(caller, dialled);
  if (bridge && isLive(bridge.endsAt, now)) return { status: 'BRIDGE', target: bridge.target, cli: bridge.cli, session: bridge.session };
  const previous = bridge?.session ?? bridges.latestSession(caller, dialled);
  return previous === undefined
    ? { status: 'NO_SESSION', target: null, cli: null, session: null }
    : { status: 'ENDED', target: null, cli: null, session: previous };
}

interface FakeStore {
  bridges: Map<string, LiveBridge>;
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
    }),
    { maxLength: 25 },
  );
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
      fc.property(storeArb, fc.array(callArb, { minLength: 1, maxLength: 20 }), fc.boolean(), (rows, calls, liveReturnsLatest) => {
        const store: FakeStore = { bridges: new Map(), asked: [] };
        rows.forEach((r, i) => {
          store.bridges.set(`${NUMBERS[r.a]}|${NUMBERS[r.b]}`, { target: NUMBERS[r.b]!, cli: NUMBERS[r.a]!, session: `s${i}`, endsAt: r.endsAt });
        });
        const lookup = fakeLookup(store, NOW, liveReturnsLatest);
        for (const c of calls) {
          // Half the calls on a stored pair, so that BRIDGE and ENDED are common.
          const row = rows.length > 0 && c.howA % 2 === 0 ? rows[c.a % rows.length]! : c;
          const call = { caller: written(NUMBERS[row.a]!, c.howA, c.noise), dialled: written(NUMBERS[row.b]!, c.howB, c.noise) };
          expect(decideRoute(call, NOW, lookup, c.country), JSON.stringify({ call, country: c.country })).toEqual(reference(call, NOW, lookup, c.country));
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
            expect(decideRoute(call, NOW, lookup, country), JSON.stringify(call)).toEqual(reference(call, NOW, lookup, country));
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
  const bridge: LiveBridge = { target: D, cli: mobile(3), session: 'o1', endsAt: null };

  function setup(liveReturnsLatest: boolean, bridges: Array<[string, LiveBridge]> = [[`${A}|${D}`, bridge]]) {
    const store: FakeStore = { bridges: new Map(bridges), asked: [] };
    return { store, lookup: fakeLookup(store, NOW, liveReturnsLatest) };
  }

  it('a stored pair delivered as E.164: one lookup, no number normalised', () => {
    const { store, lookup } = setup(true);
    expect(decideRoute({ caller: A, dialled: D }, NOW, lookup, 'GB')).toMatchObject({ status: 'BRIDGE', session: 'o1' });
    expect(store.asked).toEqual([`live ${A}|${D}`]);
    expect(ROUTING_NUMBER_CACHE.size).toBe(0);
  });

  it('an E.164 caller with the DID as digits: only the DID is normalised', () => {
    const { store, lookup } = setup(true);
    expect(decideRoute({ caller: A, dialled: D.slice(1) }, NOW, lookup, 'GB').status).toBe('BRIDGE');
    expect(store.asked).toEqual([`live ${A}|${D}`]);
    expect(ROUTING_NUMBER_CACHE.size).toBe(1);
  });

  it('a caller in no session: the key is asked once (the store says live() covers ended pairs)', () => {
    const { store, lookup } = setup(true);
    expect(decideRoute({ caller: mobile(9), dialled: D }, NOW, lookup, 'GB').status).toBe('NO_SESSION');
    expect(store.asked).toEqual([`live ${mobile(9)}|${D}`]);
  });

  it('a lookup whose live() sees live bridges only is still asked for the latest session (ENDED is not lost)', () => {
    const { store, lookup } = setup(false, [[`${A}|${D}`, { ...bridge, endsAt: NOW - 1 }]]);
    expect(decideRoute({ caller: A, dialled: D }, NOW, lookup, 'GB')).toMatchObject({ status: 'ENDED', session: 'o1' });
    expect(store.asked).toEqual([`live ${A}|${D}`, `latest ${A}|${D}`]);
  });

  it('an E.164-shaped caller that is not a valid number: INVALID, with the caller named first', () => {
    const { lookup } = setup(true);
    const bad = '+99912345678';
    const both = decideRoute({ caller: bad, dialled: 'nonsense' }, NOW, lookup, 'GB');
    expect(both.status).toBe('INVALID');
    expect(both.reason).toContain(bad);
    expect(decideRoute({ caller: bad, dialled: D }, NOW, lookup, 'GB')).toMatchObject({ status: 'INVALID' });
    expect(decideRoute({ caller: A, dialled: '+4479' }, NOW, lookup, 'GB').reason).toContain('"+4479"');
  });
});
