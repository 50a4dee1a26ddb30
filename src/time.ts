import { parseDuration } from './duration.js';
import { ErrorCode, VnumError } from './errors.js';

/**
 * Instants as vnum stores them: integer milliseconds since the epoch (UTC).
 * JavaScript's Date holds ±8.64e15 ms (years -271821 to 275760); what vnum
 * writes stays far inside that (durations are bounded, src/duration.ts), but
 * a row written by an older vnum, or by hand, may not, and a read must still
 * show it rather than fail.
 */
export const MAX_DATE_MS = 8.64e15;

export function isRepresentableTime(ms: number): boolean {
  return Number.isFinite(ms) && Math.abs(ms) <= MAX_DATE_MS;
}

const DAY_MS = 86_400_000;

/**
 * ISO 8601 in UTC, as Date#toISOString writes it, for any finite number of
 * milliseconds: beyond Date's range the year is written expanded (`+275761`,
 * `+2738155`), ISO 8601's form for years past 9999, from the proleptic
 * Gregorian calendar (days to civil date: H. Hinnant's algorithm). Beyond
 * a 64-bit integer (a REAL stored by hand), or not a number: `invalid time (…)`.
 */
export function isoDateTime(ms: number): string {
  if (isRepresentableTime(ms)) return new Date(ms).toISOString();
  // Past what SQLite's 64-bit INTEGER holds, the arithmetic below loses whole days: no date to show.
  if (!(Math.abs(ms) < 1e19)) return `invalid time (${ms})`;
  const whole = Math.floor(ms);
  const days = Math.floor(whole / DAY_MS);
  const inDay = whole - days * DAY_MS;
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1_460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  const pad = (n: number, width: number) => String(n).padStart(width, '0');
  const yearText = year >= 0 && year <= 9999 ? pad(year, 4) : `${year < 0 ? '-' : '+'}${pad(Math.abs(year), 6)}`;
  const time = `${pad(Math.floor(inDay / 3_600_000), 2)}:${pad(Math.floor(inDay / 60_000) % 60, 2)}:${pad(Math.floor(inDay / 1_000) % 60, 2)}.${pad(inDay % 1_000, 3)}`;
  return `${yearText}-${pad(month, 2)}-${pad(day, 2)}T${time}Z`;
}

/**
 * `--since` (the API's `since`): an ISO 8601 date or time (UTC unless it says otherwise), or a
 * duration back from now (`2h`), from 1970-01-01 on: before that no call
 * was ever logged, and every answer is a date vnum can print.
 */
export function parseSince(text: string, now: number, name = '--since'): number {
  const trimmed = text.trim();
  if (/^\d{1,9}(ms|s|m|h|d)$/.test(trimmed)) {
    return now - parseDuration(trimmed, name, { max: Math.max(0, now) });
  }
  const date = /^(\d{4})-(\d\d)-(\d\d)(?:[T ](\d\d):(\d\d)(?::(\d\d)(?:\.\d{1,3})?)?(Z|[+-]\d\d:?\d\d)?)?$/.exec(trimmed);
  if (date) {
    const iso = trimmed.replace(' ', 'T');
    const withZone = /T/.test(iso) && date[7] === undefined ? `${iso}Z` : iso;
    const at = Date.parse(withZone);
    // Date.parse rolls 2026-02-30 over into March and 24:00 into the next day: the fields must name a real time.
    const [year, month, day, hour, minute, second] = date.slice(1, 7).map((f) => Number(f ?? 0)) as [number, number, number, number, number, number];
    const calendar = new Date(Date.UTC(year, month - 1, day));
    const real = calendar.getUTCMonth() === month - 1 && calendar.getUTCDate() === day && hour <= 23 && minute <= 59 && second <= 59;
    if (Number.isFinite(at) && real && at >= 0) return at;
  }
  throw new VnumError(
    ErrorCode.InvalidArgument,
    `invalid ${name} "${text}": an ISO 8601 time from 1970 on (2026-11-25T09:00:00Z, 2026-11-25) or a duration back from now (90m, 2h, 7d)`,
  );
}

/** Milliseconds since the epoch -> ISO 8601 (UTC), or null: the JSON shapes' times; any stored value prints (see isoDateTime). */
export function isoTime(ms: number | null): string | null {
  return ms === null ? null : isoDateTime(ms);
}
