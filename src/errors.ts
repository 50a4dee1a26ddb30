/**
 * The error family: every error vnum raises on purpose is a CodedError with a
 * stable code (README, "Exit codes and errors"), and every code has one
 * category here. A face maps categories, never codes: the CLI to exit codes
 * (src/cli/failure.ts), the HTTP API to statuses.
 */
import { CodedError, type AgiErrorCode } from '../agi/errors.js';

export { CodedError };

/**
 * - `malformed`: the request cannot be read as one (usage, JSON, a type, an unknown field, a bound);
 * - `invalid`: it reads, but a value in it is unusable (a number, a country, a CSV row, a number the policy refuses);
 * - `unauthorized`: it carries no valid API key; `forbidden`: the key does not grant it;
 * - `too-large`: its body is over the limit; `unsupported`: its body is of a type not taken;
 * - `rate-limited`: too many requests from its sender: try again later;
 * - `not-found`: it names something that does not exist;
 * - `conflict`: it clashes with what exists (the pool, another session, an exhausted pool);
 * - `setup`: the installation needs the operator (the database file, a setting, an address);
 * - `unavailable`: a passing condition (a lock, a full disk, Asterisk away): try again;
 * - `not-implemented`: this installation cannot do it (cluster mode's API has no call log): asking again will not help;
 * - `internal`: a fault of vnum or of a damaged store.
 */
export type ErrorCategory =
  | 'malformed'
  | 'invalid'
  | 'unauthorized'
  | 'forbidden'
  | 'too-large'
  | 'unsupported'
  | 'rate-limited'
  | 'not-found'
  | 'conflict'
  | 'setup'
  | 'unavailable'
  | 'not-implemented'
  | 'internal';

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
  /** `pool sync`: a provider's export that cannot be used (too large, not CSV or JSON, malformed, no numbers); the place is named. */
  InvalidExport: 'VNUM_INVALID_EXPORT',
  /** `pool sync`: the export could not be fetched (DNS, connection, TLS, HTTP status, redirect, timeout): `unavailable`, exit 2. */
  FetchFailed: 'VNUM_FETCH_FAILED',
  /** `pool sync`: the export would retire more of the available numbers than --max-retire allows (a truncated or wrong export?). */
  RetireLimit: 'VNUM_RETIRE_LIMIT',
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
  /** Cluster mode: the authority (PostgreSQL) cannot be reached or refused the connection. */
  AuthorityUnavailable: 'VNUM_AUTHORITY_UNAVAILABLE',
  /** Cluster mode: what lives on each node, not on the authority (the call log, hang-up requests, webhooks), asked of the API. */
  UnsupportedInCluster: 'VNUM_UNSUPPORTED_IN_CLUSTER',
  /** Cluster mode: a command would write a node's replica file, which only `vnum replica` writes (src/replica/read-only.ts). */
  ReplicaReadOnly: 'VNUM_REPLICA_READ_ONLY',
  /** `vnum apikey revoke` names no key. */
  ApiKeyNotFound: 'VNUM_API_KEY_NOT_FOUND',
  // The HTTP API's own (src/api/problem.ts maps every category to a status).
  /** No API key, a malformed one, an unknown one or a revoked one. */
  Unauthorized: 'VNUM_UNAUTHORIZED',
  /** The key's scopes do not cover the request. */
  Forbidden: 'VNUM_FORBIDDEN',
  RateLimited: 'VNUM_RATE_LIMITED',
  InvalidJson: 'VNUM_INVALID_JSON',
  BodyTooLarge: 'VNUM_BODY_TOO_LARGE',
  UnsupportedMediaType: 'VNUM_UNSUPPORTED_MEDIA_TYPE',
  /** No such resource (an unknown path or method). */
  NotFound: 'VNUM_NOT_FOUND',
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
  VNUM_USAGE: 'malformed',
  VNUM_INVALID_ARGUMENT: 'malformed',
  VNUM_INVALID_JSON: 'malformed',
  VNUM_INVALID_NUMBER: 'invalid',
  VNUM_NO_DEFAULT_COUNTRY: 'invalid',
  VNUM_INVALID_COUNTRY: 'invalid',
  VNUM_NUMBER_NOT_ALLOWED: 'invalid',
  VNUM_INVALID_CSV: 'invalid',
  VNUM_UNAUTHORIZED: 'unauthorized',
  VNUM_FORBIDDEN: 'forbidden',
  VNUM_BODY_TOO_LARGE: 'too-large',
  VNUM_UNSUPPORTED_MEDIA_TYPE: 'unsupported',
  VNUM_RATE_LIMITED: 'rate-limited',
  VNUM_INVALID_EXPORT: 'invalid',
  VNUM_NOT_IN_POOL: 'not-found',
  VNUM_SESSION_NOT_FOUND: 'not-found',
  VNUM_API_KEY_NOT_FOUND: 'not-found',
  VNUM_NOT_FOUND: 'not-found',
  VNUM_EVENT_NOT_PARKED: 'not-found',
  VNUM_POOL_CONFLICT: 'conflict',
  VNUM_NUMBER_UNAVAILABLE: 'conflict',
  VNUM_POOL_EXHAUSTED: 'conflict',
  VNUM_SESSION_CONFLICT: 'conflict',
  VNUM_SESSION_ENDED: 'conflict',
  // More to retire than --max-retire allows: the export clashes with the pool as it is.
  VNUM_RETIRE_LIMIT: 'conflict',
  // A write aimed at a node's replica: it clashes with what the file is (the authority's copy); the same write on the authority may succeed.
  VNUM_REPLICA_READ_ONLY: 'conflict',
  VNUM_DATABASE_NOT_FOUND: 'setup',
  VNUM_DATABASE_PERMISSIONS: 'setup',
  VNUM_DATABASE_VERSION: 'setup',
  VNUM_CONFIGURATION: 'setup',
  VNUM_LISTEN_FAILED: 'setup',
  VNUM_DATABASE_BUSY: 'unavailable',
  VNUM_DISK_FULL: 'unavailable',
  VNUM_AUTHORITY_UNAVAILABLE: 'unavailable',
  VNUM_UNSUPPORTED_IN_CLUSTER: 'not-implemented',
  // The provider's server away, slow, refusing or answering wrongly: the next sync may do.
  VNUM_FETCH_FAILED: 'unavailable',
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
  return codeCategory(error.code);
}

/** A code's category (`internal` for one outside the family). */
export function codeCategory(code: string): ErrorCategory {
  return (CATEGORIES as Readonly<Record<string, ErrorCategory>>)[code] ?? 'internal';
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
