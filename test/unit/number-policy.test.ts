import { describe, expect, it } from 'vitest';
import { getCountries, getCountryCallingCode, getExampleNumber, type CountryCode } from 'libphonenumber-js/max';
import examples from 'libphonenumber-js/examples.mobile.json' with { type: 'json' };
import { callingCodeOf, INTERNATIONAL_NETWORK_CODES } from '../../src/numbers/plan.js';
import { NUMBER_TYPES, numberType, numberTypeCode, numberTypeFromCode } from '../../src/numbers/type.js';
import { numberTypeCached } from '../../src/numbers/cache.js';
import {
  ALLOWABLE_TYPES,
  allowsType,
  assertPartyAllowed,
  DEFAULT_ALLOWED_TYPES,
  DEFAULT_POLICY,
  parseNumberPolicy,
} from '../../src/numbers/policy.js';
import { parseNumber } from '../../src/numbers/normalise.js';
import { ErrorCode, VnumError } from '../../src/errors.js';
import { EXIT_USER_ERROR, exitCodeOf } from '../../src/cli/failure.js';

describe('calling codes', () => {
  it('every region\'s example number: callingCodeOf its E.164 is the region\'s calling code', () => {
    for (const country of getCountries()) {
      const example = getExampleNumber(country as CountryCode, examples);
      if (!example) continue;
      expect(callingCodeOf(example.number), `${country} ${example.number}`).toBe(getCountryCallingCode(country));
    }
  });

  it('shared codes: numbers of regions sharing a plan get the same code', () => {
    expect(['+447911123456', '+447797123456', '+442079460001', '+447624123456'].map(callingCodeOf)).toEqual(['44', '44', '44', '44']);
    expect(['+14165550123', '+12015550123', '+18765551234'].map(callingCodeOf)).toEqual(['1', '1', '1']);
    expect(['+74951234567', '+77012345678'].map(callingCodeOf)).toEqual(['7', '7']);
    expect(callingCodeOf('+262262123456')).toBe('262');
    expect(callingCodeOf('+590590123456')).toBe('590');
  });

  it('the international networks, and no code at all', () => {
    for (const code of INTERNATIONAL_NETWORK_CODES) expect(callingCodeOf(`+${code}12345678`)).toBe(code);
    expect(callingCodeOf('+99912345678')).toBeUndefined();
  });
});

describe('number types', () => {
  it.each([
    ['+442079460001', 'fixed-line'],
    ['+447911123456', 'mobile'],
    ['+14155550199', 'fixed-line-or-mobile'],
    ['+33912345678', 'voip'],
    ['+447012345678', 'personal'],
    ['+447640123456', 'pager'],
    ['+443001234567', 'uan'],
    ['+448001234567', 'toll-free'],
    ['+449098790000', 'premium-rate'],
    ['+19005551234', 'premium-rate'],
    // libphonenumber calls these toll-free, shared cost, mobile, premium rate: the range decides.
    ['+80012345678', 'international-network'],
    ['+80812345678', 'international-network'],
    ['+870773111632', 'international-network'],
    ['+881612345678', 'international-network'],
    ['+979123456789', 'international-network'],
    // Not valid in the metadata (a number written by an older vnum, say): unknown.
    ['+447700900123', 'unknown'],
    ['+88234567890', 'international-network'],
  ])('%s is %s', (number, type) => {
    expect(numberType(number)).toBe(type);
    expect(numberTypeCached(number)).toBe(type);
  });

  it('parseNumber types a number as numberType does', () => {
    for (const number of ['+442079460001', '+447911123456', '+449098790000', '+881612345678', '+33912345678']) {
      expect(parseNumber(number).type).toBe(numberType(number));
    }
  });

  it('stored codes: every type round-trips; a code this version does not know reads as unknown', () => {
    for (const type of NUMBER_TYPES) expect(numberTypeFromCode(numberTypeCode(type))).toBe(type);
    expect(new Set(NUMBER_TYPES.map(numberTypeCode)).size).toBe(NUMBER_TYPES.length);
    // Codes are written to databases: they never change meaning.
    expect(numberTypeCode('mobile')).toBe(2);
    expect(numberTypeCode('premium-rate')).toBe(10);
    expect(numberTypeFromCode(99)).toBe('unknown');
  });
});

describe('the number-type policy', () => {
  it('by default: ordinary lines and VoIP in; premium, shared cost, personal, UAN, pager, toll-free, voicemail, unknown out', () => {
    expect([...DEFAULT_POLICY.allowed].sort()).toEqual(['fixed-line', 'fixed-line-or-mobile', 'mobile', 'voip']);
    for (const type of NUMBER_TYPES) expect(allowsType(DEFAULT_POLICY, type), type).toBe(DEFAULT_ALLOWED_TYPES.includes(type));
  });

  it('the setting: the whole list; "default" stands for the default list; case and spaces do not matter', () => {
    expect([...parseNumberPolicy('mobile').allowed]).toEqual(['mobile']);
    expect([...parseNumberPolicy(' Default , TOLL-FREE ').allowed].sort()).toEqual([...DEFAULT_ALLOWED_TYPES, 'toll-free'].sort());
    expect(parseNumberPolicy(undefined)).toBe(DEFAULT_POLICY);
    expect(allowsType(parseNumberPolicy('mobile'), 'fixed-line')).toBe(false);
  });

  it('refuses an empty list, an unknown type, and the international networks, naming the cause', () => {
    const codeOf = (text: string) => {
      try {
        parseNumberPolicy(text);
      } catch (e) {
        return e instanceof VnumError ? `${e.code}: ${e.message}` : String(e);
      }
      return 'accepted';
    };
    expect(codeOf('')).toMatch(/^VNUM_INVALID_ARGUMENT: empty list of allowed number types/);
    expect(codeOf(' , ')).toMatch(/empty list/);
    expect(codeOf('mobile,premium')).toMatch(/unknown number type "premium".*premium-rate/);
    expect(codeOf('international-network')).toMatch(/cannot be allowed: international networks are always refused/);
    // Even a policy built by hand never lets them through.
    expect(allowsType({ allowed: new Set(NUMBER_TYPES) }, 'international-network')).toBe(false);
    expect(ALLOWABLE_TYPES).not.toContain('international-network');
  });

  it('a refused party: VNUM_NUMBER_NOT_ALLOWED naming the number, its type and the setting', () => {
    let error: unknown;
    try {
      assertPartyAllowed(DEFAULT_POLICY, '+449098790000', 'premium-rate');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(VnumError);
    expect((error as VnumError).code).toBe(ErrorCode.NumberNotAllowed);
    expect(exitCodeOf(error)).toBe(EXIT_USER_ERROR);
    expect((error as VnumError).message).toBe(
      '+449098790000 is a premium-rate number, which the number-type policy refuses (VNUM_ALLOWED_NUMBER_TYPES or --allowed-number-types widens it)',
    );
  });
});
