import { parsePhoneNumberWithError, ParseError, type CountryCode, type PhoneNumber } from 'libphonenumber-js/max';
import { ErrorCode, VnumError } from '../errors.js';
import { isKnownCountry } from './plan.js';
import { typeOfParsed, type NumberType } from './type.js';

/**
 * How many digits an E.164 number has: at most 15 (ITU-T E.164), at least 6
 * (the shortest numbers libphonenumber's metadata calls valid). The one rule,
 * held here, by the router's fast path and by dialplan/vnum.conf.
 */
export const E164_DIGITS = Object.freeze({ min: 6, max: 15 });

/** `+`, a first digit that is not 0, then the rest: E.164's shape within E164_DIGITS. */
export const E164_SHAPE = new RegExp(`^\\+[1-9][0-9]{${E164_DIGITS.min - 1},${E164_DIGITS.max - 1}}$`);

/** An E.164 number (E164_SHAPE), validated against libphonenumber's full metadata. */
export type E164 = string & { readonly __e164: unique symbol };

export interface ParsedNumber {
  e164: E164;
  /** ISO 3166 alpha-2, when the number belongs to one region. */
  country: string | undefined;
  /** Its country calling code (`44`): numbers sharing one share a numbering plan (see plan.ts). */
  callingCode: string;
  /** What kind of line it is (see type.ts and the number-type policy). */
  type: NumberType;
}

// Digits, an optional leading '+', and the separators people type. Anything
// else (letters, '&', quotes, commas, 'tel:') is refused before parsing:
// libphonenumber would otherwise pick a number out of surrounding text.
const NUMBER_SHAPE = /^\+?[0-9][0-9 ().-]{0,30}$/;
const COUNTRY_SHAPE = /^[A-Z]{2}$/;

const REASONS: Record<string, string> = {
  INVALID_COUNTRY: 'its country could not be determined',
  NOT_A_NUMBER: 'it is not a phone number',
  TOO_SHORT: 'it is too short',
  TOO_LONG: 'it is too long',
  INVALID_LENGTH: 'its length is not valid',
};

/** A country as the operator names it (`--country`, VNUM_DEFAULT_COUNTRY, a CSV column): a region libphonenumber knows. */
export function parseCountry(code: string | undefined): string | undefined {
  if (code === undefined || code === '') return undefined;
  const upper = code.trim().toUpperCase();
  if (!COUNTRY_SHAPE.test(upper) || !isKnownCountry(upper)) {
    throw new VnumError(
      ErrorCode.InvalidCountry,
      `unknown country "${code.slice(0, 40)}": use an ISO 3166 alpha-2 code such as GB or IN`,
    );
  }
  return upper;
}

/**
 * Normalise a number as entered or as a carrier delivers it: `+E.164`,
 * national with a trunk prefix (`07911 123456`), or digits without `+`
 * (`447911123456`). Numbers without `+` need a default country.
 * Throws VnumError(InvalidNumber | NoDefaultCountry) naming the cause.
 * Also says what kind of line it is: for a party or a pool number, once.
 */
export function parseNumber(input: string, defaultCountry?: string): ParsedNumber {
  const parsed = parseValid(input, defaultCountry);
  return { e164: parsed.number as E164, country: parsed.country, callingCode: parsed.countryCallingCode, type: typeOfParsed(parsed) };
}

/** The E.164 form only: what the router needs, without typing the line (another pass over the metadata). */
export function normaliseNumber(input: string, defaultCountry?: string): E164 {
  return parseValid(input, defaultCountry).number as E164;
}

function parseValid(input: string, defaultCountry: string | undefined): PhoneNumber {
  const text = input.trim();
  if (!NUMBER_SHAPE.test(text)) {
    throw invalid(input, 'only digits, a leading +, spaces, dots, dashes and brackets are allowed');
  }
  const international = text.startsWith('+');
  if (!international && defaultCountry === undefined) {
    throw new VnumError(
      ErrorCode.NoDefaultCountry,
      `number "${input}" has no country code: write it as +E.164, or set a default country with --country XX or VNUM_DEFAULT_COUNTRY=XX`,
    );
  }
  const attempts = international ? [text] : [text, `+${text.replace(/\D/g, '')}`];
  let lastReason = 'it is not a valid number';
  for (const attempt of attempts) {
    try {
      const parsed = parsePhoneNumberWithError(attempt, {
        defaultCountry: defaultCountry as CountryCode | undefined,
        extract: false,
      });
      if (parsed.isValid()) {
        // libphonenumber calls a few longer numbers valid (German ones of 16 and 17 digits): no trunk carries them.
        if (!E164_SHAPE.test(parsed.number)) throw invalid(input, `E.164 numbers have ${E164_DIGITS.min} to ${E164_DIGITS.max} digits`);
        return parsed;
      }
      lastReason = parsed.isPossible()
        ? 'it is not a valid number in its numbering plan'
        : 'its length is not valid for its country';
    } catch (e) {
      if (!(e instanceof ParseError)) throw e;
      lastReason = REASONS[e.message] ?? e.message;
    }
  }
  throw invalid(input, lastReason);
}

function invalid(input: string, reason: string): VnumError {
  const shown = input.length > 40 ? `${input.slice(0, 40)}…` : input;
  return new VnumError(ErrorCode.InvalidNumber, `invalid number "${shown}": ${reason}`);
}
