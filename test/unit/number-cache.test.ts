import { afterEach, describe, expect, it } from 'vitest';
import { normaliseNumberCached, ROUTING_NUMBER_CACHE, SegmentedLru } from '../../src/numbers/cache.js';
import { normaliseNumber } from '../../src/numbers/normalise.js';
import { VnumError } from '../../src/errors.js';

afterEach(() => ROUTING_NUMBER_CACHE.clear());

function outcome(fn: () => string): string {
  try {
    return fn();
  } catch (e) {
    return e instanceof VnumError ? `${e.code}: ${e.message}` : `not a VnumError: ${String(e)}`;
  }
}

describe('normaliseNumberCached', () => {
  const inputs: Array<[string, string | undefined]> = [
    ['+447911123456', undefined],
    ['07911 123456', 'GB'],
    ['07911123456', 'GB'],
    ['447911123456', 'GB'],
    ['07911123456', undefined], // no country: an error, every time
    ['07911123456', 'FR'], // another country reads it otherwise
    ['0612345678', 'FR'],
    ['+44 7911 1234', undefined], // too short
    ['+4479111234567890', undefined],
    ['tel:+447911123456', undefined],
    ['unknown', 'GB'],
    [`${' '.repeat(40)}+447911123456`, undefined], // too long to be cached, still read
    ['07911123456', 'gb'], // not a country code as parseCountry gives them: uncached
  ];

  it('answers exactly as normaliseNumber, errors included, first time and from the cache', () => {
    for (let pass = 0; pass < 3; pass++) {
      for (const [input, country] of inputs) {
        expect(outcome(() => normaliseNumberCached(input, country)), `${input} / ${country} pass ${pass}`).toBe(
          outcome(() => normaliseNumber(input, country)),
        );
      }
    }
  });

  it('keeps national numbers of different default countries apart', () => {
    expect(normaliseNumberCached('0612345678', 'FR')).toBe('+33612345678');
    expect(outcome(() => normaliseNumberCached('0612345678', 'GB'))).toBe(outcome(() => normaliseNumber('0612345678', 'GB')));
    expect(outcome(() => normaliseNumberCached('0612345678'))).toMatch(/^VNUM_NO_DEFAULT_COUNTRY: /);
  });

  it('keeps no failures and no long input', () => {
    expect(() => normaliseNumberCached('+44 7911 1234')).toThrow(VnumError);
    expect(() => normaliseNumberCached('07911123456')).toThrow(VnumError);
    normaliseNumberCached(`${' '.repeat(40)}+447911123456`);
    expect(ROUTING_NUMBER_CACHE.size).toBe(0);
  });

  it('stays bounded under a flood of distinct callers, and the DIDs in use stay cached', () => {
    const capacity = ROUTING_NUMBER_CACHE.probationCapacity + ROUTING_NUMBER_CACHE.protectedCapacity;
    const dids = Array.from({ length: 500 }, (_, i) => `+44207946${String(i).padStart(4, '0')}`);
    for (const did of dids) normaliseNumberCached(did, 'GB');
    for (const did of dids) normaliseNumberCached(did, 'GB'); // seen twice: protected
    for (let i = 0; i < 20_000; i++) {
      normaliseNumberCached(`+4475${String((i * 69_621 + 777) % 100_000_000).padStart(8, '0')}`, 'GB');
      if (i % 40 === 0) normaliseNumberCached(dids[(i / 40) % dids.length]!, 'GB');
      expect(ROUTING_NUMBER_CACHE.size).toBeLessThanOrEqual(capacity);
    }
    // Every DID is still a hit: normaliseNumber is not called for it again.
    const before = ROUTING_NUMBER_CACHE.size;
    for (const did of dids) expect(ROUTING_NUMBER_CACHE.get(`GB${did}`)).toBe(did);
    expect(ROUTING_NUMBER_CACHE.size).toBe(before);
  });
});

describe('SegmentedLru', () => {
  it('never holds more than its two capacities', () => {
    const lru = new SegmentedLru<number>(3, 2);
    for (let i = 0; i < 100; i++) {
      if (lru.get(`k${i % 7}`) === undefined) lru.set(`k${i % 7}`, i);
      expect(lru.size).toBeLessThanOrEqual(5);
    }
  });

  it('promotes a key seen again, and demotes the least recently used protected key to probation', () => {
    const lru = new SegmentedLru<string>(2, 2);
    lru.set('a', 'A');
    lru.set('b', 'B');
    expect(lru.get('a')).toBe('A'); // a: protected
    expect(lru.get('b')).toBe('B'); // b: protected
    lru.set('c', 'C');
    expect(lru.get('c')).toBe('C'); // c: protected, a (least recent) back to probation
    lru.set('d', 'D');
    lru.set('e', 'E'); // probation holds two: a is pushed out
    expect(lru.get('a')).toBeUndefined();
    expect(lru.get('b')).toBe('B');
    expect(lru.get('c')).toBe('C');
  });

  it('lets one-off keys churn probation only', () => {
    const lru = new SegmentedLru<number>(4, 4);
    for (const k of ['p', 'q']) {
      lru.set(k, 1);
      lru.get(k);
    }
    for (let i = 0; i < 1000; i++) lru.set(`once${i}`, i);
    expect(lru.get('p')).toBe(1);
    expect(lru.get('q')).toBe(1);
  });

  it('refuses a capacity below one', () => {
    expect(() => new SegmentedLru(0, 1)).toThrow(RangeError);
  });
});
