import { ErrorCode, VnumError } from '../errors.js';

/** The most rows a list command prints: far beyond any screen, well inside what SQLite and JSON carry. */
export const MAX_LIMIT = 10_000_000;

/** `--limit <n>`: a whole number from 1 to MAX_LIMIT, digits only. */
export function parseLimit(text: string): number {
  const limit = Number(text);
  if (!/^\d{1,9}$/.test(text) || limit < 1 || limit > MAX_LIMIT) {
    throw new VnumError(ErrorCode.InvalidArgument, `invalid limit "${text}": a whole number from 1 to ${MAX_LIMIT}`);
  }
  return limit;
}
