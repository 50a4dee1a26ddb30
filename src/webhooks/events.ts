import { isoDateTime } from '../time.js';

/**
 * The events vnum sends to the order system, and the shape of each (README,
 * "Webhooks"): the contract with receivers. Field names are the CLI's
 * `--json` ones. What the outbox stores never holds a real number: the
 * parties are named by their side of the session (`first`, `second`) and
 * their masked numbers; the operator's opt-in adds the real numbers when an
 * event is sent (withRealNumbers), from the session itself.
 */
export const EVENT_TYPES = [
  'session.created',
  'session.released',
  'session.ended',
  'call.bridged',
  'call.answered',
  'call.ended',
  'call.refused',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export type Side = 'first' | 'second';

/** An event as the outbox records it. */
export interface EventRecord {
  type: EventType;
  /** The session it belongs to: its events are delivered in the order they were recorded. */
  session: string;
  /** When the fact happened (ms). */
  occurredAt: number;
  data: EventData;
}

export type EventData = { [key: string]: unknown };

const iso = (ms: number | null): string | null => (ms === null ? null : isoDateTime(ms));

/** What a session event tells of the session (a Session has all of it). */
export interface SessionFacts {
  id: string;
  state: string;
  createdAt: number;
  expiresAt: number | null;
  releasedAt: number | null;
  endsAt: number | null;
  parties: readonly [{ maskedAs: string }, { maskedAs: string }];
}

/** Why a session ended: its TTL ran out, or the grace after a release did. */
export type EndCause = 'ttl' | 'release';

export function endCause(session: Pick<SessionFacts, 'expiresAt' | 'endsAt'>): EndCause {
  return session.expiresAt !== null && session.endsAt === session.expiresAt ? 'ttl' : 'release';
}

export function sessionEvent(type: 'session.created' | 'session.released' | 'session.ended', session: SessionFacts, occurredAt: number): EventRecord {
  const data: EventData = {
    session: {
      id: session.id,
      state: session.state,
      createdAt: iso(session.createdAt),
      expiresAt: iso(session.expiresAt),
      releasedAt: iso(session.releasedAt),
      endsAt: iso(session.endsAt),
      parties: session.parties.map((p) => ({ maskedAs: p.maskedAs })),
    },
  };
  if (type === 'session.ended') data.cause = endCause(session);
  return { type, session: session.id, occurredAt, data };
}

/** What a call event tells of the call (a Call from the call log has all of it). */
export interface CallFacts {
  id: number;
  uniqueid: string;
  session: string;
  caller: Side;
  state: string;
  startedAt: number;
  ringingAt: number | null;
  answeredAt: number | null;
  endedAt: number | null;
  lostAt: number | null;
  durationMs: number | null;
  dialStatus: string | null;
  hangupCause: number | null;
  hangupCauseText: string | null;
  hangupReason: string | null;
}

/** The session's two masked numbers: what the second party dials to reach the first, and the other way round. */
export interface MaskedPair {
  first: string;
  second: string;
}

const other = (side: Side): Side => (side === 'first' ? 'second' : 'first');

/** The number a party dialled to reach the other, and the caller ID the other was shown. */
function maskedFor(caller: Side, masked: MaskedPair): { dialled: string; presented: string } {
  return { dialled: masked[other(caller)], presented: masked[caller] };
}

export function callEvent(type: 'call.bridged' | 'call.answered' | 'call.ended', call: CallFacts, masked: MaskedPair, occurredAt: number): EventRecord {
  return {
    type,
    session: call.session,
    occurredAt,
    data: {
      call: {
        id: call.id,
        uniqueid: call.uniqueid,
        caller: call.caller,
        ...maskedFor(call.caller, masked),
        state: call.state,
        startedAt: iso(call.startedAt),
        ringingAt: iso(call.ringingAt),
        answeredAt: iso(call.answeredAt),
        endedAt: iso(call.endedAt),
        lostAt: iso(call.lostAt),
        durationMs: call.durationMs,
        dialStatus: call.dialStatus,
        hangupCause: call.hangupCause,
        hangupCauseText: call.hangupCauseText,
        hangupReason: call.hangupReason,
      },
    },
  };
}

/**
 * Why the router refused a call of a session: the session had ended
 * (ENDED), or the number-type policy refuses the party it would dial
 * (NOT_ALLOWED).
 */
export type RefusalReason = 'session-ended' | 'number-type-policy';

export interface RefusalFacts {
  session: string;
  caller: Side;
  uniqueid: string | null;
  reason: RefusalReason;
  at: number;
}

export function refusalEvent(refusal: RefusalFacts, masked: MaskedPair): EventRecord {
  return {
    type: 'call.refused',
    session: refusal.session,
    occurredAt: refusal.at,
    data: {
      call: { uniqueid: refusal.uniqueid, caller: refusal.caller, dialled: maskedFor(refusal.caller, masked).dialled, reason: refusal.reason },
    },
  };
}

/**
 * The event's data with the parties' real numbers added, for an operator who
 * opted in (VNUM_WEBHOOK_REAL_NUMBERS=on): `number` beside each party's
 * `maskedAs` in session events, `callerNumber` and `calleeNumber` in call
 * events. `parties`: the session's first and second party.
 */
export function withRealNumbers(type: EventType, data: EventData, parties: readonly [string, string]): EventData {
  if (type.startsWith('session.')) {
    const session = data.session as { parties: Array<{ maskedAs: string }> };
    return { ...data, session: { ...session, parties: session.parties.map((p, i) => ({ number: parties[i], maskedAs: p.maskedAs })) } };
  }
  const call = data.call as { caller: Side };
  const [callerNumber, calleeNumber] = call.caller === 'first' ? parties : [parties[1], parties[0]];
  return { ...data, call: { ...call, callerNumber, calleeNumber } };
}

/** What the outbox hands the deliverer: an event as recorded. */
export interface OutboxEvent {
  /** The outbox's write order: increases with every event, so within a session too. */
  seq: number;
  /** Unique across databases and time: what receivers deduplicate on. */
  id: string;
  type: EventType;
  session: string;
  occurredAt: number;
  data: EventData;
}

/** The body of the POST: one JSON object (README, "Webhooks"). */
export function eventBody(event: OutboxEvent, data: EventData = event.data): string {
  return JSON.stringify({
    id: event.id,
    type: event.type,
    occurredAt: isoDateTime(event.occurredAt),
    session: event.session,
    sequence: event.seq,
    data,
  });
}
