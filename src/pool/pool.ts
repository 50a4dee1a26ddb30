import type { Db } from '../store/db.js';
import { writeTransaction } from '../store/db.js';
import { perConnection } from '../store/statements.js';
import { ErrorCode, VnumError } from '../errors.js';
import { parseCountry, parseNumber, type E164 } from '../numbers/normalise.js';
import { countryCallingCode } from '../numbers/plan.js';

export const POOL_STATES = ['available', 'reserved', 'retired'] as const;
export type PoolState = (typeof POOL_STATES)[number];

export interface PoolNumber {
  number: E164;
  country: string;
  state: PoolState;
  addedAt: number;
}

export interface PoolEntryInput {
  number: string;
  country?: string | undefined;
  state?: PoolState | undefined;
  /** Where the entry came from, for error messages (a CSV line). */
  line?: number;
}

/** A number whose state stayed as it was although the entry asked for another one (or named none), and why. */
export interface KeptState {
  number: E164;
  state: PoolState;
  reason: string;
}

export interface PoolChange {
  added: number;
  updated: number;
  unchanged: number;
  /** Numbers whose state the import rule kept (see importedState); always empty for `pool add`. */
  kept: KeptState[];
}

interface ValidEntry {
  number: E164;
  country: string;
  /** As the entry named it; undefined: it named none. */
  state: PoolState | undefined;
  /** "line N: " for messages, or "". */
  where: string;
}

/** What a change does to a number's state: the state it gets, and why it kept another than asked, if it did. */
export type StateRule = (current: PoolState | undefined, named: PoolState | undefined) => { state: PoolState; kept?: string };

/** An operator's own command (`pool add`): the state it names (available unless said otherwise), always. */
export const operatorState: StateRule = (_current, named) => ({ state: named ?? 'available' });

/**
 * A provider's export (`pool import`, and `pool sync` after it) never undoes
 * the operator:
 *   - a new number gets the state its row names, else available;
 *   - a row that names no state never changes a number's state (a number
 *     retired because the carrier is taking it back, or reserved for
 *     someone, stays so after the nightly import);
 *   - no row puts a retired number back in service, whatever it names: only
 *     the operator does that, with `pool add`;
 *   - otherwise a row that names a state sets it (reserving or retiring by
 *     import is the operator speaking through their own file).
 */
export const importedState: StateRule = (current, named) => {
  if (current === undefined) return { state: named ?? 'available' };
  if (named === undefined) {
    return current === 'available' ? { state: current } : { state: current, kept: 'the row names no state' };
  }
  if (current === 'retired' && named !== 'retired') {
    return { state: current, kept: 'an import never puts a retired number back in service; "vnum pool add" does' };
  }
  return { state: named };
};

/**
 * Add or update pool numbers, each getting the state `rule` gives it. Every
 * entry is validated before anything is written; then all of it is one
 * transaction. A number already there with the same country and state is
 * unchanged, so re-importing a file is a no-op.
 *
 * A party's real number must never become a virtual number: it would be
 * lent to strangers as someone's masked number. That check reads the
 * sessions inside the write transaction, so a session another process
 * creates meanwhile is seen (its create refuses a pool number the same way).
 */
export function addToPool(
  db: Db,
  entries: PoolEntryInput[],
  options: { defaultCountry?: string | undefined; now: number; rule?: StateRule },
): PoolChange {
  const rule = options.rule ?? operatorState;
  const valid = validateEntries(entries, options.defaultCountry);
  const isParty = db.prepare<[string], number>('SELECT 1 FROM bridge WHERE caller = ? LIMIT 1').pluck();
  const select = db.prepare<[string], { country: string; state: PoolState }>('SELECT country, state FROM pool_number WHERE number = ?');
  const insert = db.prepare('INSERT INTO pool_number (number, country, state, added_at) VALUES (?, ?, ?, ?)');
  const update = db.prepare('UPDATE pool_number SET country = ?, state = ? WHERE number = ?');
  return writeTransaction(db, () => {
    for (const entry of valid) {
      if (isParty.get(entry.number)) {
        throw new VnumError(
          ErrorCode.PoolConflict,
          `${entry.where}${entry.number} is a party's real number in a session; it cannot be a virtual number`,
        );
      }
    }
    const change: PoolChange = { added: 0, updated: 0, unchanged: 0, kept: [] };
    for (const entry of valid) {
      const existing = select.get(entry.number);
      const { state, kept } = rule(existing?.state, entry.state);
      if (kept !== undefined) change.kept.push({ number: entry.number, state, reason: kept });
      if (!existing) {
        insert.run(entry.number, entry.country, state, options.now);
        change.added++;
      } else if (existing.country !== entry.country || existing.state !== state) {
        update.run(entry.country, state, entry.number);
        change.updated++;
      } else {
        change.unchanged++;
      }
    }
    if (change.added + change.updated > 0) bumpPoolRevision(db);
    return change;
  });
}

