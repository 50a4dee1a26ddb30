import { describe, expect, it } from 'vitest';
import { chooseMaskedNumber, poolView, requestedNumberProblem, type PoolCandidate } from '../../src/session/allocate.js';

const gb = (n: number, state: PoolCandidate['state'] = 'available'): PoolCandidate => ({
  number: `+4420794600${String(n).padStart(2, '0')}`,
  state,
});
const us: PoolCandidate = { number: '+14155550199', state: 'available' };
const ca: PoolCandidate = { number: '+14165550123', state: 'available' };
const jersey: PoolCandidate = { number: '+441534712345', state: 'available' };
const fr: PoolCandidate = { number: '+33123456789', state: 'available' };

const none = { busy: new Set<string>(), callingCode: '44', lastUsed: new Map<string, number>(), sticky: undefined };

describe('chooseMaskedNumber', () => {
  it('picks the lowest free number when nothing else decides', () => {
    expect(chooseMaskedNumber({ ...none, pool: poolView([gb(3), gb(1), gb(2)]) })).toBe(gb(1).number);
  });

  it('never picks a number the dialling party already dials in a live session', () => {
    expect(chooseMaskedNumber({ ...none, pool: poolView([gb(1), gb(2)]), busy: new Set([gb(1).number]) })).toBe(gb(2).number);
  });

  it('never picks reserved or retired numbers automatically', () => {
    expect(chooseMaskedNumber({ ...none, pool: poolView([gb(1, 'reserved'), gb(2, 'retired'), gb(3)]) })).toBe(gb(3).number);
    expect(chooseMaskedNumber({ ...none, pool: poolView([gb(1, 'reserved'), gb(2, 'retired')]) })).toBeUndefined();
  });

  it('gives a pair its previous number back when it is free (sticky)', () => {
    const facts = { ...none, pool: poolView([gb(1), gb(2), gb(3)]), sticky: gb(3).number, lastUsed: new Map([[gb(3).number, 100]]) };
    expect(chooseMaskedNumber(facts)).toBe(gb(3).number);
  });

  it('ignores the sticky number when it is busy, reserved or retired', () => {
    expect(chooseMaskedNumber({ ...none, pool: poolView([gb(1), gb(2)]), sticky: gb(2).number, busy: new Set([gb(2).number]) })).toBe(gb(1).number);
    expect(chooseMaskedNumber({ ...none, pool: poolView([gb(1), gb(2, 'retired')]), sticky: gb(2).number })).toBe(gb(1).number);
  });

  it("prefers numbers in the dialling party's country", () => {
    expect(chooseMaskedNumber({ ...none, pool: poolView([us, gb(9)]), callingCode: '44' })).toBe(gb(9).number);
    expect(chooseMaskedNumber({ ...none, pool: poolView([us, gb(9)]), callingCode: '1' })).toBe(us.number);
  });

  it('counts numbers sharing a calling code as local, whatever region libphonenumber names (+44 GB/JE, +1 US/CA)', () => {
    // A Jersey DID (libphonenumber: JE) is local to a +44 party; so is a
    // Canadian one to a +1 party, before a lower-numbered foreign one.
    expect(chooseMaskedNumber({ ...none, pool: poolView([us, fr, jersey]), callingCode: '44' })).toBe(jersey.number);
    expect(chooseMaskedNumber({ ...none, pool: poolView([fr, ca]), callingCode: '1' })).toBe(ca.number);
    // Among local numbers, recency decides as before, whatever their regions.
    const lastUsed = new Map([[gb(1).number, 100]]);
    expect(chooseMaskedNumber({ ...none, pool: poolView([fr, gb(1), jersey]), lastUsed })).toBe(jersey.number);
  });

  it('with no calling code for the party, no number is local: recency and number order decide', () => {
    expect(chooseMaskedNumber({ ...none, pool: poolView([gb(2), us]), callingCode: undefined })).toBe(us.number);
  });

  it('prefers numbers never used by this party, then the least recently used (cool-off)', () => {
    const lastUsed = new Map([
      [gb(1).number, 300],
      [gb(2).number, 100],
      [gb(3).number, 200],
    ]);
    expect(chooseMaskedNumber({ ...none, pool: poolView([gb(1), gb(2), gb(3)]), lastUsed })).toBe(gb(2).number);
    expect(chooseMaskedNumber({ ...none, pool: poolView([gb(1), gb(2), gb(3), gb(4)]), lastUsed })).toBe(gb(4).number);
  });

  it('puts country before recency', () => {
    const lastUsed = new Map([[gb(1).number, 500]]);
    expect(chooseMaskedNumber({ ...none, pool: poolView([us, gb(1)]), lastUsed })).toBe(gb(1).number);
  });
});

describe('requestedNumberProblem', () => {
  it('allows a reserved number when asked for by number', () => {
    expect(requestedNumberProblem(gb(1, 'reserved'), new Set())).toBeUndefined();
  });
  it('names why a requested number cannot be lent', () => {
    expect(requestedNumberProblem(undefined, new Set())).toEqual({ code: 'VNUM_NOT_IN_POOL', reason: 'is not in the pool' });
    expect(requestedNumberProblem(gb(1, 'retired'), new Set())).toEqual({ code: 'VNUM_NUMBER_UNAVAILABLE', reason: 'is retired' });
    expect(requestedNumberProblem(gb(1), new Set([gb(1).number]))).toMatchObject({ code: 'VNUM_NUMBER_UNAVAILABLE', reason: expect.stringMatching(/already dialled/) });
  });
});
