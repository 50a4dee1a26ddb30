import { ErrorCode } from '../errors.js';
import type { PoolState } from '../pool/pool.js';
import { callingCodeOf } from '../numbers/plan.js';

/**
 * Which virtual number a party dials to reach the other one. Pure: the store
 * gathers the facts, this decides.
 *
 * Valid numbers: available (reserved only when asked for by number), and not
 * one the dialling party already dials in a live session — the invariant that
 * lets one number serve thousands of sessions. Among valid numbers:
 *   1. sticky: the number this party dialled to reach this counterparty last
 *      time, unless it has since been lent to reach someone else (it is that
 *      someone's number now, in the party's call log);
 *   2. numbers local to the dialling party first: sharing its country calling
 *      code, that is its numbering plan (+44 is GB, GG, JE and IM alike; +1
 *      the whole NANP), whatever region libphonenumber names for each;
 *   3. least recently used by the dialling party (never used first): cool-off,
 *      so an old counterparty's number is the last to be lent to a new one;
 *   4. the lowest number, so the choice is deterministic.
 */
export interface PoolCandidate {
  number: string;
  state: PoolState;
}

/** A pool number with its calling code, worked out once per pool change. */
export interface PoolEntry extends PoolCandidate {
  readonly callingCode: string | undefined;
}

/** The pool as allocation reads it: in ascending number order, and by number. Built once per pool change. */
export interface PoolView {
  readonly candidates: readonly PoolEntry[];
  readonly byNumber: ReadonlyMap<string, PoolEntry>;
}

export function poolView(candidates: Iterable<PoolCandidate>): PoolView {
  const sorted = [...candidates]
    .map((c): PoolEntry => ({ number: c.number, state: c.state, callingCode: callingCodeOf(c.number) }))
    .sort((a, b) => (a.number < b.number ? -1 : a.number > b.number ? 1 : 0));
  return { candidates: sorted, byNumber: new Map(sorted.map((c) => [c.number, c])) };
}

export interface AllocationFacts {
  pool: PoolView;
  /** Numbers the dialling party dials in its live sessions. */
  busy: ReadonlySet<string>;
  /** The dialling party's country calling code (callingCodeOf its number), if known. */
  callingCode: string | undefined;
  /** Number -> when the dialling party last had it lent. */
  lastUsed: ReadonlyMap<string, number>;
  /** The number this party used to reach this counterparty last time. */
  sticky: string | undefined;
}

export function chooseMaskedNumber(facts: AllocationFacts): string | undefined {
  const { pool, busy, callingCode, lastUsed, sticky } = facts;
  if (sticky !== undefined && pool.byNumber.get(sticky)?.state === 'available' && !busy.has(sticky)) return sticky;
  let best: PoolEntry | undefined;
  let bestUsed = 0;
  for (const candidate of pool.candidates) {
    if (candidate.state !== 'available' || busy.has(candidate.number)) continue;
    const used = lastUsed.get(candidate.number) ?? -Infinity;
    // In number order, the first never-used local number beats all that
    // follow: most parties stop after a few candidates.
    if (used === -Infinity && callingCode !== undefined && candidate.callingCode === callingCode) return candidate.number;
    if (best === undefined || better(candidate, used, best, bestUsed, callingCode)) {
      best = candidate;
      bestUsed = used;
    }
  }
  return best?.number;
}

function better(a: PoolEntry, aUsed: number, b: PoolEntry, bUsed: number, callingCode: string | undefined): boolean {
  const aLocal = callingCode !== undefined && a.callingCode === callingCode;
  const bLocal = callingCode !== undefined && b.callingCode === callingCode;
  if (aLocal !== bLocal) return aLocal;
  if (aUsed !== bUsed) return aUsed < bUsed;
  return a.number < b.number;
}

/** Why a requested number cannot be lent, or undefined when it can. */
export function requestedNumberProblem(
  candidate: PoolCandidate | undefined,
  busy: ReadonlySet<string>,
): { code: ErrorCode; reason: string } | undefined {
  if (candidate === undefined) return { code: ErrorCode.NotInPool, reason: 'is not in the pool' };
  if (candidate.state === 'retired') return { code: ErrorCode.NumberUnavailable, reason: 'is retired' };
  if (busy.has(candidate.number)) {
    return { code: ErrorCode.NumberUnavailable, reason: 'is already dialled by that party in another live session' };
  }
  return undefined;
}
