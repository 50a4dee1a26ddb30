import { installationHealth, ROUTER_REPORTS_KEPT_MS } from '../calls/health.js';
import { ErrorCode, VnumError } from '../errors.js';
import { callJson } from '../calls/json.js';
import { routeJson } from '../json.js';
import { validateSessionId } from '../session/sessions.js';
import { parseSince } from '../time.js';
import { parts, type Handler } from './context.js';
import { decodeCursor, encodeCursor } from './cursor.js';
import { countryOf } from './sessions.js';

/** As `vnum route`: an invalid caller is the caller's error (422), carrying the decision the router would make. */
const route: Handler = async (request, _reply, context) => {
  const { query } = parts<{ caller: string; dialled: string; country?: string }>(request);
  const defaultCountry = countryOf(query.country, context);
  const decision = await context.authority.decideRoute({ caller: query.caller, dialled: query.dialled }, context.now(), { defaultCountry, policy: context.policy });
  if (decision.status === 'INVALID') {
    throw new VnumError(decision.code ?? ErrorCode.InvalidNumber, decision.reason ?? 'invalid number', { decision: routeJson(decision) });
  }
  return routeJson(decision);
};

const listCalls: Handler = async (request, _reply, context) => {
  const { query } = parts<{ session?: string; since?: string; live?: boolean; limit: number; cursor?: string }>(request);
  const now = context.now();
  const page = await context.authority.listCalls(
    {
      session: query.session === undefined ? undefined : validateSessionId(query.session),
      since: query.since === undefined ? undefined : parseSince(query.since, now, 'since'),
      live: query.live,
      limit: query.limit,
      after: query.cursor === undefined ? undefined : decodeCursor('calls', query.cursor),
    },
    now,
  );
  return { calls: page.calls.map(callJson), next: page.next === undefined ? null : encodeCursor('calls', page.next), watching: page.watching };
};

const stats: Handler = async (_request, _reply, context) => context.authority.collectStats(context.now());

const health: Handler = async (request, reply, context) => {
  const { query } = parts<{ requireAmi?: boolean }>(request);
  const now = context.now();
  const store = await context.authority.checkStore(now - ROUTER_REPORTS_KEPT_MS);
  const report = installationHealth({
    database: { ok: store.ok, path: store.location, schemaVersion: store.schemaVersion, error: store.error },
    routers: store.routers ?? [],
    now,
    requireAmi: query.requireAmi ?? false,
  });
  if (!report.healthy) reply.code(503);
  return report;
};

/** Public: says nothing about the store but whether it answers. */
const ready: Handler = async (_request, _reply, context) => {
  const store = await context.authority.checkStore(context.now());
  if (!store.ok) throw new VnumError(store.code ?? ErrorCode.Database, store.code === undefined ? 'the database cannot be read' : store.error ?? 'the store cannot be read');
  return { ready: true };
};

const openapi: Handler = async (_request, _reply, context) => context.document;

export const READ_HANDLERS = { route, listCalls, stats, health, ready, openapi };
