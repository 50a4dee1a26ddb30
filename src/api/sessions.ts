import { parseDuration } from '../duration.js';
import { sessionJson } from '../session/json.js';
import { normaliseNumber, parseCountry } from '../numbers/normalise.js';
import { DEFAULT_GRACE_MS, IDLE_LIMITS, MAX_GRACE_MS, MAX_TTL_MS, partyInput, validateSessionId } from '../session/sessions.js';
import { callSettingsFromText, type CallSettingsText } from '../session/call-settings.js';
import type { SessionState } from '../session/state.js';
import { awaitHangup } from '../calls/hangup.js';
import { parts, type ApiContext, type Handler } from './context.js';
import { decodeCursor, encodeCursor } from './cursor.js';
import { API_LIMITS } from './limits.js';

/** As `vnum session create`'s flags, camelCased: the same settings, bounds and error codes (errors name the field). */
interface CreateBody extends CallSettingsText {
  id: string;
  parties: [PartyBody, PartyBody];
  ttl?: string;
  idleTimeout?: string;
  country?: string;
}
interface PartyBody {
  number: string;
  maskedAs?: string;
}

/** A request's `country`, else the API's default. */
export function countryOf(given: string | undefined, context: ApiContext): string | undefined {
  return given === undefined ? context.defaultCountry : parseCountry(given);
}

const createSession: Handler = async (request, reply, context) => {
  const { body } = parts<never, CreateBody>(request);
  const country = countryOf(body.country, context);
  const [first, second] = body.parties;
  const { session, created } = await context.authority.createSession({
    id: validateSessionId(body.id),
    first: partyInput(first.number, first.maskedAs, country),
    second: partyInput(second.number, second.maskedAs, country),
    ttlMs: body.ttl === undefined ? undefined : parseDuration(body.ttl, 'ttl', { min: 1, max: MAX_TTL_MS }),
    idleMs: body.idleTimeout === undefined ? undefined : parseDuration(body.idleTimeout, 'idleTimeout', IDLE_LIMITS),
    callSettings: callSettingsFromText(body, (field) => field),
    now: context.now(),
    policy: context.policy,
    pinGuessBound: context.pinGuessBound,
  });
  reply.code(created ? 201 : 200).header('location', `/v1/sessions/${encodeURIComponent(session.id)}`);
  return { ...sessionJson(session), created };
};

const getSession: Handler = async (request, _reply, context) => {
  const { params } = parts<never, undefined, { id: string }>(request);
  return sessionJson(await context.authority.getSession(validateSessionId(params.id), context.now()));
};

const listSessions: Handler = async (request, _reply, context) => {
  const { query } = parts<{ party?: string; state?: SessionState; country?: string; limit: number; cursor?: string }>(request);
  const party = query.party === undefined ? undefined : normaliseNumber(query.party, countryOf(query.country, context));
  const page = await context.authority.listSessions({
    party,
    state: query.state,
    limit: query.limit,
    now: context.now(),
    after: query.cursor === undefined ? undefined : decodeCursor('sessions', query.cursor),
  });
  return { sessions: page.sessions.map(sessionJson), next: page.next === undefined ? null : encodeCursor('sessions', page.next) };
};

const releaseSession: Handler = async (request, _reply, context) => {
  const { params, body } = parts<never, { grace?: string; hangup?: boolean; wait?: string }, { id: string }>(request);
  const id = validateSessionId(params.id);
  const graceMs = body.grace === undefined ? DEFAULT_GRACE_MS : parseDuration(body.grace, 'grace', { max: MAX_GRACE_MS });
  const waitMs = parseDuration(body.wait ?? '5s', 'wait', { max: API_LIMITS.releaseWaitMaxMs });
  const hangup = body.hangup ?? false;
  const { session, changed, hangup: asked } = await context.authority.releaseSession(id, graceMs, context.now(), { hangup });
  return {
    ...sessionJson(session),
    changed,
    ...(asked ? { hangup: await awaitHangup(asked, waitMs, (ids) => context.authority.openCallCount(ids)) } : {}),
  };
};

export const SESSION_HANDLERS = { createSession, getSession, listSessions, releaseSession };
