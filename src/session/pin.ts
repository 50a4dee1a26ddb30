/**
 * PINs: what a party types when it calls from a phone that is not its own
 * (withheld, a relative's, a switchboard). Each party of a session gets one at
 * create, for the number it dials; a PIN typed on that number bridges the call
 * as if that party had called (docs/routing.md, "PINs").
 *
 * Length from the guessing arithmetic (README, "PINs"): with N live PINs on a
 * number and L digits, one random guess hits one of them with probability
 * N / 10^L. A new PIN takes the shortest L with (N + 1) / 10^L at most the
 * operator's bound, never under PIN_MIN_DIGITS or over PIN_MAX_DIGITS. N is
 * read from the number's tally (`pin_tally`), kept at every issue and sweep:
 * its rows, live or ended but not yet swept, so never fewer than the live.
 *
 * Stored as an HMAC under a random key of the database's own (pin_key), never
 * as digits: a PIN is not in any dump or query result, and the lookup compares
 * digests, so its timing says nothing about the digits. The key lives in the
 * same file, so this is no defence against someone who has the database (10^L
 * HMACs are quick); that file holds every real number anyway (operator guide).
 */
import { createHmac, randomInt } from 'node:crypto';
import type { Db } from '../store/db.js';
import { perConnection } from '../store/statements.js';
import { ErrorCode, VnumError } from '../errors.js';
import type { E164 } from '../numbers/normalise.js';

export const PIN_MIN_DIGITS = 6;
export const PIN_MAX_DIGITS = 12;
/** The default bound on one random guess succeeding: one in a million. */
export const DEFAULT_PIN_GUESS_BOUND = 1e-6;
export const PIN_GUESS_BOUND_LIMITS = Object.freeze({ min: 1e-12, max: 1e-3 });

/** Digits only, within the lengths vnum issues: anything else is a wrong PIN without a lookup. */
export const PIN_SHAPE = new RegExp(`^[0-9]{${PIN_MIN_DIGITS},${PIN_MAX_DIGITS}}$`);

/** The shortest length keeping one guess under `bound` once this PIN joins `live` others. */
export function pinDigits(live: number, bound: number): number {
  if (!(bound >= PIN_GUESS_BOUND_LIMITS.min && bound <= PIN_GUESS_BOUND_LIMITS.max)) {
    throw new VnumError(ErrorCode.InvalidArgument, `the PIN guess bound must be from ${PIN_GUESS_BOUND_LIMITS.min} to ${PIN_GUESS_BOUND_LIMITS.max}`);
  }
  // Integer steps: no floating log10 at a power of ten.
  let digits = PIN_MIN_DIGITS;
  while (digits < PIN_MAX_DIGITS && (live + 1) / 10 ** digits > bound) digits++;
  return digits;
}

/**
 * How many PINs of a number one issue looks at for ended sessions. The purge
 * is a sweep, not a scan: each issue reads the next PIN_SWEEP rows after the
 * number's cursor (`pin_tally.swept_to`, in digest order) and deletes those
 * whose session has ended, so an issue costs the same at 10 or 100,000 live
 * PINs on the number. One issue adds one row and looks at PIN_SWEEP, so the
 * cursor passes every row within (rows / (PIN_SWEEP - 1)) issues: an ended
 * PIN lingers for about that long, counted as live (its PIN length errs long,
 * never short).
 */
export const PIN_SWEEP = 16;

