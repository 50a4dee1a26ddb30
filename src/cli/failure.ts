import { CommanderError } from 'commander';
import { CodedError, errorCategory, ErrorCode, VnumError, type ErrorCategory } from '../errors.js';
import { printError } from './output.js';

export const EXIT_OK = 0;
/** The user's to fix: input, a conflict, an exhausted pool, an installation the operator must fix. */
export const EXIT_USER_ERROR = 1;
/** A fault of the system or of vnum: retry later, or report it. */
export const EXIT_INTERNAL_ERROR = 2;

/** The one mapping from the error family to exit codes (README, "Exit codes and errors"). */
const EXIT_CODES: Readonly<Record<ErrorCategory, number>> = {
  malformed: EXIT_USER_ERROR,
  invalid: EXIT_USER_ERROR,
  // The HTTP API's; the CLI never raises them.
  unauthorized: EXIT_USER_ERROR,
  forbidden: EXIT_USER_ERROR,
  'too-large': EXIT_USER_ERROR,
  unsupported: EXIT_USER_ERROR,
  'rate-limited': EXIT_INTERNAL_ERROR,
  'not-found': EXIT_USER_ERROR,
  conflict: EXIT_USER_ERROR,
  setup: EXIT_USER_ERROR,
  unavailable: EXIT_INTERNAL_ERROR,
  // Asking again will not help: the operator's to route elsewhere (each node's own CLI).
  'not-implemented': EXIT_USER_ERROR,
  internal: EXIT_INTERNAL_ERROR,
};

export function exitCodeOf(error: unknown): number {
  return EXIT_CODES[errorCategory(error)];
}

/** Print the error as its one line and say how the process exits: anything outside the family is VNUM_INTERNAL. */
export function fail(error: unknown): number {
  if (error instanceof CommanderError && error.exitCode === 0) return EXIT_OK;
  if (error instanceof CodedError) {
    printError(error.code, error.message);
    return exitCodeOf(error);
  }
  printError(ErrorCode.Internal, `internal error: ${error instanceof Error ? error.message : String(error)}`);
  return EXIT_INTERNAL_ERROR;
}

/** A failure to bind (taken, not a local address, not permitted, no such host) as ours; anything else as it is. */
export function listenError(e: unknown, where: string): unknown {
  const error = e as NodeJS.ErrnoException;
  if (error.syscall === 'listen' || error.syscall === 'bind' || error.syscall === 'getaddrinfo') {
    return new VnumError(ErrorCode.ListenFailed, `cannot listen on ${where}: ${error.message}`);
  }
  return e;
}
