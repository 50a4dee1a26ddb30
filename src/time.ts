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

/** Milliseconds since the epoch -> ISO 8601 (UTC), or null: the JSON shapes' times. */
export function isoTime(ms: number | null): string | null {
  return ms === null ? null : isoDateTime(ms);
}
