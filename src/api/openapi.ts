/**
 * The HTTP API's OpenAPI 3.1 document: what is served at /v1/openapi.json,
 * committed as docs/openapi.json (test/api/openapi.test.ts keeps the two
 * equal: `npm run openapi` writes the file), and where the API's request
 * schemas come from (./schemas.ts): a request the document does not allow
 * is refused. Every response in the API tests is checked against it.
 *
 * Field names are the CLI's --json ones (src/json.ts). Written as code so
 * that the bounds, states and error codes are the ones the code uses.
 */
import { createRequire } from 'node:module';
import { SCOPES } from '../access/api-keys.js';
import { CALL_STATES } from '../calls/store.js';
import { ErrorCode } from '../errors.js';
import { OUT_OF_SESSION_MODES, PIN_MODES } from '../pool/handling.js';
import { POOL_STATES } from '../pool/pool.js';
import { DEFAULT_MAX_RETIRE_PERCENT } from '../pool/sync.js';
import { ROUTE_STATUSES } from '../routing/decide.js';
import { CALL_LIMITS } from '../session/call-settings.js';
import { IDLE_LIMITS, MAX_TTL_MS } from '../session/sessions.js';
import { SESSION_STATES } from '../session/state.js';
import { formatDuration } from '../duration.js';
import { API_LIMITS } from './limits.js';
import { STATUS_OF } from './problem.js';

/** vnum's version, from its package.json: two folders up from src/api, three from dist/src/api. */
function packageVersion(): string {
  const require = createRequire(import.meta.url);
  for (const candidate of ['../../package.json', '../../../package.json']) {
    try {
      const pkg = require(candidate) as { name?: string; version?: string };
      if (pkg.name === 'vnum' && pkg.version) return pkg.version;
    } catch {
      // not there: the other layout
    }
  }
  throw new Error("cannot find vnum's package.json");
}
const version = packageVersion();

type Schema = Record<string, unknown>;

const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });
const nullable = (schema: Schema): Schema => ({ ...schema, type: [schema.type as string, 'null'] });
const time: Schema = { type: 'string', format: 'date-time', description: 'ISO 8601, UTC' };
const object = (properties: Record<string, Schema>, required = Object.keys(properties)): Schema => ({
  type: 'object',
  properties,
  required,
  additionalProperties: false,
});

const SESSION_ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$';
// No minLength: an empty number is the number parser's to refuse (VNUM_INVALID_NUMBER), as the CLI does.
const numberText = (description: string): Schema => ({ type: 'string', maxLength: 64, description, examples: ['+447911123456'] });
const e164: Schema = { type: 'string', pattern: '^\\+[1-9][0-9]{6,14}$', description: 'E.164', examples: ['+442079460001'] };
const duration = (description: string, example: string): Schema => ({
  type: 'string',
  minLength: 1,
  maxLength: 32,
  description: `${description} A whole number and a unit: ms, s, m, h, d (as the CLI takes it).`,
  examples: [example],
});
const country: Schema = {
  type: 'string',
  minLength: 1,
  maxLength: 8,
  description: 'ISO 3166 alpha-2: the country of numbers written without + (the API\'s VNUM_DEFAULT_COUNTRY when absent).',
  examples: ['GB'],
};
const cursor: Schema = {
  type: 'string',
  minLength: 1,
  maxLength: API_LIMITS.cursorChars,
  pattern: '^[A-Za-z0-9_-]+$',
  description: 'Opaque: the `next` of the page before.',
};
const next: Schema = { ...nullable(cursor), description: 'Pass as `cursor` for the next page; null on the last one.' };

const sessionProperties: Record<string, Schema> = {
  id: { type: 'string', pattern: SESSION_ID_PATTERN, examples: ['order-1001'] },
  state: { type: 'string', enum: [...SESSION_STATES] },
  expiresAt: { ...nullable(time), description: 'When the TTL given at create runs out; null: no TTL.' },
  parties: {
    type: 'array',
    minItems: 2,
    maxItems: 2,
    items: object({
      number: { ...e164, description: "The party's real number." },
      maskedAs: { ...e164, description: 'The virtual number the other party sees for this one, and dials to reach it.' },
      pin: { type: 'string', pattern: '^[0-9]+$', description: 'Only in the answer to the create that issued it: what this party types calling from another phone.' },
    }, ['number', 'maskedAs']),
  },
  createdAt: time,
  releasedAt: nullable(time),
  endsAt: { ...nullable(time), description: 'When calls stop connecting; null: open-ended until released.' },
  idleTimeoutMs: { ...nullable({ type: 'integer', minimum: 0 }), description: 'Sliding TTL: the session ends this long after its last call (never past expiresAt); null: fixed.' },
  calls: {
    type: 'object',
    description: 'Call shaping this session sets ({} for all defaults).',
    properties: {
      calleeAnnouncement: { type: 'string' },
      callerAnnouncement: { type: 'string' },
      callLimitMs: { type: 'integer' },
      limitWarningMs: { type: 'integer' },
      ringTimeoutMs: { type: 'integer' },
      record: { type: 'boolean' },
    },
    additionalProperties: false,
  },
};

