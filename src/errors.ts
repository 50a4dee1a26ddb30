/**
 * Errors with stable codes (README, "Exit codes and errors"). A user error
 * (bad input, a conflict, an empty pool, a database the operator must fix)
 * exits 1; a fault of the system or of vnum itself exits 2. The HTTP API maps
 * the same codes to statuses.
 */
export const ErrorCode = {
  Usage: 'VNUM_USAGE',
  InvalidNumber: 'VNUM_INVALID_NUMBER',
  NoDefaultCountry: 'VNUM_NO_DEFAULT_COUNTRY',
  InvalidCountry: 'VNUM_INVALID_COUNTRY',
  NumberNotAllowed: 'VNUM_NUMBER_NOT_ALLOWED',
  InvalidArgument: 'VNUM_INVALID_ARGUMENT',
  InvalidCsv: 'VNUM_INVALID_CSV',
  NotInPool: 'VNUM_NOT_IN_POOL',
  PoolConflict: 'VNUM_POOL_CONFLICT',
  NumberUnavailable: 'VNUM_NUMBER_UNAVAILABLE',
  PoolExhausted: 'VNUM_POOL_EXHAUSTED',
  SessionNotFound: 'VNUM_SESSION_NOT_FOUND',
  SessionConflict: 'VNUM_SESSION_CONFLICT',
  SessionEnded: 'VNUM_SESSION_ENDED',
  /** `vnum webhooks retry|discard` named an event that is not parked (unknown, delivered, or still being tried). */
  EventNotParked: 'VNUM_EVENT_NOT_PARKED',
  DatabaseNotFound: 'VNUM_DATABASE_NOT_FOUND',
  DatabasePermissions: 'VNUM_DATABASE_PERMISSIONS',
  DatabaseVersion: 'VNUM_DATABASE_VERSION',
  DatabaseBusy: 'VNUM_DATABASE_BUSY',
  DiskFull: 'VNUM_DISK_FULL',
  Database: 'VNUM_DATABASE',
  /** A setting of `vnum serve`, `vnum health` or `vnum webhooks deliver` (flag or environment) that cannot work. */
  Configuration: 'VNUM_CONFIGURATION',
  /** `vnum serve` could not bind its address (taken, not local, not permitted). */
  ListenFailed: 'VNUM_LISTEN_FAILED',
  Internal: 'VNUM_INTERNAL',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const INTERNAL: ReadonlySet<ErrorCode> = new Set([ErrorCode.DatabaseBusy, ErrorCode.DiskFull, ErrorCode.Database, ErrorCode.Internal]);

export class VnumError extends Error {
  readonly code: ErrorCode;
  /** Facts for a face to format (e.g. the session a refused retry names); never needed to understand the message. */
  readonly details: Readonly<Record<string, unknown>> | undefined;
  constructor(code: ErrorCode, message: string, details?: Readonly<Record<string, unknown>>) {
    super(message);
    this.name = 'VnumError';
    this.code = code;
    this.details = details;
  }
  get isUserError(): boolean {
    return !INTERNAL.has(this.code);
  }
}

export function isVnumError(e: unknown, code?: ErrorCode): e is VnumError {
  return e instanceof VnumError && (code === undefined || e.code === code);
}
