/**
 * What a change to the pool does, decided before anything is written: the
 * state rule (who may set which state) and the plan built from it. Pure: the
 * pool as it is and the entries in, the plan out; src/pool/pool.ts reads and
 * writes the store around it.
 */
import type { E164 } from '../numbers/normalise.js';
import type { KeptState, PoolState } from './states.js';

/** An entry checked and normalised (validateEntries). */
export interface ValidEntry {
  number: E164;
  /** The country it names, else the region libphonenumber names, else the default country. */
  country: string;
  /** Whether the entry named that country (a row without one never changes a number's country). */
  countryNamed: boolean;
  /** As the entry named it; undefined: it named none. */
  state: PoolState | undefined;
  /** "line N: " for messages, or "". */
  where: string;
}

/**
 * Who changes the pool: the operator's own command (`pool add`), the
 * operator's file (`pool import`), or the provider's export (`pool sync`).
 */
export type PoolWriter = 'operator' | 'import' | 'sync';

/** Who retired a retired number: the operator (by hand or through their own file), or a sync. */
export type RetiredBy = 'operator' | 'sync';

/** A number as the pool holds it. `retiredBy` is null unless it is retired. */
export interface HeldNumber {
  country: string;
  state: PoolState;
  retiredBy: RetiredBy | null;
}

/** A sync's export no longer lists the number (`pool sync --retire-missing`). */
export const UNLISTED = 'unlisted';

/** What an entry says of a number: the state it names, none (undefined), or UNLISTED. */
export type Listing = PoolState | undefined | typeof UNLISTED;

export interface StateDecision {
  state: PoolState;
  retiredBy: RetiredBy | null;
  /** Why it gets that state, when that is a change (a new number, another state). */
  why?: string;
  /** Why it keeps another state than the entry asked (or named none), when it does. */
  kept?: string;
}

/** An operator's own command (`pool add`): the state it names (available unless said otherwise), always. */
export function operatorState(held: HeldNumber | undefined, named: PoolState | undefined): StateDecision {
  const state = named ?? 'available';
  return { state, retiredBy: state === 'retired' ? 'operator' : null, why: held === undefined ? 'added' : `set ${state}` };
}

const NEVER_BACK_BY_IMPORT = 'an import never puts a retired number back in service; "vnum pool add" does';
const NEVER_BACK_BY_SYNC = 'retired by the operator: a sync never puts it back in service; "vnum pool add" does';
const NEVER_RESERVED_BY_SYNC = 'a sync never changes a reserved number';

/**
 * The one rule by which a provider's export changes a number's state, for
 * `pool import` (the operator's own file) and `pool sync` (the provider's,
 * fetched unattended). Neither ever undoes the operator:
 *   - a new number gets the state its row names, else available;
 *   - a row that names no state never changes a number's state (a number
 *     retired because the carrier is taking it back, or reserved for
 *     someone, stays so after the nightly import);
 *   - no row puts a number the operator retired back in service, whatever it
 *     names: only the operator does that, with `pool add`;
 *   - import: otherwise a row that names a state sets it (reserving or
 *     retiring by import is the operator speaking through their own file);
 *   - sync: a reserved number is the operator's and never changes, whatever
 *     the export says or omits; an available number the export names
 *     reserved or retired, or no longer lists (with --retire-missing), takes
 *     that state; a number a sync retired comes back when the provider lists
 *     it again (the export that dropped it was wrong, or cut short).
 */
export function importedState(held: HeldNumber | undefined, listing: Listing, writer: 'import' | 'sync'): StateDecision {
  const retiredBy = (state: PoolState): RetiredBy | null => (state === 'retired' ? (writer === 'sync' ? 'sync' : 'operator') : null);
  if (held === undefined) {
    if (listing === UNLISTED) throw new Error('a number the pool does not hold cannot be unlisted');
    const state = listing ?? 'available';
    return { state, retiredBy: retiredBy(state), why: listing === undefined ? 'new in the export' : `new in the export, named ${state}` };
  }
  const keep = (kept?: string): StateDecision => ({ state: held.state, retiredBy: held.retiredBy, ...(kept !== undefined ? { kept } : {}) });
  if (writer === 'import') {
    if (listing === UNLISTED) return keep();
    if (listing === undefined) return held.state === 'available' ? keep() : keep('the row names no state');
    if (held.state === 'retired') {
      if (listing !== 'retired') return keep(NEVER_BACK_BY_IMPORT);
      // The operator's own file confirms it: from now on no sync brings it back.
      return held.retiredBy === 'operator' ? keep() : { state: 'retired', retiredBy: 'operator', why: 'the row names it retired (a sync had retired it)' };
    }
    if (listing === held.state) return keep();
    return { state: listing, retiredBy: retiredBy(listing), why: `the row names it ${listing}` };
  }
  // writer === 'sync'
  switch (held.state) {
    case 'retired':
      if (listing === UNLISTED || listing === 'retired') return keep();
      if (held.retiredBy === 'sync') {
        const state = listing ?? 'available';
        return { state, retiredBy: null, why: 'listed again; a sync had retired it' };
      }
      return keep(NEVER_BACK_BY_SYNC);
    case 'reserved':
      if (listing === undefined || listing === 'reserved') return keep();
      return keep(listing === UNLISTED ? `${NEVER_RESERVED_BY_SYNC}; the provider no longer lists it` : `${NEVER_RESERVED_BY_SYNC}; the export names it ${listing}`);
    case 'available':
      if (listing === undefined || listing === 'available') return keep();
      if (listing === UNLISTED) return { state: 'retired', retiredBy: 'sync', why: 'the provider no longer lists it' };
      return { state: listing, retiredBy: retiredBy(listing), why: `the export names it ${listing}` };
  }
}

