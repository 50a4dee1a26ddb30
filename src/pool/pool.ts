import type { Db } from '../store/db.js';
import { writeTransaction } from '../store/db.js';
import { ErrorCode, VnumError } from '../errors.js';
import { parseCountry, parseNumber, type E164 } from '../numbers/normalise.js';

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

export interface PoolChange {
  added: number;
  updated: number;
  unchanged: number;
}

interface ValidEntry {
  number: E164;
  country: string;
  state: PoolState;
  /** "line N: " for messages, or "". */
  where: string;
}

/**
 * Add or update pool numbers. Every entry is validated before anything is
 * written; then all of it is one transaction. Adding a number that is already
 * there with the same country and state changes nothing, so re-importing a
 * file is a no-op.
 *
 * A party's real number must never become a virtual number: it would be
 * lent to strangers as someone's masked number. That check reads the
 * sessions inside the write transaction, so a session another process
 * creates meanwhile is seen (its create refuses a pool number the same way).
 */
export function addToPool(db: Db, entries: PoolEntryInput[], options: { defaultCountry?: string | undefined; now: number }): PoolChange {
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
    const change: PoolChange = { added: 0, updated: 0, unchanged: 0 };
    for (const entry of valid) {
      const existing = select.get(entry.number);
      if (!existing) {
        insert.run(entry.number, entry.country, entry.state, options.now);
        change.added++;
      } else if (existing.country !== entry.country || existing.state !== entry.state) {
        update.run(entry.country, entry.state, entry.number);
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
      if (entry.country !== undefined && parsed.country !== undefined && parsed.country !== given) {
        throw new VnumError(ErrorCode.InvalidArgument, `number ${parsed.e164} belongs to ${parsed.country}, not ${given}`);
      }
      const country = parsed.country ?? given;
      if (country === undefined) {
        throw new VnumError(ErrorCode.InvalidArgument, `cannot tell which country ${parsed.e164} belongs to: give its country`);
      }
      const state = entry.state ?? 'available';
      const previous = seen.get(parsed.e164);
      if (previous !== undefined && previous !== `${country}/${state}`) {
        throw new VnumError(ErrorCode.InvalidArgument, `${parsed.e164} is listed twice with different country or state`);
      }
      seen.set(parsed.e164, `${country}/${state}`);
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

/** Lets long-running processes cache the pool and notice any change with one point read. */
export function poolRevision(db: Db): number {
  return (db.prepare("SELECT value FROM meta WHERE key = 'pool_revision'").pluck().get() as number) ?? 0;
}

function bumpPoolRevision(db: Db): void {
  db.prepare("UPDATE meta SET value = value + 1 WHERE key = 'pool_revision'").run();
}