/** How a pool number handles callers without a bridge (`vnum pool set`); null: vnum serve's default (--pin, --out-of-session, --fallback). */
const handlingProperties: Record<string, Schema> = {
  pin: { type: ['string', 'null'], enum: [...PIN_MODES, null], description: "Who is asked for a PIN: off, withheld (withheld or invalid callers), all (every caller without a bridge); null: vnum serve's --pin." },
  outOfSession: {
    type: ['string', 'null'],
    enum: [...OUT_OF_SESSION_MODES, null],
    description: "What a refused caller gets: announce (an announcement, then a hang-up) or fallback (the desk); null: vnum serve's --out-of-session.",
  },
  fallback: { ...nullable(e164), description: "The desk a refused caller is put through to (never a pool number); null: vnum serve's --fallback." },
};

const problemProperties: Record<string, Schema> = {
  type: { type: 'string', format: 'uri', description: '`urn:vnum:problem:<code>`' },
  title: { type: 'string' },
  status: { type: 'integer', minimum: 400, maximum: 599 },
  detail: { type: 'string', description: 'The cause, as the CLI says it.' },
  code: { type: 'string', enum: Object.values(ErrorCode), description: 'Stable; the same codes as the CLI (README, "Exit codes and errors").' },
  instance: { type: 'string', format: 'uri', description: '`urn:uuid:<request id>`, also the `x-request-id` header and the log line of the request.' },
  errors: {
    type: 'array',
    description: 'For a request the schema refuses: each problem and where (a JSON pointer into the body, or the parameter).',
    items: object({ pointer: { type: 'string' }, detail: { type: 'string' } }),
  },
  differs: { type: 'array', items: { type: 'string' }, description: 'VNUM_SESSION_CONFLICT: what differs from the existing session.' },
  session: { ...ref('Session'), description: 'VNUM_SESSION_ENDED: the session a refused retry names.' },
  decision: { ...ref('RouteDecision'), description: 'GET /v1/route with an invalid number: the decision the router would make.' },
  summary: { ...ref('SyncSummary'), description: 'VNUM_RETIRE_LIMIT: the plan that was refused (nothing was written).' },
};

const healthAmi = object({
  ok: { type: 'boolean' },
  state: { type: 'string', description: 'logged-in, connecting, waiting, disabled, stopped or unknown' },
  since: nullable(time),
  reportedAt: nullable(time),
  error: nullable({ type: 'string' }),
});

