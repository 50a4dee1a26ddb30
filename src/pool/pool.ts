import type { Db } from '../store/db.js';
import { writeTransaction } from '../store/db.js';
import { perConnection } from '../store/statements.js';
import { ErrorCode, VnumError } from '../errors.js';
import { redactNumber } from '../log.js';
import { parseCountry, parseNumber, type E164 } from '../numbers/normalise.js';
import { countryCallingCode } from '../numbers/plan.js';
import { planPoolChange, type HeldNumber, type PoolPlan, type PoolWriter, type ValidEntry } from './plan.js';
import type { KeptState, PoolState } from './states.js';
import { handlingOf, type HandlingRow, type NumberHandling } from './handling.js';

export { POOL_STATES, type KeptState, type PoolState } from './states.js';

export interface PoolNumber {
  number: E164;
  country: string;
  state: PoolState;
  addedAt: number;
  /** How it handles callers without a bridge (./handling.ts); each null: the router's default. */
  handling: NumberHandling;
}

export interface PoolEntryInput {
  number: string;
  country?: string | undefined;
  state?: PoolState | undefined;
  /** Where the entry came from, for error messages: a CSV line, */
  line?: number;
  /** or any other place (`item 3` of a JSON export); `at` wins over `line`. */
  at?: string;
}

export interface PoolChange {
  added: number;
  updated: number;
  unchanged: number;
  /** Numbers whose state the import rule kept (importedState, src/pool/plan.ts); always empty for `pool add`. */
  kept: KeptState[];
}

/**
 * Add or update pool numbers, each getting the state the rule of `writer`
 * gives it (src/pool/plan.ts: `pool add` is the operator's word, `pool
 * import` never undoes the operator). Every entry is validated before
 * anything is written; then all of it is one transaction. A number already
 * there with the same country and state is unchanged, so re-importing a file
 * is a no-op.
 */
export function addToPool(
  db: Db,
  entries: PoolEntryInput[],
  options: { defaultCountry?: string | undefined; now: number; writer?: Exclude<PoolWriter, 'sync'> },
): PoolChange {
  const writer = options.writer ?? 'operator';
  const valid = validateEntries(entries, options.defaultCountry);
  return writeTransaction(db, () => {
    refuseParties(db, valid);
    const plan = planPoolChange(heldNumbers(db, valid), valid, { writer });
    applyPoolPlan(db, plan, options.now);
    const added = plan.changes.filter((c) => c.from === null).length;
    return { added, updated: plan.changes.length - added, unchanged: plan.unchanged, kept: plan.kept };
  });
}

/**
 * A party's real number must never become a virtual number: it would be
 * lent to strangers as someone's masked number. Called inside the write
 * transaction, so that a session another process creates meanwhile is seen
 * (its create refuses a pool number the same way).
 *
 * The refusal names the number only by its last 4 digits (as the log does)
 * and where it stands (a line, an item): it goes back to whoever offered it,
 * over the API a key that may only manage the pool, and to their logs, and it
 * tells that this number belongs to a party; the full number is not repeated.
 */
export function refuseParties(db: Db, valid: readonly ValidEntry[]): void {
  const isParty = db.prepare<[string], number>('SELECT 1 FROM bridge WHERE caller = ? LIMIT 1').pluck();
  for (const entry of valid) {
    if (isParty.get(entry.number)) {
      throw new VnumError(
        ErrorCode.PoolConflict,
        `${entry.where}${redactNumber(entry.number)} is a party's real number in a session; it cannot be a virtual number`,
      );
    }
  }
}

/** A pool number's row with whether a sync retired it, as HELD_SQL reads it (both stores). */
export interface HeldRow {
  number: string;
  country: string;
  state: PoolState;
  by_sync: number | boolean;
}

export const HELD_SQL = `SELECT p.number, p.country, p.state, s.number IS NOT NULL AS by_sync
  FROM pool_number p LEFT JOIN pool_retired_by_sync s ON s.number = p.number`;

export function heldNumber(row: HeldRow): HeldNumber {
  return { country: row.country, state: row.state, retiredBy: row.state !== 'retired' ? null : row.by_sync ? 'sync' : 'operator' };
}

/** The pool as a plan sees it: the numbers `entries` name, or (none given) all of it. */
export function heldNumbers(db: Db, entries?: ReadonlyArray<{ number: string }>): Map<string, HeldNumber> {
  const held = new Map<string, HeldNumber>();
  if (entries === undefined) {
    for (const row of db.prepare<[], HeldRow>(HELD_SQL).all()) held.set(row.number, heldNumber(row));
    return held;
  }
  const one = db.prepare<[string], HeldRow>(`${HELD_SQL} WHERE p.number = ?`);
  for (const entry of entries) {
    const row = one.get(entry.number);
    if (row) held.set(row.number, heldNumber(row));
  }
  return held;
}

