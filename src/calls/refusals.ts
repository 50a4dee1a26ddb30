import { writeTransaction, type Db } from '../store/db.js';
import { normaliseNumberCached } from '../numbers/cache.js';
import { perConnection } from '../store/statements.js';
import { maskedNumbers, type Side } from '../webhooks/events.js';
import { appendEvent, type CounterName } from '../webhooks/outbox.js';
import { nodeOf, queueEventToShip } from './shipping.js';

/**
 * call.refused: the router refused a call to a masked number of a session
 * (ENDED: the session is over; NOT_ALLOWED: the number-type policy refuses
 * the party it would dial). The router answers first and never waits on
 * this: `vnum serve` hands the refusal to the call log's write queue, which
 * writes it on a later turn of the event loop.
 *
 * Anyone with a phone can make refused calls, as fast as a trunk carries
 * them, so what reaches the outbox is bounded, and what is not is counted:
 * - a refused call tied to no session (NO_SESSION: the caller never had a
 *   session on that number; INVALID: caller ID withheld or not a number)
 *   makes no event at all: there is no order to tell, and an event per call
 *   would let any stranger drive traffic into the order system. Counted by
 *   reason (refused_no_session, refused_invalid_caller);
 * - a session's refusals pass a bucket per session (5, then one a minute)
 *   and one for all (100, then 20 a second); the rest are counted
 *   (refusals_dropped), never queued.
 */

export interface Bucket {
  capacity: number;
  /** Tokens added per second. */
  perSecond: number;
}

export interface RefusalLimits {
  perSession: Bucket;
  overall: Bucket;
  /** Sessions whose bucket is remembered; the oldest is forgotten first. */
  sessions: number;
}

export const REFUSAL_LIMITS: RefusalLimits = Object.freeze({
  perSession: Object.freeze({ capacity: 5, perSecond: 1 / 60 }),
  overall: Object.freeze({ capacity: 100, perSecond: 20 }),
  sessions: 10_000,
});

class TokenBucket {
  private tokens: number;
  private at: number;
  constructor(
    private readonly bucket: Bucket,
    now: number,
  ) {
    this.tokens = bucket.capacity;
    this.at = now;
  }

  take(now: number): boolean {
    this.tokens = Math.min(this.bucket.capacity, this.tokens + ((now - this.at) / 1000) * this.bucket.perSecond);
    this.at = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/**
 * Why the router refused a call of a session: the session had ended
 * (ENDED), or the number-type policy refuses the party it would dial
 * (NOT_ALLOWED).
 */
export type RefusalReason = 'session-ended' | 'number-type-policy';

const REASONS: Partial<Record<string, RefusalReason>> = { ENDED: 'session-ended', NOT_ALLOWED: 'number-type-policy' };
const UNTIED: Partial<Record<string, CounterName>> = { NO_SESSION: 'refused_no_session', INVALID: 'refused_invalid_caller' };

export interface RefusedCall {
  /** agi_callerid as Asterisk sent it. */
  callerId: string;
  uniqueId: string;
}

export interface Refusal {
  session: string;
  /** The caller's number as the router judged it: only to tell which party called; never stored. */
  caller: string;
  reason: RefusalReason;
  uniqueid: string | null;
  at: number;
}

/** The admission side, in `vnum serve`'s memory: constant time per call, bounded memory. */
export class RefusalGate {
  private readonly overall: TokenBucket;
  private readonly perSession = new Map<string, TokenBucket>();
  private counts = new Map<CounterName, number>();

  constructor(
    private readonly options: { defaultCountry?: string | undefined; limits?: RefusalLimits },
    now: number,
  ) {
    this.overall = new TokenBucket(this.limits.overall, now);
  }

  private get limits(): RefusalLimits {
    return this.options.limits ?? REFUSAL_LIMITS;
  }

  /** A router answer: the refusal to record, or undefined (not a refusal, counted, or over the bounds). */
  admit(call: RefusedCall, status: string, session: string, now: number): Refusal | undefined {
    const untied = UNTIED[status];
    if (untied !== undefined) {
      this.count(untied);
      return undefined;
    }
    const reason = REASONS[status];
    if (reason === undefined || session === '') return undefined;
    if (!this.sessionBucket(session, now).take(now) || !this.overall.take(now)) {
      this.count('refusals_dropped');
      return undefined;
    }
    let caller: string;
    try {
      caller = normaliseNumberCached(call.callerId, this.options.defaultCountry);
    } catch {
      // A stored number the installed metadata no longer reads (decide.ts): the router found the session as-is.
      caller = call.callerId;
    }
    return { session, caller, reason, uniqueid: call.uniqueId === '' ? null : call.uniqueId, at: now };
  }

  /** A refusal admitted here that its store could not queue (a cluster node's full queue): a drop after all. */
  dropped(): void {
    this.count('refusals_dropped');
  }

  /** Counts taken that could not be written yet: kept, to be taken again with the next. */
  giveBack(counts: ReadonlyMap<CounterName, number>): void {
    for (const [name, by] of counts) this.counts.set(name, (this.counts.get(name) ?? 0) + by);
  }

  /** What was counted since the last call. */
  takeCounts(): Map<CounterName, number> {
    const counts = this.counts;
    this.counts = new Map();
    return counts;
  }

  private count(name: CounterName): void {
    this.counts.set(name, (this.counts.get(name) ?? 0) + 1);
  }

  private sessionBucket(session: string, now: number): TokenBucket {
    let bucket = this.perSession.get(session);
    if (bucket === undefined) {
      if (this.perSession.size >= this.limits.sessions) this.perSession.delete(this.perSession.keys().next().value!);
      bucket = new TokenBucket(this.limits.perSession, now);
      this.perSession.set(session, bucket);
    }
    return bucket;
  }
}

const statements = perConnection((db: Db) => ({
  session: db.prepare<[string], { first_party: string; second_party: string; first_masked_as: string; second_masked_as: string }>(
    'SELECT first_party, second_party, first_masked_as, second_masked_as FROM session WHERE id = ?',
  ),
}));

/**
 * Write call.refused (no-op while webhooks are not recording): `recorded`;
 * `not-a-party` when the caller is no party of that session; `dropped` when
 * a cluster node's queue for the authority is full (the caller counts it).
 */
export function recordRefusal(db: Db, refusal: Refusal, now: number): 'recorded' | 'not-a-party' | 'dropped' {
  return writeTransaction(db, () => {
    const row = statements(db).session.get(refusal.session);
    if (!row) return 'not-a-party';
    const caller: Side | undefined = row.first_party === refusal.caller ? 'first' : row.second_party === refusal.caller ? 'second' : undefined;
    if (caller === undefined) return 'not-a-party';
    const { dialled } = maskedNumbers(caller, { first: row.first_masked_as, second: row.second_masked_as });
    const call = { uniqueid: refusal.uniqueid, caller, dialled, reason: refusal.reason };
    const event = { type: 'call.refused' as const, session: refusal.session, occurredAt: refusal.at, data: { call } };
    // A cluster node's outbox is on the authority: queued for its shipper (./shipping.ts), bounded there.
    if (nodeOf(db) !== undefined) return queueEventToShip(db, event) ? 'recorded' : 'dropped';
    appendEvent(db, event, now);
    return 'recorded';
  });
}