const schemas: Record<string, Schema> = {
  Session: object(sessionProperties),
  SessionCreated: object({
    ...sessionProperties,
    created: { type: 'boolean', description: 'false: this very request had already created the session (a safe retry).' },
  }),
  SessionReleased: object(
    {
      ...sessionProperties,
      changed: { type: 'boolean', description: 'false: already ended, or an earlier release ends it sooner.' },
      hangup: {
        ...object({
          requestedAt: { ...time, description: "When the hang-up was asked: the release's time. In cluster mode each PBX node hangs up its calls of the session that started at or before it." },
          requested: {
            ...nullable({ type: 'integer', minimum: 0 }),
            description:
              "Calls in progress asked to hang up. null in cluster mode (the API on PostgreSQL): the calls are in each PBX node's own call log, not on the authority, so the count is not known here; each node applies the request as its replica receives it (milliseconds on a healthy link; a node cut off, when it heals).",
          },
          ended: {
            ...nullable({ type: 'integer', minimum: 0 }),
            description: 'How many of them had ended within `wait`. null in cluster mode, for the same reason (the answer does not wait).',
          },
        }),
        description: 'With `"hangup": true` only.',
      },
    },
    [...Object.keys(sessionProperties), 'changed'],
  ),
  SessionPage: object({ sessions: { type: 'array', items: ref('Session') }, next }),
  CreateSession: object(
    {
      id: {
        type: 'string',
        pattern: SESSION_ID_PATTERN,
        description: 'Your id for it, e.g. the order id; also the idempotency key (README, "Retries").',
        examples: ['order-1001'],
      },
      parties: {
        type: 'array',
        minItems: 2,
        maxItems: 2,
        description: 'The first and the second party.',
        items: object(
          {
            number: numberText("The party's real number: +E.164, or national with `country`."),
            maskedAs: numberText('Lend this virtual number to this party (the only way to lend a reserved one).'),
          },
          ['number'],
        ),
      },
      ttl: duration(`End the session this long after creation, at most ${formatDuration(MAX_TTL_MS)}; with idleTimeout, its hard maximum.`, '2h'),
      idleTimeout: duration(
        `Sliding TTL: end the session this long after its last bridged call (each call pushes the end, never past ttl), ${formatDuration(IDLE_LIMITS.min)} to ${formatDuration(IDLE_LIMITS.max)}; no longer than ttl.`,
        '30m',
      ),
      calleeAnnouncement: {
        type: 'string',
        maxLength: 160,
        description: 'An Asterisk sound played to the callee on answer, before the call connects: 1-4 parts of A-Z a-z 0-9 _ - separated by / (no extension).',
        examples: ['followme/call-from'],
      },
      callerAnnouncement: { type: 'string', maxLength: 64, description: 'A music-on-hold class (musiconhold.conf) the caller hears while the callee rings.', examples: ['vnumwait'] },
      callLimit: duration(`The longest an answered call may last, whole seconds, 1s to ${formatDuration(CALL_LIMITS.callLimitMs.max)}.`, '30m'),
      limitWarning: duration(`Play vnum serve's warning sound to the caller this long before the call limit, whole seconds, shorter than callLimit.`, '1m'),
      ringTimeout: duration(`How long the callee may ring, whole seconds, 1s to ${formatDuration(CALL_LIMITS.ringTimeoutMs.max)}.`, '45s'),
      record: { type: 'boolean', description: "Record this session's calls (true, with the consent notice vnum serve plays) or never (false); absent: vnum serve's --record." },
      country,
    },
    ['id', 'parties'],
  ),
  ReleaseSession: object(
    {
      grace: duration('How long calls still connect; 0s ends it now. Default 30m, at most 30d.', '10m'),
      hangup: {
        type: 'boolean',
        description:
          "Also hang up its calls in progress now (vnum serve does it through AMI). In cluster mode the request is written on the session and each PBX node's vnum serve hangs up its own calls of the session that started at or before it, as its replica receives it.",
      },
      wait: duration(
        `With hangup: how long to wait for those calls to end, at most ${API_LIMITS.releaseWaitMaxMs / 1000}s. Default 5s. Not used in cluster mode (the calls are on the nodes: the answer does not wait).`,
        '5s',
      ),
    },
    [],
  ),
  PoolNumber: object({
    number: e164,
    country: { type: 'string', examples: ['GB'] },
    state: { type: 'string', enum: [...POOL_STATES] },
    addedAt: time,
    ...handlingProperties,
  }),
  NumberHandling: object({ number: e164, ...handlingProperties, changed: { type: 'boolean', description: 'false: it was already so.' } }),
  SetNumberHandling: {
    ...object(
      {
        pin: { ...handlingProperties.pin, description: `${handlingProperties.pin!.description as string} Absent: left as it is.` },
        outOfSession: { ...handlingProperties.outOfSession, description: `${handlingProperties.outOfSession!.description as string} Absent: left as it is.` },
        fallback: {
          ...nullable(numberText('The desk: +E.164, or national with `country`.')),
          description: "The desk a refused caller is put through to: +E.164, or national with `country`; never a pool number. null: vnum serve's --fallback. Absent: left as it is.",
        },
      },
      [],
    ),
    minProperties: 1,
  },
  PoolPage: object({ numbers: { type: 'array', items: ref('PoolNumber') }, next }),
  AddToPool: object(
    {
      numbers: { type: 'array', minItems: 1, maxItems: API_LIMITS.poolAddMax, items: numberText('A virtual number: +E.164, or national with `country`.') },
      country: { ...country, description: "The numbers' country, and the country of those written without + (as `pool add --country`)." },
      reserved: { type: 'boolean', description: 'Reserve them: never lent automatically, only when a session asks for one by number.' },
    },
    ['numbers'],
  ),
  PoolChange: object({
    added: { type: 'integer', minimum: 0 },
    updated: { type: 'integer', minimum: 0 },
    unchanged: { type: 'integer', minimum: 0 },
    kept: {
      type: 'array',
      description: 'Numbers whose state an import kept as the operator set it; always empty for POST /v1/pool.',
      items: object({ number: e164, state: { type: 'string', enum: [...POOL_STATES] }, reason: { type: 'string' } }),
    },
  }),
  Retired: object({ number: e164, state: { type: 'string', const: 'retired' }, changed: { type: 'boolean' } }),
  SyncSummary: object({
    dryRun: { type: 'boolean' },
    listed: { type: 'integer', minimum: 0, description: 'Distinct numbers in the export.' },
    added: { type: 'integer', minimum: 0 },
    retired: { type: 'integer', minimum: 0, description: 'Numbers put out of service (available before).' },
    updated: { type: 'integer', minimum: 0, description: 'Every other change: another state, another country.' },
    unchanged: { type: 'integer', minimum: 0 },
    changes: {
      type: 'array',
      description: 'Every number written (or, in a dry run, that would be), in number order, with why.',
      items: object({
        number: e164,
        from: nullable({ ...object({ country: { type: 'string' }, state: { type: 'string', enum: [...POOL_STATES] } }), type: 'object' }),
        to: object({ country: { type: 'string' }, state: { type: 'string', enum: [...POOL_STATES] } }),
        why: { type: 'string' },
      }),
    },
    kept: { type: 'array', items: object({ number: e164, state: { type: 'string', enum: [...POOL_STATES] }, reason: { type: 'string' } }) },
    unlisted: {
      type: 'array',
      description: 'Without retireMissing: numbers in service the export does not list, left as they are.',
      items: object({ number: e164, state: { type: 'string', enum: [...POOL_STATES] } }),
    },
    retireLimit: object({
      maxPercent: { type: 'integer', minimum: 0, maximum: 100 },
      available: { type: 'integer', minimum: 0 },
      retiring: { type: 'integer', minimum: 0 },
      allowed: { type: 'integer', minimum: 0 },
      availableAfter: { type: 'integer', minimum: 0 },
      exceeded: { type: 'boolean' },
    }),
  }),
  RouteDecision: object({
    status: { type: 'string', enum: [...ROUTE_STATUSES] },
    target: { ...nullable(e164), description: 'The real number the router dials (BRIDGE only).' },
    cli: { ...nullable(e164), description: "The caller ID it presents: the caller's masked number (BRIDGE only)." },
    session: nullable({ type: 'string' }),
    reason: nullable({ type: 'string' }),
  }),
  Call: object({
    id: { type: 'integer' },
    uniqueid: { type: 'string', description: "Asterisk's Uniqueid of the caller's channel." },
    session: { type: 'string' },
    caller: { type: 'string', enum: ['first', 'second'], description: 'Which party of the session called (no real number is stored).' },
    state: { type: 'string', enum: [...CALL_STATES] },
    startedAt: time,
    ringingAt: nullable(time),
    answeredAt: nullable(time),
    endedAt: nullable(time),
    lostAt: nullable(time),
    durationMs: nullable({ type: 'integer', minimum: 0 }),
    dialStatus: nullable({ type: 'string' }),
    hangupCause: nullable({ type: 'integer' }),
    hangupCauseText: nullable({ type: 'string' }),
    hangupRequestedAt: nullable(time),
    hangupReason: nullable({ type: 'string', enum: ['release', 'session-ended', null] }),
    via: { type: ['string', 'null'], enum: ['pin', null], description: "'pin': the caller reached the party by typing its PIN." },
    recording: {
      ...object({ path: { type: 'string' }, bytes: nullable({ type: 'integer', minimum: 0 }), deletedAt: nullable(time) }),
      type: ['object', 'null'],
      description: "The call's recording, or null: the file (named by the Uniqueid), its size once the call ended, when the retention sweep deleted it.",
    },
  }),
  CallPage: object({
    calls: { type: 'array', items: ref('Call') },
    next,
    watching: {
      type: 'boolean',
      description: 'Some vnum serve reports a live AMI connection; false: calls in progress may be out of date.',
    },
  }),
  Stats: object({
    pool: object({
      available: { type: 'integer', minimum: 0 },
      reserved: { type: 'integer', minimum: 0 },
      retired: { type: 'integer', minimum: 0 },
      total: { type: 'integer', minimum: 0 },
    }),
    sessions: object({
      active: { type: 'integer', minimum: 0 },
      grace: { type: 'integer', minimum: 0 },
      ended: { type: 'integer', minimum: 0 },
    }),
    busiestParty: object({
      number: { ...nullable({ type: 'string' }), description: 'Redacted: its last 4 digits.' },
      liveSessions: { type: 'integer', minimum: 0 },
      poolAvailable: { type: 'integer', minimum: 0 },
    }),
  }),
  Health: object({
    healthy: { type: 'boolean' },
    database: object({
      ok: { type: 'boolean' },
      path: { type: 'string' },
      schemaVersion: nullable({ type: 'integer' }),
      error: nullable({ type: 'string' }),
    }),
    routers: {
      type: 'array',
      description: 'Every vnum serve that reported to this database in the last 7 days (each writes its state every 5 s).',
      items: object({
        address: { type: 'string', description: 'host:port, as given to vnum serve' },
        ok: {
          type: 'boolean',
          description: 'Reported within 15 s, AMI logged in (or not configured, unless requireAmi). A router stopped on purpose is not ok, and does not make the installation unhealthy while another one is.',
        },
        ami: healthAmi,
        asterisk: object({ version: nullable({ type: 'string' }) }),
      }),
    },
  }),
  Ready: object({ ready: { type: 'boolean', const: true } }),
  Problem: object(problemProperties, ['type', 'title', 'status', 'detail', 'code']),
};

