import { Option } from 'commander';
import { ErrorCode, VnumError } from '../errors.js';
import { DEFAULT_PIN_GUESS_BOUND, PIN_GUESS_BOUND_LIMITS } from '../session/pin.js';

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

/** `1e-6`, `0.000001`: a probability within PIN_GUESS_BOUND_LIMITS; refused with `code`. */
function pinGuessBound(text: string, code: ErrorCode): number {
  const value = /^[0-9.eE+-]{1,24}$/.test(text) ? Number(text) : NaN;
  if (!(value >= PIN_GUESS_BOUND_LIMITS.min && value <= PIN_GUESS_BOUND_LIMITS.max)) {
    throw new VnumError(
      code,
      `invalid PIN guess bound "${text.slice(0, 30)}": a probability from ${PIN_GUESS_BOUND_LIMITS.min} to ${PIN_GUESS_BOUND_LIMITS.max}, e.g. 1e-6`,
    );
  }
  return value;
}

/**
 * `--pin-guess-bound <p>` (VNUM_PIN_GUESS_BOUND): the operator's bound that
 * sizes the PINs a create issues, for every face that creates sessions. A
 * bad one is an invalid argument of a command (`session create`), and a
 * configuration error of a service (`vnum api`), like its other settings.
 */
export function pinGuessBoundOption(code: typeof ErrorCode.InvalidArgument | typeof ErrorCode.Configuration = ErrorCode.InvalidArgument): Option {
  return new Option('--pin-guess-bound <p>', `the most one random PIN guess may succeed, ${PIN_GUESS_BOUND_LIMITS.min} to ${PIN_GUESS_BOUND_LIMITS.max}; sizes the PINs`)
    .default(DEFAULT_PIN_GUESS_BOUND)
    .env('VNUM_PIN_GUESS_BOUND')
    .argParser((text) => pinGuessBound(text, code));
}
