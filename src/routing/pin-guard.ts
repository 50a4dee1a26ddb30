/**
 * How many wrong PINs the router takes (README, "PINs"): a few per call, and
 * per hour at most `perCaller` from one caller number and `perNumber` on one
 * pool number, whoever types them. Past a limit no PIN is asked for or
 * looked up: the caller gets the number's refusal. Withheld callers cannot
 * be told apart, so for them only the call's and the number's limits count.
 *
 * In memory, per router: a restart forgets the counts (at most one window's
 * worth of extra guesses). Each table is bounded; a full table with nothing
 * expired refuses PINs rather than forgetting counts (fail closed).
 */
export interface PinLimits {
  /** Tries in one call. */
  attempts: number;
  /** Wrong PINs per window from one caller number. */
  perCaller: number;
  /** Wrong PINs per window on one pool number. */
  perNumber: number;
  windowMs: number;
}

export const DEFAULT_PIN_LIMITS: PinLimits = Object.freeze({ attempts: 3, perCaller: 5, perNumber: 20, windowMs: 3_600_000 });

export const PIN_LIMIT_BOUNDS = Object.freeze({
  attempts: Object.freeze({ min: 1, max: 5 }),
  perCaller: Object.freeze({ min: 1, max: 1_000 }),
  perNumber: Object.freeze({ min: 1, max: 100_000 }),
});

const MAX_KEYS = 100_000;

interface Count {
  since: number;
  wrong: number;
}

/** Fixed-window counters of wrong PINs by key, bounded in size. */
class Counter {
  private readonly counts = new Map<string, Count>();

  constructor(private readonly windowMs: number) {}

  get(key: string, now: number): number {
    const c = this.counts.get(key);
    return c === undefined || now - c.since >= this.windowMs ? 0 : c.wrong;
  }

  /** False when the table is full of live counts: the caller must fail closed. */
  add(key: string, now: number): boolean {
    const c = this.counts.get(key);
    if (c !== undefined && now - c.since < this.windowMs) {
      c.wrong++;
      return true;
    }
    if (c === undefined && this.counts.size >= MAX_KEYS && !this.sweep(now)) return false;
    this.counts.set(key, { since: now, wrong: 1 });
    return true;
  }

  full(now: number): boolean {
    return this.counts.size >= MAX_KEYS && !this.sweep(now);
  }

  private sweep(now: number): boolean {
    for (const [key, c] of this.counts) if (now - c.since >= this.windowMs) this.counts.delete(key);
    return this.counts.size < MAX_KEYS;
  }
}

export interface PinCaller {
  /** agi_uniqueid: the call. */
  call: string;
  /** The caller's number, normalised; null when withheld or not a number. */
  caller: string | null;
  /** The pool number dialled, normalised. */
  dialled: string;
}

export class PinGuard {
  private readonly byCall: Counter;
  private readonly byCaller: Counter;
  private readonly byNumber: Counter;

  constructor(readonly limits: PinLimits = DEFAULT_PIN_LIMITS) {
    this.byCall = new Counter(limits.windowMs);
    this.byCaller = new Counter(limits.windowMs);
    this.byNumber = new Counter(limits.windowMs);
  }

  /** Whether this caller may type a PIN now. */
  open(who: PinCaller, now: number): boolean {
    if (this.byCall.full(now) || this.byNumber.full(now) || this.byCaller.full(now)) return false;
    if (this.byCall.get(who.call, now) >= this.limits.attempts) return false;
    if (this.byNumber.get(who.dialled, now) >= this.limits.perNumber) return false;
    return who.caller === null || this.byCaller.get(who.caller, now) < this.limits.perCaller;
  }

  /** A wrong PIN: counted against the call, the number and the caller. Then: may it try again? */
  wrong(who: PinCaller, now: number): boolean {
    const counted = this.byCall.add(who.call, now) && this.byNumber.add(who.dialled, now) && (who.caller === null || this.byCaller.add(who.caller, now));
    return counted && this.open(who, now);
  }
}
