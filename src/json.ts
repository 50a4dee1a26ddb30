/**
 * The documented JSON shapes (README, "JSON") of the pool, the router's
 * decision and API keys, one definition for both faces: the CLI's --json and
 * the HTTP API print the same objects with the same field names, so one
 * documentation serves both. Times are ISO 8601 UTC strings or null. A
 * session's and a call's shapes live with their domain (src/session/json.ts,
 * src/calls/json.ts): webhook events carry them too.
 */
import type { ApiKey } from './access/api-keys.js';
import type { PoolChange, PoolNumber } from './pool/pool.js';
import { answerFor, ERROR_ANSWER } from './routing/answer.js';
import type { RouteDecision } from './routing/decide.js';
import { isoTime } from './time.js';

/** A pool number, with how it handles callers without a bridge (each null: vnum serve's default). */
export function poolNumberJson(n: PoolNumber) {
  return { number: n.number, country: n.country, state: n.state, addedAt: isoTime(n.addedAt), ...n.handling };
}

export function poolChangeJson(change: PoolChange) {
  return { added: change.added, updated: change.updated, unchanged: change.unchanged, kept: change.kept };
}

/** What the router would answer for the decision (checked as it checks it: ERROR when it would refuse to write it), and why. */
export function routeJson(decision: RouteDecision) {
  const answer = answerFor(decision) ?? ERROR_ANSWER;
  const shown = (value: string) => (value === '' ? null : value);
  return { status: answer.status, target: shown(answer.target), cli: shown(answer.presentedCallerId), session: shown(answer.session), reason: decision.reason ?? null };
}

/** A key as lists show it: never its secret (which is not stored). */
export function apiKeyJson(key: ApiKey) {
  return {
    id: key.id,
    name: key.name,
    scopes: key.scopes,
    createdAt: isoTime(key.createdAt),
    revokedAt: isoTime(key.revokedAt),
    lastUsedAt: isoTime(key.lastUsedAt),
  };
}
