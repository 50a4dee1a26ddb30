import type { FastifyError } from 'fastify';
import { codeCategory, ErrorCode, VnumError, type ErrorCategory } from '../errors.js';
import { sessionJson } from '../session/json.js';
import type { Session } from '../session/sessions.js';

/**
 * Errors as RFC 9457 problem details (application/problem+json), carrying
 * the same stable codes as the CLI. The API maps categories (src/errors.ts),
 * never codes, to HTTP statuses, as the CLI maps them to exit codes: 400 the
 * request is malformed (its JSON, a type, an unknown field, a bound); 422
 * well-formed but unusable (a number, a country, a CSV row, a number type the
 * policy refuses); 409 it conflicts with what exists; 501 this installation
 * cannot do it (cluster mode's API has no call log); 503 the store cannot
 * answer now, or the installation needs the operator.
 */
export const STATUS_OF_CATEGORY: Readonly<Record<ErrorCategory, number>> = {
  malformed: 400,
  unauthorized: 401,
  forbidden: 403,
  'not-found': 404,
  conflict: 409,
  'too-large': 413,
  unsupported: 415,
  invalid: 422,
  'rate-limited': 429,
  internal: 500,
  'not-implemented': 501,
  setup: 503,
  unavailable: 503,
};

/** Every code's status, through its category (the OpenAPI document lists the codes of each status from it). */
export const STATUS_OF: Readonly<Record<ErrorCode, number>> = Object.fromEntries(
  Object.values(ErrorCode).map((code) => [code, STATUS_OF_CATEGORY[codeCategory(code)]]),
) as Record<ErrorCode, number>;

export const TITLE_OF: Readonly<Record<ErrorCode, string>> = {
  VNUM_USAGE: 'Bad usage',
  VNUM_INVALID_ARGUMENT: 'Invalid request',
  VNUM_INVALID_JSON: 'Malformed JSON',
  VNUM_UNAUTHORIZED: 'No valid API key',
  VNUM_FORBIDDEN: 'Scope not granted',
  VNUM_NOT_FOUND: 'No such resource',
  VNUM_SESSION_NOT_FOUND: 'No such session',
  VNUM_NOT_IN_POOL: 'Not in the pool',
  VNUM_API_KEY_NOT_FOUND: 'No such API key',
  VNUM_EVENT_NOT_PARKED: 'Webhook event not parked',
  VNUM_SESSION_CONFLICT: 'Session id taken by another request',
  VNUM_SESSION_ENDED: 'Session released or ended',
  VNUM_POOL_CONFLICT: 'Real number and pool number mixed',
  VNUM_NUMBER_UNAVAILABLE: 'Number not available',
  VNUM_POOL_EXHAUSTED: 'Pool exhausted',
  VNUM_BODY_TOO_LARGE: 'Body too large',
  VNUM_UNSUPPORTED_MEDIA_TYPE: 'Unsupported content type',
  VNUM_INVALID_NUMBER: 'Invalid number',
  VNUM_NO_DEFAULT_COUNTRY: 'Number without a country',
  VNUM_INVALID_COUNTRY: 'Unknown country',
  VNUM_NUMBER_NOT_ALLOWED: 'Number type not allowed',
  VNUM_INVALID_CSV: 'Invalid CSV',
  VNUM_INVALID_EXPORT: "Invalid provider's export",
  VNUM_FETCH_FAILED: "Provider's export not fetched",
  VNUM_RETIRE_LIMIT: 'Sync would retire too much',
  VNUM_RATE_LIMITED: 'Too many requests',
  VNUM_CONFIGURATION: 'Configuration error',
  VNUM_LISTEN_FAILED: 'Cannot listen',
  VNUM_INTERNAL: 'Internal error',
  VNUM_DATABASE_NOT_FOUND: 'Database not found',
  VNUM_DATABASE_PERMISSIONS: 'Database permissions',
  VNUM_DATABASE_VERSION: 'Database version',
  VNUM_DATABASE_BUSY: 'Database busy',
  VNUM_DISK_FULL: 'Disk full',
  VNUM_DATABASE: 'Database unusable',
  VNUM_AUTHORITY_UNAVAILABLE: 'Authority unavailable',
  VNUM_UNSUPPORTED_IN_CLUSTER: 'Not available in cluster mode',
  VNUM_REPLICA_READ_ONLY: 'Replica is read-only',
};

export const PROBLEM_TYPE = 'application/problem+json';

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ErrorCode;
  instance?: string;
  errors?: Array<{ pointer: string; detail: string }>;
  differs?: string[];
  session?: ReturnType<typeof sessionJson>;
  decision?: unknown;
  summary?: unknown;
}