type Status = 200 | 201 | 400 | 401 | 403 | 404 | 409 | 413 | 415 | 422 | 429 | 500 | 501 | 503;

/** Every status a problem can have, with what it means here. */
const PROBLEM_RESPONSES: Record<Exclude<Status, 200 | 201>, string> = {
  400: 'Malformed request: bad JSON, a field of the wrong type, an unknown field or parameter, an id outside the safe alphabet, a bound exceeded.',
  401: 'No API key, or an unknown, malformed or revoked one (`WWW-Authenticate: Bearer`). Nothing was done.',
  403: "The key's scopes do not cover this request. Nothing was done.",
  404: 'No such session, pool number or resource.',
  409: 'Conflicts with what exists: the session id taken by another request, a released session retried, a number not available, the pool exhausted for a party.',
  413: 'The body is larger than this operation takes.',
  415: 'A Content-Type this operation does not take.',
  422: 'Well-formed but not usable: an invalid number, country or CSV row, a number type the policy refuses.',
  429: 'Too many requests from this address, or too many with bad keys (`Retry-After`).',
  500: 'A fault in vnum itself, or a damaged database.',
  501: 'Not available on this installation.',
  503: 'The database is busy, full or cannot be opened, the authority (PostgreSQL) cannot be reached, or the installation needs the operator (`Retry-After` when busy or unreachable).',
};