/** Write a plan, inside the caller's write transaction. */
export function applyPoolPlan(db: Db, plan: PoolPlan, now: number): void {
  if (plan.changes.length === 0) return;
  const insert = db.prepare('INSERT INTO pool_number (number, country, state, added_at) VALUES (?, ?, ?, ?)');
  const update = db.prepare('UPDATE pool_number SET country = ?, state = ? WHERE number = ?');
  const markSync = db.prepare('INSERT OR IGNORE INTO pool_retired_by_sync (number, retired_at) VALUES (?, ?)');
  const unmarkSync = db.prepare('DELETE FROM pool_retired_by_sync WHERE number = ?');
  for (const change of plan.changes) {
    if (change.from === null) insert.run(change.number, change.to.country, change.to.state, now);
    else update.run(change.to.country, change.to.state, change.number);
    if (change.retiredBy === 'sync') markSync.run(change.number, now);
    else unmarkSync.run(change.number);
  }
  bumpPoolRevision(db);
}

/** Check and normalise every entry before anything is written; the first bad one is refused, naming where it is. */
export function validateEntries(entries: PoolEntryInput[], defaultCountry: string | undefined): ValidEntry[] {
  const seen = new Map<string, { key: string; at: string | undefined }>();
  return entries.map((entry) => {
    const at = entry.at ?? (entry.line !== undefined ? `line ${entry.line}` : undefined);
    const where = at !== undefined ? `${at}: ` : '';
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
      const key = `${country}/${state ?? ''}`;
      const previous = seen.get(parsed.e164);
      if (previous !== undefined && previous.key !== key) {
        const first = previous.at === undefined ? '' : ` (first at ${previous.at})`;
        throw new VnumError(ErrorCode.InvalidArgument, `${parsed.e164} is listed twice with different country or state${first}`);
      }
      if (previous === undefined) seen.set(parsed.e164, { key, at });
      return { number: parsed.e164, country, countryNamed: entry.country !== undefined, state, where };
    } catch (e) {
      if (e instanceof VnumError && where) throw new VnumError(e.code, where + e.message);
      throw e;
    }
  });
}

export interface PoolQuery {
  state?: PoolState | undefined;
  /** Only numbers after this one, in number order: the `next` of the page before. */
  after?: string | undefined;
  limit?: number | undefined;
}

/** The pool in number order (the primary key's): all of it, or a page. */
export function listPool(db: Db, query: PoolQuery = {}): PoolNumber[] {
  return db
    .prepare<Record<string, unknown>, { number: E164; country: string; state: PoolState; added_at: number } & HandlingRow>(
      `SELECT number, country, state, added_at, pin_mode, out_of_session, fallback FROM pool_number
        WHERE (@after IS NULL OR number > @after) AND (@state IS NULL OR state = @state)
        ORDER BY number LIMIT @limit`,
    )
    .all({ after: query.after ?? null, state: query.state ?? null, limit: query.limit ?? -1 })
    .map((row) => ({ number: row.number, country: row.country, state: row.state, addedAt: row.added_at, handling: handlingOf(row) }));
}

/** A page of the pool; `next` is where the following one starts (undefined on the last). */
export function poolPage(db: Db, query: PoolQuery & { limit: number }): { numbers: PoolNumber[]; more: boolean; next: string | undefined } {
  const rows = listPool(db, { ...query, limit: query.limit + 1 });
  const more = rows.length > query.limit;
  const numbers = rows.slice(0, query.limit);
  return { numbers, more, next: more ? numbers.at(-1)!.number : undefined };
}

/**
 * Retired numbers get no new sessions; sessions already using them keep
 * routing until they end. The operator's retirement is final for a sync: a
 * number a sync had retired becomes the operator's (`tookOverFromSync`), and
 * no sync puts it back in service.
 */
export function retireNumber(db: Db, number: E164): { changed: boolean; tookOverFromSync: boolean } {
  return writeTransaction(db, () => {
    const now = heldNumbers(db, [{ number }]).get(number);
    if (!now) throw new VnumError(ErrorCode.NotInPool, `${number} is not in the pool`);
    const tookOverFromSync = now.retiredBy === 'sync';
    if (tookOverFromSync) db.prepare('DELETE FROM pool_retired_by_sync WHERE number = ?').run(number);
    if (now.state === 'retired') return { changed: false, tookOverFromSync };
    db.prepare("UPDATE pool_number SET state = 'retired' WHERE number = ?").run(number);
    bumpPoolRevision(db);
    return { changed: true, tookOverFromSync };
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