/** The problem for one of our errors; `requestId` names the request (its log line and x-request-id). */
export function problemOf(error: VnumError, requestId: string | undefined): Problem {
  const problem: Problem = {
    type: `urn:vnum:problem:${error.code}`,
    title: TITLE_OF[error.code],
    status: STATUS_OF[error.code],
    detail: error.message,
    code: error.code,
    ...(requestId !== undefined ? { instance: `urn:uuid:${requestId}` } : {}),
  };
  const details = error.details ?? {};
  if (Array.isArray(details.errors)) problem.errors = details.errors as Problem['errors'];
  if (Array.isArray(details.differs)) problem.differs = details.differs as string[];
  if (error.code === ErrorCode.SessionEnded && details.session) problem.session = sessionJson(details.session as Session);
  if (details.decision !== undefined) problem.decision = details.decision;
  if (error.code === ErrorCode.RetireLimit && details.summary) problem.summary = details.summary;
  return problem;
}

interface AjvError {
  instancePath: string;
  message?: string;
  keyword: string;
  params: Record<string, unknown>;
}

/** fastify's errors as ours: every FST_ERR_* and every validation failure gets one of our codes. */
export function frameworkError(error: FastifyError & { validation?: AjvError[]; validationContext?: string }, contentType?: string): VnumError {
  if (error.validation) {
    const part = error.validationContext ?? 'body';
    const errors = error.validation.map((e) => ({ pointer: pointerOf(part, e), detail: describe(part, e) }));
    return new VnumError(ErrorCode.InvalidArgument, errors.map((e) => e.detail).join('; '), { errors });
  }
  switch (error.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new VnumError(ErrorCode.InvalidJson, `the body is not valid JSON: ${error.message}`);
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new VnumError(ErrorCode.InvalidJson, 'the body is empty: Content-Type says JSON, so send a JSON object');
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new VnumError(ErrorCode.BodyTooLarge, 'the body is larger than this operation takes (see the OpenAPI document)');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_ERR_CTP_INVALID_CONTENT_TYPE':
      return new VnumError(
        ErrorCode.UnsupportedMediaType,
        `unsupported Content-Type${contentType ? ` "${contentType.slice(0, 100)}"` : ''}: this API takes application/json (text/csv for POST /v1/pool/import)`,
      );
    case 'FST_ERR_NOT_FOUND':
      return new VnumError(ErrorCode.NotFound, 'no such resource');
    case 'FST_ERR_BAD_URL':
      return new VnumError(ErrorCode.InvalidArgument, 'the URL is not valid (a malformed %-escape?)');
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return new VnumError(ErrorCode.InvalidArgument, 'a path segment is longer than 100 characters');
  }
  // The JSON parser's own errors (a forbidden __proto__ or constructor key included).
  if (error instanceof SyntaxError) {
    return new VnumError(ErrorCode.InvalidJson, `the body is not valid JSON: ${error.message}`);
  }
  const status = error.statusCode ?? 500;
  if (status === 404 || status === 405) return new VnumError(ErrorCode.NotFound, 'no such resource');
  if (status === 413) return new VnumError(ErrorCode.BodyTooLarge, 'the body is larger than this operation takes');
  if (status === 415) return new VnumError(ErrorCode.UnsupportedMediaType, `unsupported Content-Type: ${error.message}`);
  if (status === 429) return new VnumError(ErrorCode.RateLimited, error.message);
  if (status >= 400 && status < 500) return new VnumError(ErrorCode.InvalidArgument, `invalid request: ${error.message}`);
  // Its text stays in the log (with the request's id), not in the answer.
  return new VnumError(ErrorCode.Internal, `internal error${error.code ? ` (${error.code})` : ''}: see the API's log for this request`);
}

/** RFC 6901 pointer to the field, under the request part: `/body/parties/0/number`, `/query/limit`. */
function pointerOf(part: string, e: AjvError): string {
  const named = e.keyword === 'additionalProperties' ? e.params.additionalProperty : e.keyword === 'required' ? e.params.missingProperty : undefined;
  const extra = named === undefined ? '' : `/${String(named).replace(/~/g, '~0').replace(/\//g, '~1')}`;
  const name = part === 'querystring' ? 'query' : part;
  return `/${name}${e.instancePath}${extra}`;
}

function describe(part: string, e: AjvError): string {
  const where = pointerOf(part, e);
  if (e.keyword === 'additionalProperties') return `${where}: unknown ${part === 'body' ? 'field' : 'parameter'} (refused, not ignored)`;
  if (e.keyword === 'required') return `${where}: required`;
  return `${where}: ${e.message ?? e.keyword}`;
}