const statements = perConnection((db: Db) => ({
  key: db.prepare<[], Buffer>('SELECT key FROM pin_key WHERE id = 1').pluck(),
  tally: db.prepare<[string], { pins: number; swept_to: Buffer | null }>('SELECT pins, swept_to FROM pin_tally WHERE dialled = ?'),
  look: db.prepare<[string, Buffer], Buffer>(`SELECT digest FROM pin WHERE dialled = ? AND digest > ? ORDER BY digest LIMIT ${PIN_SWEEP}`).pluck(),
  // The rows of the sweep whose bridge no longer belongs to their session, or has ended: PINs of ended sessions.
  purge: db.prepare<{ dialled: string; from: Buffer; now: number }>(
    `DELETE FROM pin WHERE dialled = @dialled
        AND digest IN (SELECT digest FROM pin WHERE dialled = @dialled AND digest > @from ORDER BY digest LIMIT ${PIN_SWEEP})
        AND NOT EXISTS (SELECT 1 FROM bridge b WHERE b.caller = pin.caller AND b.dialled = pin.dialled AND b.sid = pin.sid
                                                 AND (b.ends_at IS NULL OR b.ends_at > @now))`,
  ),
  setTally: db.prepare<[string, number, Buffer | null]>(
    'INSERT INTO pin_tally (dialled, pins, swept_to) VALUES (?, ?, ?) ON CONFLICT (dialled) DO UPDATE SET pins = excluded.pins, swept_to = excluded.swept_to',
  ),
  insert: db.prepare<[string, Buffer, string, number | bigint]>(
    'INSERT INTO pin (dialled, digest, caller, sid) VALUES (?, ?, ?, ?) ON CONFLICT (dialled, digest) DO NOTHING',
  ),
}));

/** The start of a sweep: before every digest. */
export const SWEEP_START = Buffer.alloc(0);

const keys = new WeakMap<Db, Buffer>();

/** The database's PIN key (made by its migration). */
function pinKey(db: Db): Buffer {
  let key = keys.get(db);
  if (key === undefined) {
    key = statements(db).key.get();
    if (key === undefined) throw new VnumError(ErrorCode.Internal, 'the database has no PIN key');
    keys.set(db, key);
  }
  return key;
}

/** What the store keeps of a PIN. */
export function pinDigest(key: Buffer, pin: string): Buffer {
  return createHmac('sha256', key).update(pin).digest().subarray(0, 16);
}

/** The digest a typed PIN is looked up by. */
export function pinDigestFor(db: Db, pin: string): Buffer {
  return pinDigest(pinKey(db), pin);
}

/**
 * A new PIN for `caller` on `dialled` in session `sid`, unique among the live
 * PINs on that number; inside the create's write transaction. Returns the
 * digits: shown once, never stored.
 */
export function issuePin(db: Db, request: { dialled: E164; caller: E164; sid: number | bigint; now: number; bound: number }): string {
  const s = statements(db);
  const key = pinKey(db);
  // The sweep: the next PIN_SWEEP rows after the cursor, ended ones deleted; fewer than that means the end, start over.
  const tally = s.tally.get(request.dialled);
  const from = tally?.swept_to ?? SWEEP_START;
  const looked = s.look.all(request.dialled, from);
  const gone = looked.length === 0 ? 0 : s.purge.run({ dialled: request.dialled, from, now: request.now }).changes;
  const pins = (tally?.pins ?? 0) - gone;
  const digits = pinDigits(pins, request.bound);
  // A clash with a live PIN is as likely as a guess (at most the bound): a handful of tries always suffices.
  for (let attempt = 0; attempt < PIN_TRIES; attempt++) {
    const pin = randomPin(digits);
    if (s.insert.run(request.dialled, pinDigest(key, pin), request.caller, request.sid).changes === 1) {
      s.setTally.run(request.dialled, pins + 1, looked.length === PIN_SWEEP ? looked[looked.length - 1]! : null);
      return pin;
    }
  }
  throw noFreePin(digits, request.dialled);
}

/** How many random PINs an issue tries before giving up (a clash is as likely as a guess). */
export const PIN_TRIES = 32;

/** A uniformly random PIN of `digits` digits (leading zeros kept). */
export function randomPin(digits: number): string {
  return String(randomInt(0, 10 ** digits)).padStart(digits, '0');
}

export function noFreePin(digits: number, dialled: string): VnumError {
  return new VnumError(ErrorCode.Internal, `no free PIN of ${digits} digits on ${dialled} after ${PIN_TRIES} tries`);
}
