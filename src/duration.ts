import { ErrorCode, VnumError } from './errors.js';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION = /^(\d{1,9})(ms|s|m|h|d)$/;

/** `90s`, `30m`, `2h`, `7d` -> milliseconds. One unit, no fractions: unambiguous in scripts. */
export function parseDuration(text: string, what = 'duration'): number {
  const match = DURATION.exec(text.trim());
  if (!match) {
    throw new VnumError(ErrorCode.InvalidArgument, `invalid ${what} "${text}": use a whole number and a unit, e.g. 90s, 30m, 2h, 7d`);
  }
  return Number(match[1]) * UNIT_MS[match[2]!]!;
}
