import { ErrorCode, VnumError } from './errors.js';

const UNIT_MS = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1_000, ms: 1 } as const;
type Unit = keyof typeof UNIT_MS;
const DURATION = /^(\d{1,9})(ms|s|m|h|d)$/;

/** No duration anywhere in vnum goes beyond ten years: every sum with a date stays a date. */
export const MAX_DURATION_MS = 3_650 * UNIT_MS.d;

export interface DurationBounds {
  /** Inclusive, default 0. */
  min?: number;
  /** Inclusive, default MAX_DURATION_MS. */
  max?: number;
}

/** `90s`, `30m`, `2h`, `7d` -> milliseconds. One unit, no fractions: unambiguous in scripts. */
export function parseDuration(text: string, what = 'duration', bounds: DurationBounds = {}): number {
  const match = DURATION.exec(text.trim());
  if (!match) {
    throw new VnumError(ErrorCode.InvalidArgument, `invalid ${what} "${text}": use a whole number and a unit, e.g. 90s, 30m, 2h, 7d`);
  }
  const ms = Number(match[1]) * UNIT_MS[match[2] as Unit];
  const min = bounds.min ?? 0;
  const max = Math.min(bounds.max ?? MAX_DURATION_MS, MAX_DURATION_MS);
  if (ms < min || ms > max) {
    throw new VnumError(ErrorCode.InvalidArgument, `invalid ${what} "${text}": ${durationRange(min, max)}`);
  }
  return ms;
}

/** 86400000 -> `1d`, 90000 -> `90s`: the largest unit that says it exactly. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    if (ms % UNIT_MS[unit] === 0) return `${ms / UNIT_MS[unit]}${unit}`;
  }
  return `${ms}ms`;
}

export function durationRange(min: number, max: number): string {
  return min === 0 ? `at most ${formatDuration(max)}` : `from ${formatDuration(min)} to ${formatDuration(max)}`;
}