export interface PlannedChange {
  number: E164;
  /** null: a number new to the pool. */
  from: { country: string; state: PoolState } | null;
  to: { country: string; state: PoolState };
  retiredBy: RetiredBy | null;
  why: string;
}

export interface PoolPlan {
  /** The distinct numbers the entries name. */
  listed: number;
  /** Every number whose row is written (added, or its country, state or retirer changed), in number order. */
  changes: PlannedChange[];
  /** Listed numbers left as they were (kept ones included). */
  unchanged: number;
  /** Numbers whose state the rule kept, and why (see importedState). */
  kept: KeptState[];
  /** Sync without --retire-missing: numbers in service the export does not list, left as they are. */
  unlisted: Array<{ number: E164; state: PoolState }>;
}

export interface PlanOptions {
  writer: PoolWriter;
  /**
   * Sync only, with `held` the whole pool: what becomes of numbers the export
   * does not list: `retire` (the rule decides; --retire-missing) or `keep`
   * (listed in `unlisted`). Unset: they are not looked at.
   */
  unlisted?: 'retire' | 'keep';
}

/**
 * The plan for `entries` against the pool as `held` holds it (every number
 * the entries name, and the whole pool when `unlisted` is set). A number
 * listed twice counts once (validateEntries has refused conflicting
 * duplicates). A row that names no country never changes a number's
 * country; a sync never does (a number does not change country, and one in
 * the same numbering plan, such as GB for a number libphonenumber calls GG,
 * is the operator's choice).
 */
export function planPoolChange(held: ReadonlyMap<string, HeldNumber>, entries: readonly ValidEntry[], options: PlanOptions): PoolPlan {
  const { writer } = options;
  const plan: PoolPlan = { listed: 0, changes: [], unchanged: 0, kept: [], unlisted: [] };
  const decide = (number: E164, now: HeldNumber | undefined, listing: Listing, country: string) => {
    const decision = writer === 'operator' ? operatorState(now, listing === UNLISTED ? undefined : listing) : importedState(now, listing, writer);
    if (decision.kept !== undefined) plan.kept.push({ number, state: decision.state, reason: decision.kept });
    if (now !== undefined && now.country === country && now.state === decision.state && now.retiredBy === decision.retiredBy) {
      if (listing !== UNLISTED) plan.unchanged++;
      return;
    }
    const why = decision.why ?? (now !== undefined && now.country !== country ? `country ${now.country} -> ${country}` : 'updated');
    plan.changes.push({
      number,
      from: now === undefined ? null : { country: now.country, state: now.state },
      to: { country, state: decision.state },
      retiredBy: decision.retiredBy,
      why,
    });
  };
  const listed = new Set<string>();
  for (const entry of entries) {
    if (listed.has(entry.number)) continue;
    listed.add(entry.number);
    const now = held.get(entry.number);
    const country = now === undefined || (entry.countryNamed && writer !== 'sync') ? entry.country : now.country;
    decide(entry.number, now, entry.state, country);
  }
  plan.listed = listed.size;
  if (options.unlisted !== undefined) {
    for (const [number, now] of held) {
      if (listed.has(number)) continue;
      if (now.state === 'retired') continue;
      if (options.unlisted === 'retire') decide(number as E164, now, UNLISTED, now.country);
      else plan.unlisted.push({ number: number as E164, state: now.state });
    }
  }
  const byNumber = (a: { number: string }, b: { number: string }) => (a.number < b.number ? -1 : a.number > b.number ? 1 : 0);
  plan.changes.sort(byNumber);
  plan.kept.sort(byNumber);
  plan.unlisted.sort(byNumber);
  return plan;
}
