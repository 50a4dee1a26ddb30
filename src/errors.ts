/**
 * The error family: every error vnum raises on purpose is a CodedError with a
 * stable code (README, "Exit codes and errors"), and every code has one
 * category here. A face maps categories, never codes: the CLI to exit codes
 * (src/cli/failure.ts), the HTTP API to statuses.
 */
import { CodedError, type AgiErrorCode } from '../agi/errors.js';

export { CodedError };

/**
 * - `invalid`: the request itself is wrong (input, usage, a number the policy refuses);
 * - `not-found`: it names something that does not exist;
 * - `conflict`: it clashes with what exists (the pool, another session, an exhausted pool);
 * - `setup`: the installation needs the operator (the database file, a setting, an address);
 * - `unavailable`: a passing condition (a lock, a full disk, Asterisk away): try again;
 * - `internal`: a fault of vnum or of a damaged store.
 */
export type ErrorCategory = 'invalid' | 'not-found' | 'conflict' | 'setup' | 'unavailable' | 'internal';

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

/** The AMI client's codes (src/ami/errors.ts). */
export type AmiErrorCode =
  | 'AMI_TIMEOUT'
  | 'AMI_DISCONNECTED'
  | 'AMI_NOT_CONNECTED'
  | 'AMI_ACTION_FAILED'
  | 'AMI_LOGIN_FAILED'
  | 'AMI_BAD_HEADER'
  | 'AMI_SOCKET'
  | 'AMI_STOPPED';

/** Every code of the family, and its category: the one table faces read. */
const CATEGORIES: Readonly<Record<ErrorCode | AmiErrorCode | AgiErrorCode, ErrorCategory>> = {
  VNUM_USAGE: 'invalid',
  VNUM_INVALID_NUMBER: 'invalid',
  VNUM_NO_DEFAULT_COUNTRY: 'invalid',
  VNUM_INVALID_COUNTRY: 'invalid',
  VNUM_NUMBER_NOT_ALLOWED: 'invalid',
  VNUM_INVALID_ARGUMENT: 'invalid',
  VNUM_INVALID_CSV: 'invalid',
  VNUM_NOT_IN_POOL: 'not-found',
  VNUM_SESSION_NOT_FOUND: 'not-found',
  VNUM_EVENT_NOT_PARKED: 'not-found',
  VNUM_POOL_CONFLICT: 'conflict',
  VNUM_NUMBER_UNAVAILABLE: 'conflict',
  VNUM_POOL_EXHAUSTED: 'conflict',
  VNUM_SESSION_CONFLICT: 'conflict',
  VNUM_SESSION_ENDED: 'conflict',
  VNUM_DATABASE_NOT_FOUND: 'setup',
  VNUM_DATABASE_PERMISSIONS: 'setup',
  VNUM_DATABASE_VERSION: 'setup',
  VNUM_CONFIGURATION: 'setup',
  VNUM_LISTEN_FAILED: 'setup',
  VNUM_DATABASE_BUSY: 'unavailable',
  VNUM_DISK_FULL: 'unavailable',
  VNUM_DATABASE: 'internal',
  VNUM_INTERNAL: 'internal',
  // What Asterisk or a peer did, or failed to do.
  AMI_TIMEOUT: 'unavailable',
  AMI_DISCONNECTED: 'unavailable',
  AMI_NOT_CONNECTED: 'unavailable',
  AMI_SOCKET: 'unavailable',
  AMI_STOPPED: 'unavailable',
  AMI_ACTION_FAILED: 'unavailable',
  AMI_LOGIN_FAILED: 'setup',
  AMI_BAD_HEADER: 'invalid',
  AGI_LINE_TOO_LONG: 'invalid',
  AGI_ENV_TOO_LARGE: 'invalid',
  AGI_BAD_ENV_LINE: 'invalid',
  AGI_BAD_REPLY: 'invalid',
  AGI_UNEXPECTED_LINE: 'invalid',
  AGI_BAD_ARGUMENT: 'invalid',
  AGI_TIMEOUT: 'unavailable',
  AGI_CLOSED: 'unavailable',
  AGI_NOT_READY: 'internal',
};

/** An error's category; anything outside the family is `internal`. */
export function errorCategory(error: unknown): ErrorCategory {
  if (!(error instanceof CodedError)) return 'internal';
  return (CATEGORIES as Readonly<Record<string, ErrorCategory>>)[error.code] ?? 'internal';
}

export class VnumError extends CodedError<ErrorCode> {
  /** Facts for a face to format (e.g. the session a refused retry names); never needed to understand the message. */
  readonly details: Readonly<Record<string, unknown>> | undefined;
  constructor(code: ErrorCode, message: string, details?: Readonly<Record<string, unknown>>) {
    super(code, message);
    this.details = details;
  }
}

export function isVnumError(e: unknown, code?: ErrorCode): e is VnumError {
  return e instanceof VnumError && (code === undefined || e.code === code);
}
