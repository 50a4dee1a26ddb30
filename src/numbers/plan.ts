import { getCountries, getCountryCallingCode, isSupportedCountry, type CountryCode } from 'libphonenumber-js/max';

/**
 * Country calling codes: which national numbering plan a number belongs to.
 *
 * A calling code is one numbering plan, even when several regions share it:
 * +44 is GB, GG, JE and IM; +1 the whole NANP (US, CA, the Caribbean); +7
 * RU and KZ; +39 IT and VA; +47 NO and SJ; +61 AU, CX and CC; +262, +590,
 * +599, +212, +358 … libphonenumber names a region for each number (a
 * +447911 mobile is "GG", a +1416 number "CA"), but numbers that share a
 * calling code share one dialling plan, so vnum treats them as local to each
 * other: in allocation ("numbers in the dialling party's country first") and
 * when a pool number's country is given.
 */

/**
 * The international networks (ITU-T E.164 "global services"): no country,
 * and the ranges behind international revenue-share fraud. +800 and +808
 * international freephone and shared cost, +870 Inmarsat, +878 universal
 * personal telecommunications, +881 global mobile satellite, +882 and +883
 * international networks, +888 OCHA, +979 international premium rate.
 */
export const INTERNATIONAL_NETWORK_CODES: readonly string[] = ['800', '808', '870', '878', '881', '882', '883', '888', '979'];

/** Every calling code libphonenumber knows, plus the international networks. Prefix-free, as E.164 makes them. */
const CALLING_CODES: ReadonlySet<string> = new Set([
  ...getCountries().map((country) => getCountryCallingCode(country)),
  ...INTERNATIONAL_NETWORK_CODES,
]);

/**
 * The calling code of an E.164 number (`+447911123456` -> `44`), or undefined
 * when its first digits are no calling code. A few Set lookups, no parse:
 * cheap enough for every allocation.
 */
export function callingCodeOf(e164: string): string | undefined {
  for (let length = 1; length <= 3; length++) {
    const code = e164.slice(1, 1 + length);
    if (CALLING_CODES.has(code)) return code;
  }
  return undefined;
}

/** Whether libphonenumber knows this ISO 3166 alpha-2 code as a region. */
export function isKnownCountry(country: string): boolean {
  return isSupportedCountry(country);
}

/** The calling code of a region libphonenumber knows (`GB` -> `44`). */
export function countryCallingCode(country: string): string {
  return getCountryCallingCode(country as CountryCode);
}

export function isInternationalNetwork(e164: string): boolean {
  const code = callingCodeOf(e164);
  return code !== undefined && INTERNATIONAL_NETWORK_CODES.includes(code);
}
