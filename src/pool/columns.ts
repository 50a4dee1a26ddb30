/**
 * The names providers give the columns of a CSV export and the fields of a
 * JSON one: one list for both formats. A name is compared as a key: lower
 * case, camelCase split, blanks and dashes as underscores (`Phone Number`,
 * `phone-number` and `phoneNumber` are all `phone_number`).
 */
export const NUMBER_NAMES: ReadonlySet<string> = new Set(['number', 'did', 'phone', 'phone_number', 'phonenumber', 'e164', 'msisdn', 'virtual_number']);
export const COUNTRY_NAMES: ReadonlySet<string> = new Set(['country', 'country_code', 'iso_country', 'region']);
export const STATE_NAMES: ReadonlySet<string> = new Set(['state', 'status']);

export function columnKey(name: string): string {
  return name
    .trim()
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .toLowerCase()
    .replace(/[\s-]+/g, '_');
}