const AUTHENTICATED: Status[] = [400, 401, 403, 429, 500, 503];
const WITH_BODY: Status[] = [413, 415];

interface Operation {
  operationId: string;
  summary: string;
  description?: string;
  /** The scope a key needs; undefined: public. */
  scope?: (typeof SCOPES)[number];
  parameters?: Schema[];
  requestBody?: Schema;
  success: { status: 200 | 201; schema: Schema; description: string; headers?: Record<string, Schema> };
  /** Problem statuses besides the ones every authenticated operation has. */
  problems?: Status[];
}

const query = (name: string, schema: Schema, description: string): Schema => ({ name, in: 'query', required: false, schema, description });
const limit = query(
  'limit',
  { type: 'integer', minimum: 1, maximum: API_LIMITS.pageMax, default: API_LIMITS.pageDefault },
  `Items per page, 1 to ${API_LIMITS.pageMax}.`,
);
const cursorParameter = query('cursor', cursor, 'The `next` of the page before.');
const countryParameter = query('country', country, country.description as string);
const sessionIdParameter: Schema = {
  name: 'id',
  in: 'path',
  required: true,
  schema: { type: 'string', pattern: SESSION_ID_PATTERN },
  description: 'The session id.',
};
const jsonBody = (schema: Schema, required = true): Schema => ({ required, content: { 'application/json': { schema } } });