function validateEntries(entries: PoolEntryInput[], defaultCountry: string | undefined): ValidEntry[] {
  const seen = new Map<string, string>();
  return entries.map((entry) => {
    const where = entry.line !== undefined ? `line ${entry.line}: ` : '';
    try {
      const given = parseCountry(entry.country ?? defaultCountry);
      const parsed = parseNumber(entry.number, given);
      // A country given for the number must share its numbering plan: +447911… is a
      // GB number as much as a Guernsey one (libphonenumber says GG); it is not FR's.
      if (entry.country !== undefined && given !== undefined && countryCallingCode(given) !== parsed.callingCode) {
        throw new VnumError(
          ErrorCode.InvalidArgument,
          `number ${parsed.e164} is in the +${parsed.callingCode} numbering plan (${parsed.country ?? 'no country'}), not ${given}'s (+${countryCallingCode(given)})`,
        );
      }
      // The country the operator gave, else the region libphonenumber names, else the default.
      const country = (entry.country !== undefined ? given : undefined) ?? parsed.country ?? given;
      if (country === undefined) {
        throw new VnumError(ErrorCode.InvalidArgument, `cannot tell which country ${parsed.e164} belongs to: give its country`);
      }
      const state = entry.state;
      const previous = seen.get(parsed.e164);
      if (previous !== undefined && previous !== `${country}/${state ?? ''}`) {
        throw new VnumError(ErrorCode.InvalidArgument, `${parsed.e164} is listed twice with different country or state`);
      }
      seen.set(parsed.e164, `${country}/${state ?? ''}`);
      return { number: parsed.e164, country, state, where };
    } catch (e) {
      if (e instanceof VnumError && where) throw new VnumError(e.code, where + e.message);
      throw e;
    }
  });
}

export function listPool(db: Db): PoolNumber[] {
  return db
    .prepare<[], { number: E164; country: string; state: PoolState; added_at: number }>(
      'SELECT number, country, state, added_at FROM pool_number ORDER BY number',
    )
    .all()
    .map((row) => ({ number: row.number, country: row.country, state: row.state, addedAt: row.added_at }));
}

/** Retired numbers get no new sessions; sessions already using them keep routing until they end. */
export function retireNumber(db: Db, number: E164): { changed: boolean } {
  return writeTransaction(db, () => {
    const row = db.prepare<[string], { state: PoolState }>('SELECT state FROM pool_number WHERE number = ?').get(number);
    if (!row) throw new VnumError(ErrorCode.NotInPool, `${number} is not in the pool`);
    if (row.state === 'retired') return { changed: false };
    db.prepare("UPDATE pool_number SET state = 'retired' WHERE number = ?").run(number);
    bumpPoolRevision(db);
    return { changed: true };
  });
}

/** A counter every change to the pool moves: a process caches the pool and notices any change with one point read. */
const revisionStatements = perConnection((db) => ({
  read: db.prepare<[], number>("SELECT value FROM meta WHERE key = 'pool_revision'").pluck(),
  bump: db.prepare("UPDATE meta SET value = value + 1 WHERE key = 'pool_revision'"),
}));

export function poolRevision(db: Db): number {
  return revisionStatements(db).read.get() ?? 0;
}

function bumpPoolRevision(db: Db): void {
  revisionStatements(db).bump.run();
}
