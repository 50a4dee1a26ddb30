/**
 * Errors with stable codes. A user error (bad input, a conflict, an empty pool)
 * exits 1 with its message; anything else is internal and exits 2.
 */
export const ErrorCode = {
  InvalidNumber: 'VNUM_INVALID_NUMBER',
  NoDefaultCountry: 'VNUM_NO_DEFAULT_COUNTRY',
  InvalidArgument: 'VNUM_INVALID_ARGUMENT',
  InvalidCsv: 'VNUM_INVALID_CSV',
  NotInPool: 'VNUM_NOT_IN_POOL',
  PoolConflict: 'VNUM_POOL_CONFLICT',
  PoolExhausted: 'VNUM_POOL_EXHAUSTED',
  SessionNotFound: 'VNUM_SESSION_NOT_FOUND',
  SessionConflict: 'VNUM_SESSION_CONFLICT',
  Database: 'VNUM_DATABASE',
  /** A setting of `vnum serve` or `vnum health` (flag or environment) that cannot work. */
  Configuration: 'VNUM_CONFIGURATION',
  /** `vnum serve` could not bind its address (taken, not local, not permitted). */
  ListenFailed: 'VNUM_LISTEN_FAILED',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const INTERNAL: ReadonlySet<ErrorCode> = new Set([ErrorCode.Database]);

export class VnumError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = 'VnumError';
    this.code = code;
  }
  get isUserError(): boolean {
    return !INTERNAL.has(this.code);
  }
}

export function isVnumError(e: unknown, code?: ErrorCode): e is VnumError {
  return e instanceof VnumError && (code === undefined || e.code === code);
}
