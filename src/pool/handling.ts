/**
 * What a pool number does with a caller that has no live bridge on it
 * (docs/routing.md, "Callers without a bridge"): whether it asks for a PIN,
 * and what a refused caller gets. Each is set per number or left to the
 * router's default (NULL in the store, null here).
 */
import type { Db } from '../store/db.js';
import { writeTransaction } from '../store/db.js';
import { perConnection } from '../store/statements.js';
import { ErrorCode, VnumError } from '../errors.js';
import type { E164 } from '../numbers/normalise.js';

/** off: nobody; withheld: callers whose number is withheld or not a number; all: every caller without a bridge. */
export const PIN_MODES = ['off', 'withheld', 'all'] as const;
export type PinMode = (typeof PIN_MODES)[number];

/** announce: an announcement and a hang-up; fallback: the operator's desk, dialled through the trunk. */
export const OUT_OF_SESSION_MODES = ['announce', 'fallback'] as const;
export type OutOfSessionMode = (typeof OUT_OF_SESSION_MODES)[number];

/** A number's own handling; null: the router's default. */
export interface NumberHandling {
  pin: PinMode | null;
  outOfSession: OutOfSessionMode | null;
  /** The desk a refused caller is put through to; null: the router's default desk. */
  fallback: E164 | null;
}

/** A change: a value sets it, null returns it to the router's default, undefined leaves it. */
export type HandlingChange = { [K in keyof NumberHandling]?: NumberHandling[K] };

/** The columns of pool_number that hold it. */
export interface HandlingRow {
  pin_mode: PinMode | null;
  out_of_session: OutOfSessionMode | null;
  fallback: E164 | null;
}

const statements = perConnection((db: Db) => ({
  read: db.prepare<[string], HandlingRow>('SELECT pin_mode, out_of_session, fallback FROM pool_number WHERE number = ?'),
  inPool: db.prepare<[string], number>('SELECT 1 FROM pool_number WHERE number = ?').pluck(),
  write: db.prepare<[PinMode | null, OutOfSessionMode | null, string | null, string]>(
    'UPDATE pool_number SET pin_mode = ?, out_of_session = ?, fallback = ? WHERE number = ?',
  ),
}));

export function handlingOf(row: HandlingRow): NumberHandling {
  return { pin: row.pin_mode, outOfSession: row.out_of_session, fallback: row.fallback };
}

/** A pool number's handling; undefined when it is not in the pool. */
export function numberHandling(db: Db, number: E164): NumberHandling | undefined {
  const row = statements(db).read.get(number);
  return row === undefined ? undefined : handlingOf(row);
}

/**
 * Change a pool number's handling. The desk must not be a pool number: the
 * trunk would hand the call straight back to vnum.
 */
export function setNumberHandling(db: Db, number: E164, change: HandlingChange): { handling: NumberHandling; changed: boolean } {
  checkHandlingChange(change);
  const s = statements(db);
  return writeTransaction(db, () => {
    const row = s.read.get(number);
    const result = changedHandling(number, row === undefined ? undefined : handlingOf(row), change, change.fallback != null && s.inPool.get(change.fallback) !== undefined);
    if (result.changed) s.write.run(result.handling.pin, result.handling.outOfSession, result.handling.fallback, number);
    return result;
  });
}

/** A change's modes judged before any store is touched. */
export function checkHandlingChange(change: HandlingChange): void {
  if (change.pin != null && !PIN_MODES.includes(change.pin)) {
    throw new VnumError(ErrorCode.InvalidArgument, `unknown PIN mode "${String(change.pin).slice(0, 20)}": use ${PIN_MODES.join(', ')}`);
  }
  if (change.outOfSession != null && !OUT_OF_SESSION_MODES.includes(change.outOfSession)) {
    throw new VnumError(ErrorCode.InvalidArgument, `unknown out-of-session handling "${String(change.outOfSession).slice(0, 20)}": use ${OUT_OF_SESSION_MODES.join(', ')}`);
  }
}

/**
 * What a change makes of a number's handling (pure): `before` is undefined when the number is not in the
 * pool; `deskInPool` whether the desk it names is a pool number.
 */
export function changedHandling(
  number: E164,
  before: NumberHandling | undefined,
  change: HandlingChange,
  deskInPool: boolean,
): { handling: NumberHandling; changed: boolean } {
  if (before === undefined) throw new VnumError(ErrorCode.NotInPool, `${number} is not in the pool`);
  if (deskInPool) {
    throw new VnumError(ErrorCode.PoolConflict, `the desk ${change.fallback} is a pool number: the trunk would hand its calls back to vnum`);
  }
  const after: NumberHandling = {
    pin: change.pin === undefined ? before.pin : change.pin,
    outOfSession: change.outOfSession === undefined ? before.outOfSession : change.outOfSession,
    fallback: change.fallback === undefined ? before.fallback : change.fallback,
  };
  const changed = after.pin !== before.pin || after.outOfSession !== before.outOfSession || after.fallback !== before.fallback;
  return { handling: after, changed };
}