const OPERATIONS: Record<string, Partial<Record<'get' | 'post', Operation>>> = {
  '/v1/sessions': {
    post: {
      operationId: 'createSession',
      summary: 'Open a session: each party is lent the virtual number the other party sees and dials.',
      description:
        'The id is the idempotency key (README, "Retries"): the same request again gets the session back with `created: false` (200); ' +
        'another request under that id is VNUM_SESSION_CONFLICT, a retry of a released or ended session VNUM_SESSION_ENDED (409, with `session`). ' +
        'Each party must pass the API\'s number-type policy (VNUM_ALLOWED_NUMBER_TYPES); a request cannot widen it.',
      scope: 'sessions',
      requestBody: jsonBody(ref('CreateSession')),
      success: {
        status: 201,
        schema: ref('SessionCreated'),
        description: 'Created (201), or 200 for a retry of the same request (`created: false`).',
        headers: { Location: { schema: { type: 'string' }, description: '/v1/sessions/{id}' } },
      },
      problems: [...WITH_BODY, 404, 409, 422],
    },
    get: {
      operationId: 'listSessions',
      summary: 'Sessions, newest first, a page at a time.',
      scope: 'read',
      parameters: [
        query('party', numberText('A real number: only sessions with this party.'), 'Only sessions with this party (one index range: never a walk of the table).'),
        query('state', { type: 'string', enum: [...SESSION_STATES] }, 'Only sessions in this state.'),
        countryParameter,
        limit,
        cursorParameter,
      ],
      success: { status: 200, schema: ref('SessionPage'), description: 'A page of sessions.' },
      problems: [422],
    },
  },
  '/v1/sessions/{id}': {
    get: {
      operationId: 'getSession',
      summary: 'One session.',
      scope: 'read',
      parameters: [sessionIdParameter],
      success: { status: 200, schema: ref('Session'), description: 'The session.' },
      problems: [404],
    },
  },
  '/v1/sessions/{id}/release': {
    post: {
      operationId: 'releaseSession',
      summary: 'End a session after a grace period in which calls still connect.',
      description:
        "Never extends a session. With `hangup`, its calls in progress are hung up now by vnum serve (through AMI); in cluster mode by each PBX node's vnum serve, as its replica receives the request (the answer's `hangup.requested` and `hangup.ended` are then null: the authority does not know the nodes' calls).",
      scope: 'sessions',
      parameters: [sessionIdParameter],
      requestBody: jsonBody(ref('ReleaseSession'), false),
      success: { status: 200, schema: ref('SessionReleased'), description: 'The session after the release.' },
      problems: [...WITH_BODY, 404],
    },
  },
  '/v1/pool': {
    get: {
      operationId: 'listPool',
      summary: 'The pool, in number order, a page at a time.',
      scope: 'read',
      parameters: [query('state', { type: 'string', enum: [...POOL_STATES] }, 'Only numbers in this state.'), limit, cursorParameter],
      success: { status: 200, schema: ref('PoolPage'), description: 'A page of pool numbers.' },
    },
    post: {
      operationId: 'addToPool',
      summary: 'Add numbers, or set their state: available, or reserved with `reserved` (as `vnum pool add`).',
      description: 'All or nothing: every number is checked before anything is written. This is how a retired number goes back in service.',
      scope: 'pool',
      requestBody: jsonBody(ref('AddToPool')),
      success: { status: 200, schema: ref('PoolChange'), description: 'What changed.' },
      problems: [...WITH_BODY, 409, 422],
    },
  },
  '/v1/pool/import': {
    post: {
      operationId: 'importPool',
      summary: "Import a provider's export: CSV of number, optional country, optional state (as `vnum pool import`).",
      description:
        'It never undoes the operator: a row without a state leaves a number\'s state as it is, and no row puts a retired number back in service. ' +
        `Every row is checked before anything is written. At most ${API_LIMITS.csvBodyBytes / 1024 / 1024} MiB.`,
      scope: 'pool',
      parameters: [countryParameter],
      requestBody: {
        required: true,
        content: { 'text/csv': { schema: { type: 'string', description: 'number[,country[,state]], or any column order under a header row.' } } },
      },
      success: { status: 200, schema: ref('PoolChange'), description: 'What changed, and the numbers whose state was kept.' },
      problems: [...WITH_BODY, 409, 422],
    },
  },
  '/v1/pool/sync': {
    post: {
      operationId: 'syncPool',
      summary: "Make the pool follow a provider's export (as `vnum pool sync`): CSV (text/csv) or JSON (application/json) in the body.",
      description:
        'New numbers are added; with `retireMissing`, available numbers the export no longer lists are retired (sessions using them continue to their end). ' +
        'Never re-enables a number the operator retired, never changes a reserved number. All or nothing; `dryRun` plans and reports only. ' +
        'A sync that would retire more than `maxRetire` of the available numbers (or the last one) is refused with 409 VNUM_RETIRE_LIMIT and the plan, nothing written. ' +
        `At most ${API_LIMITS.csvBodyBytes / 1024 / 1024} MiB. The API takes the export in the body; fetching a URL is the CLI's (\`vnum pool sync <https-url>\`).`,
      scope: 'pool',
      parameters: [
        query('retireMissing', { type: 'boolean', default: false }, 'Retire the available numbers the export no longer lists (else they are only reported in `unlisted`).'),
        query('maxRetire', { type: 'string', pattern: '^[0-9]{1,3}%$', default: `${DEFAULT_MAX_RETIRE_PERCENT}%` }, 'The most of the available numbers one sync may retire, 0% to 100%.'),
        query('dryRun', { type: 'boolean', default: false }, 'Plan and report only: nothing is written, and a plan over the limit is reported, not refused.'),
        countryParameter,
      ],
      requestBody: {
        required: true,
        content: {
          'text/csv': { schema: { type: 'string', description: 'number[,country[,state]], or any column order under a header row.' } },
          'application/json': { schema: { description: 'An array of numbers or of objects with a number, or an object holding one such list (as the provider exports it).' } },
        },
      },
      success: { status: 200, schema: ref('SyncSummary'), description: 'What changed (or would, in a dry run), and why.' },
      problems: [...WITH_BODY, 409, 422],
    },
  },
  '/v1/pool/{number}/retire': {
    post: {
      operationId: 'retireNumber',
      summary: 'Take a number out of service: no new sessions; running ones continue until they end.',
      scope: 'pool',
      parameters: [
        { name: 'number', in: 'path', required: true, schema: numberText('The virtual number (URL-encode the +: %2B).'), description: 'The virtual number.' },
        countryParameter,
      ],
      success: { status: 200, schema: ref('Retired'), description: '`changed: false`: it was already retired.' },
      problems: [404, 422],
    },
  },
  '/v1/pool/{number}/handling': {
    post: {
      operationId: 'setNumberHandling',
      summary: 'How a pool number handles callers without a bridge: PIN mode, out-of-session handling, desk (as `vnum pool set`).',
      description:
        "A value sets it, null returns it to vnum serve's default, an absent field leaves it. The desk must not be a pool number (409 VNUM_POOL_CONFLICT). " +
        'vnum serve reads it on the next call without a bridge.',
      scope: 'pool',
      parameters: [
        { name: 'number', in: 'path', required: true, schema: numberText('The virtual number (URL-encode the +: %2B).'), description: 'The virtual number.' },
        countryParameter,
      ],
      requestBody: jsonBody(ref('SetNumberHandling')),
      success: { status: 200, schema: ref('NumberHandling'), description: "The number's handling after the change." },
      problems: [...WITH_BODY, 404, 409, 422],
    },
  },
  '/v1/route': {
    get: {
      operationId: 'route',
      summary: 'What the call router decides for a call from `caller` to `dialled`, from the same code (for support staff).',
      description: 'An invalid caller number is 422 VNUM_INVALID_NUMBER carrying the `decision` (INVALID), as `vnum route` exits 1.',
      scope: 'read',
      parameters: [
        { ...query('caller', numberText("The caller's number as the carrier delivers it."), 'The caller.'), required: true },
        { ...query('dialled', numberText('The virtual number dialled.'), 'The dialled number.'), required: true },
        countryParameter,
      ],
      success: { status: 200, schema: ref('RouteDecision'), description: 'The decision.' },
      problems: [422],
    },
  },
  '/v1/calls': {
    get: {
      operationId: 'listCalls',
      summary: 'The call log, newest first, a page at a time (needs vnum serve with AMI).',
      scope: 'read',
      parameters: [
        query('session', { type: 'string', pattern: SESSION_ID_PATTERN }, 'Only calls of this session.'),
        query('since', { type: 'string', minLength: 1, maxLength: 40 }, 'Only calls started since: ISO 8601, or a duration back from now (2h).'),
        query('live', { type: 'boolean' }, 'Only calls in progress (routed, ringing, answered).'),
        limit,
        cursorParameter,
      ],
      success: { status: 200, schema: ref('CallPage'), description: 'A page of calls. In cluster mode, every node\'s calls as shipped to the authority (a call\'s id is the authority\'s: unique across nodes).' },
    },
  },
  '/v1/stats': {
    get: {
      operationId: 'stats',
      summary: 'Pool by state, sessions by state, the busiest party against the pool.',
      scope: 'read',
      success: { status: 200, schema: ref('Stats'), description: 'The figures.' },
    },
  },
  '/v1/health': {
    get: {
      operationId: 'health',
      summary: 'Is the installation routing and logging calls: the database, and every vnum serve on it.',
      description:
        'The checks of `vnum health`, judged from what each vnum serve writes to the database every 5 s (the API may run on another host than the routers). ' +
        '200 when healthy; 503 with the same body when not.',
      scope: 'read',
      parameters: [query('requireAmi', { type: 'boolean' }, 'Unhealthy when a vnum serve runs without AMI.')],
      success: { status: 200, schema: ref('Health'), description: 'Healthy (503 with the same body: unhealthy). In cluster mode, every node\'s routers as their nodes report them to the authority, each named `<node>/<host:port>`.' },
    },
  },
  '/v1/ready': {
    get: {
      operationId: 'ready',
      summary: 'Is this API process up and able to read its database? No key needed (load balancers, Docker).',
      success: { status: 200, schema: ref('Ready'), description: 'Ready; otherwise a 503 problem.' },
      problems: [503],
    },
  },
  '/v1/openapi.json': {
    get: {
      operationId: 'openapi',
      summary: 'This document. No key needed.',
      success: { status: 200, schema: { type: 'object' }, description: 'The OpenAPI 3.1 document.' },
    },
  },
};

