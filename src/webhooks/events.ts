import { isoDateTime } from '../time.js';

/**
 * The events vnum sends to the order system (README, "Webhooks"): their
 * types, the envelope, and the operator's opt-in for real numbers. What an
 * event's data holds is its fact's documented JSON shape, built where that
 * fact lives (src/session/events.ts, src/calls/store.ts, src/calls/refusals.ts):
 * `data.session` as `vnum session show --json` has it, `data.call` as
 * `vnum calls --json` has it, never with a real number; parties are named by
 * their side of the session (`first`, `second`) and their masked numbers.
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

export type EventData = { [key: string]: unknown };

/** An event as the outbox records it. */
export interface EventRecord {
  type: EventType;
  /** The session it belongs to: its events are delivered in the order they were recorded. */
  session: string;
  /** When the fact happened (ms). */
  occurredAt: number;
  data: EventData;
}

/** The session's two masked numbers: what the second party dials to reach the first, and the other way round. */
export interface MaskedPair {
  first: string;
  second: string;
}

/** The number a calling party dialled to reach the other, and the caller ID the other was shown. */
export function maskedNumbers(caller: Side, masked: MaskedPair): { dialled: string; presented: string } {
  return { dialled: masked[caller === 'first' ? 'second' : 'first'], presented: masked[caller] };
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
