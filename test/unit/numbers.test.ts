import { describe, expect, it } from 'vitest';
import { E164_DIGITS, E164_SHAPE, normaliseNumber, parseCountry, parseNumber } from '../../src/numbers/normalise.js';
import { readRepo } from '../support/repo.js';
import { parseDuration } from '../../src/duration.js';
import { ErrorCode, isVnumError, VnumError } from '../../src/errors.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return e instanceof VnumError ? e.code : 'not a VnumError';
  }
  return undefined;
}

describe('normaliseNumber', () => {
  it('keeps +E.164 as it is', () => {
    expect(normaliseNumber('+447911123456')).toBe('+447911123456');
  });

  it.each([
    ['+447911123456', undefined],
    ['07911 123456', 'GB'],
    ['07911123456', 'GB'],
    ['447911123456', 'GB'],
    ['+44 (0)7911-123.456', undefined],
  ])('reads %s (default country %s) as +447911123456', (input, country) => {
    expect(normaliseNumber(input, country)).toBe('+447911123456');
  });

  it('knows the country of a number', () => {
    expect(parseNumber('+442079460001').country).toBe('GB');
    expect(parseNumber('9876543210', 'IN')).toEqual({ e164: '+919876543210', country: 'IN', callingCode: '91', type: 'mobile' });
  });

  it('refuses a number without + when no default country is set, saying how to set one', () => {
    expect(codeOf(() => normaliseNumber('07911123456'))).toBe(ErrorCode.NoDefaultCountry);
    expect(() => normaliseNumber('07911123456')).toThrow(/--country XX or VNUM_DEFAULT_COUNTRY/);
  });

  it.each([
    ['+447911123456&PJSIP/evil', /only digits/],
    ['"+447911123456"', /only digits/],
    ['tel:+447911123456', /only digits/],
    ['unknown', /only digits/],
    ['', /only digits/],
    ['+1'.padEnd(60, '9'), /only digits/],
    ['+4420794600', /length/],
    ['+447700900123', /not a valid number/],
  ])('rejects %j with the reason', (input, reason) => {
    expect(codeOf(() => normaliseNumber(input, 'GB'))).toBe(ErrorCode.InvalidNumber);
    expect(() => normaliseNumber(input, 'GB')).toThrow(reason);
  });

  it('validates the country code: a region libphonenumber knows, else a country error of its own', () => {
    expect(parseCountry('gb')).toBe('GB');
    expect(parseCountry(' je ')).toBe('JE');
    expect(parseCountry(undefined)).toBeUndefined();
    for (const bad of ['GBR', 'XX', 'ZZ', 'UK', 'G1', 'E']) {
      expect(codeOf(() => parseCountry(bad)), bad).toBe(ErrorCode.InvalidCountry);
    }
    expect(() => parseCountry('XX')).toThrow(/unknown country "XX": use an ISO 3166 alpha-2 code/);
  });
});

describe('parseDuration', () => {
  it.each([
    ['0s', 0],
    ['90s', 90_000],
    ['30m', 1_800_000],
    ['2h', 7_200_000],
    ['7d', 604_800_000],
    ['250ms', 250],
  ])('%s = %d ms', (text, ms) => expect(parseDuration(text)).toBe(ms));

  it.each(['', '2', 'h', '1.5h', '-1h', '2 hours', '2h30m'])('rejects %j', (text) => {
    expect(() => parseDuration(text, 'TTL')).toThrow(/invalid TTL/);
    expect(isVnumError((() => { try { parseDuration(text); } catch (e) { return e; } })(), ErrorCode.InvalidArgument)).toBe(true);
  });
});

describe("E.164's length, one rule", () => {
  it('6 to 15 digits: the shortest numbers libphonenumber calls valid are kept, longer ones than E.164 allows are refused', () => {
    expect(E164_DIGITS).toEqual({ min: 6, max: 15 });
    expect(normaliseNumber('+431110')).toBe('+431110');
    expect(normaliseNumber('+493012345678901')).toBe('+493012345678901');
    // libphonenumber calls this German number valid; E.164 and the dialplan do not.
    expect(codeOf(() => normaliseNumber('+4930123456789012'))).toBe(ErrorCode.InvalidNumber);
    expect(() => normaliseNumber('+4930123456789012')).toThrow(/E\.164 numbers have 6 to 15 digits/);
    expect(E164_SHAPE.test('+431110')).toBe(true);
    expect(E164_SHAPE.test('+43111')).toBe(false);
    expect(E164_SHAPE.test('+493012345678901')).toBe(true);
    expect(E164_SHAPE.test('+4930123456789012')).toBe(false);
    expect(E164_SHAPE.test('+0441234567')).toBe(false);
  });

  it('dialplan/vnum.conf checks both numbers of a BRIDGE with the same bounds', () => {
    const conf = readRepo('dialplan/vnum.conf');
    const checks = [...conf.matchAll(/=~ "\^\[\+\]\[1-9\]\[0-9\]\{(\d+),(\d+)\}\$"/g)].map((m) => [Number(m[1]), Number(m[2])]);
    expect(checks).toEqual([
      [E164_DIGITS.min - 1, E164_DIGITS.max - 1],
      [E164_DIGITS.min - 1, E164_DIGITS.max - 1],
    ]);
    expect(readRepo('dialplan/README.md')).toContain(`\`+\` and ${E164_DIGITS.min} to ${E164_DIGITS.max} digits`);
  });
});
