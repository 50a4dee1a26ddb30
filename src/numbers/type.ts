import type { PhoneNumber } from 'libphonenumber-js/max';
import { parsePhoneNumberWithError } from 'libphonenumber-js/max';
import { isInternationalNetwork } from './plan.js';

/**
 * What kind of line a number is, from libphonenumber's full metadata, plus
 * `international-network` for the ranges of no country (+800, +881, +979 …,
 * see INTERNATIONAL_NETWORK_CODES) whatever libphonenumber calls them, and
 * `unknown` for a number it cannot type (not valid in the installed metadata).
 */
export const NUMBER_TYPES = [
  'fixed-line',
  'mobile',
  'fixed-line-or-mobile',
  'voip',
  'personal',
  'pager',
  'uan',
  'shared-cost',
  'toll-free',
  'premium-rate',
  'voicemail',
  'international-network',
  'unknown',
] as const;
export type NumberType = (typeof NUMBER_TYPES)[number];

const FROM_LIBPHONENUMBER: Record<string, NumberType> = {
  FIXED_LINE: 'fixed-line',
  MOBILE: 'mobile',
  FIXED_LINE_OR_MOBILE: 'fixed-line-or-mobile',
  VOIP: 'voip',
  PERSONAL_NUMBER: 'personal',
  PAGER: 'pager',
  UAN: 'uan',
  SHARED_COST: 'shared-cost',
  TOLL_FREE: 'toll-free',
  PREMIUM_RATE: 'premium-rate',
  VOICEMAIL: 'voicemail',
};

/** The type of a parsed number. */
export function typeOfParsed(parsed: PhoneNumber): NumberType {
  if (isInternationalNetwork(parsed.number)) return 'international-network';
  const type = parsed.getType();
  return (type !== undefined && FROM_LIBPHONENUMBER[type]) || 'unknown';
}

/** The type of an E.164 number, parsed afresh (10-40 µs). */
export function numberType(e164: string): NumberType {
  if (isInternationalNetwork(e164)) return 'international-network';
  try {
    return typeOfParsed(parsePhoneNumberWithError(e164));
  } catch {
    return 'unknown';
  }
}

/**
 * Types as the store keeps them (bridge.target_type): one small integer each.
 * Append-only, like the migrations: a code once written never changes meaning.
 */
const STORED: readonly NumberType[] = [
  'unknown', // 0
  'fixed-line', // 1
  'mobile', // 2
  'fixed-line-or-mobile', // 3
  'voip', // 4
  'personal', // 5
  'pager', // 6
  'uan', // 7
  'shared-cost', // 8
  'toll-free', // 9
  'premium-rate', // 10
  'voicemail', // 11
  'international-network', // 12
];
const CODES: ReadonlyMap<NumberType, number> = new Map(STORED.map((type, code) => [type, code]));

export function numberTypeCode(type: NumberType): number {
  return CODES.get(type)!;
}

/** A stored code back to its type; a code this version does not know is `unknown` (refused by every policy). */
export function numberTypeFromCode(code: number): NumberType {
  return STORED[code] ?? 'unknown';
}