/** 503 with a Health body is a report, not a problem. */
const HEALTH_UNHEALTHY = { description: 'Unhealthy: the same report.', content: { 'application/json': { schema: ref('Health') } } };

function operationObject(path: string, op: Operation): Schema {
  const statuses = new Set<Status>([...(op.scope ? AUTHENTICATED : ([500] as Status[])), ...(op.problems ?? [])]);
  if (op.scope === undefined) statuses.add(429);
  const responses: Record<string, Schema> = {
    [op.success.status]: {
      description: op.success.description,
      ...(op.success.headers ? { headers: op.success.headers } : {}),
      content: { 'application/json': { schema: op.success.schema } },
    },
  };
  if (op.operationId === 'createSession') responses['200'] = { description: 'A retry of the same request: the session, `created: false`.', content: { 'application/json': { schema: ref('SessionCreated') } } };
  for (const status of [...statuses].sort()) {
    responses[status] = op.operationId === 'health' && status === 503 ? HEALTH_UNHEALTHY : { $ref: `#/components/responses/Problem${status}` };
  }
  return {
    operationId: op.operationId,
    summary: op.summary,
    ...(op.description ? { description: op.description } : {}),
    tags: [path.split('/')[2]!],
    ...(op.scope ? { security: [{ apiKey: [op.scope] }] } : { security: [] }),
    ...(op.parameters ? { parameters: op.parameters } : {}),
    ...(op.requestBody ? { requestBody: op.requestBody } : {}),
    responses,
  };
}

