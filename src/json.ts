/**
 * The documented JSON shapes (README, "JSON"), one definition for both faces:
 * the CLI's --json and the HTTP API print the same objects with the same
 * field names, so one documentation serves both. Times are ISO 8601 UTC
 * strings or null.
 */
import type { ApiKey } from './access/api-keys.js';
import type { Call } from './calls/store.js';
import type { PoolChange, PoolNumber } from './pool/pool.js';
import { answerFor, ERROR_ANSWER } from './routing/answer.js';
import type { RouteDecision } from './routing/decide.js';
import type { Session } from './session/sessions.js';
import { isoDateTime } from './time.js';

/** Milliseconds since the epoch -> ISO 8601 (UTC), or null; any stored value prints (see isoDateTime). */
export function isoTime(ms: number | null): string | null {
  return ms === null ? null : isoDateTime(ms);
}

export function sessionJson(session: Session) {
  return {
    id: session.id,
    state: session.state,
    expiresAt: isoTime(session.expiresAt),
    parties: session.parties.map((p) => ({ number: p.number, maskedAs: p.maskedAs })),
    createdAt: isoTime(session.createdAt),
    releasedAt: isoTime(session.releasedAt),
    endsAt: isoTime(session.endsAt),
  };
}

export function callJson(call: Call) {
  return {
    id: call.id,
    uniqueid: call.uniqueid,
    session: call.session,
    caller: call.caller,
    state: call.state,
    startedAt: isoTime(call.startedAt),
    ringingAt: isoTime(call.ringingAt),
    answeredAt: isoTime(call.answeredAt),
    endedAt: isoTime(call.endedAt),
    lostAt: isoTime(call.lostAt),
    durationMs: call.durationMs,
    dialStatus: call.dialStatus,
    hangupCause: call.hangupCause,
    hangupCauseText: call.hangupCauseText,
    hangupRequestedAt: isoTime(call.hangupRequestedAt),
    hangupReason: call.hangupReason,
  };
}

export function poolNumberJson(n: PoolNumber) {
  return { number: n.number, country: n.country, state: n.state, addedAt: isoTime(n.addedAt) };
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