function problemResponse(status: Exclude<Status, 200 | 201>): Schema {
  const codes = Object.entries(STATUS_OF).filter(([, s]) => s === status).map(([code]) => code);
  return {
    description: `${PROBLEM_RESPONSES[status]} Codes: ${codes.join(', ') || 'none'}.`,
    content: { 'application/problem+json': { schema: ref('Problem') } },
  };
}

export function openApiDocument(): Schema {
  const paths: Record<string, Schema> = {};
  for (const [path, methods] of Object.entries(OPERATIONS)) {
    paths[path] = Object.fromEntries(Object.entries(methods).map(([method, op]) => [method, operationObject(path, op)]));
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'vnum',
      version,
      summary: 'Number masking on your own Asterisk: sessions, the pool, routing decisions, the call log.',
      description:
        'Field names and error codes are the CLI\'s (`vnum ... --json`, README). Errors are RFC 9457 problem details ' +
        '(`application/problem+json`) carrying a stable `code`. Unknown fields and parameters are refused, never ignored. ' +
        `Keys: \`vnum apikey create --name <name> --scope ${SCOPES.join('|')}\`, sent as \`Authorization: Bearer <key>\`.`,
      license: { name: 'MIT', identifier: 'MIT' },
    },
    servers: [{ url: 'http://127.0.0.1:8474', description: 'vnum api on its default address' }],
    security: [{ apiKey: [] }],
    tags: [
      { name: 'sessions' },
      { name: 'pool' },
      { name: 'route' },
      { name: 'calls' },
      { name: 'stats' },
      { name: 'health' },
      { name: 'ready' },
      { name: 'openapi.json' },
    ],
    paths,
    components: {
      schemas,
      responses: Object.fromEntries(
        (Object.keys(PROBLEM_RESPONSES) as unknown as Array<Exclude<Status, 200 | 201>>).map((status) => [`Problem${status}`, problemResponse(Number(status) as Exclude<Status, 200 | 201>)]),
      ),
      securitySchemes: {
        apiKey: {
          type: 'http',
          scheme: 'bearer',
          description:
            `An API key from \`vnum apikey create\`. Scopes (the role each operation names): read (every GET), sessions (read, create and release sessions), ` +
            'pool (read, add, reserve, retire, import), admin (everything).',
        },
      },
    },
  };
}
