import type { Command } from 'commander';
import { isVnumError, VnumError } from '../errors.js';
import { openDb, resolveDbPath, storeError, type Db, type OpenMode } from '../store/db.js';
import { parseCountry } from '../numbers/normalise.js';
import { parseNumberPolicy, POLICY_ENV, type NumberPolicy } from '../numbers/policy.js';

/** Options every command understands, whichever level they were given at. */
export interface GlobalOptions {
  db?: string;
  country?: string;
  allowedNumberTypes?: string;
}

export function globalOptions(command: Command): GlobalOptions {
  return command.optsWithGlobals<GlobalOptions>();
}

/**
 * Run `work` on the database: `create` for commands that add (a missing
 * database is created), `write` for commands that change what exists,
 * `read` for commands that only look (never creates or writes anything).
 * SQLite's errors come out as ours (busy, disk full, …).
 */
export function withDb<T>(command: Command, work: (db: Db) => T, mode: OpenMode = 'create'): T {
  const path = resolveDbPath(globalOptions(command).db);
  const db = openDb(path, { mode });
  try {
    return work(db);
  } catch (e) {
    throw storeError(e, path);
  } finally {
    db.close();
  }
}

/** `--country`, else `VNUM_DEFAULT_COUNTRY`: the country for numbers written without `+`. */
export function defaultCountry(command: Command): string | undefined {
  return parseCountry(globalOptions(command).country ?? process.env.VNUM_DEFAULT_COUNTRY);
}

/** `--allowed-number-types`, else `VNUM_ALLOWED_NUMBER_TYPES`, else the default number-type policy. */
export function numberPolicy(command: Command): NumberPolicy {
  const flag = globalOptions(command).allowedNumberTypes;
  // Read by its literal name (POLICY_ENV): the ship tests hold the documented variables to what the code reads.
  const text = flag ?? process.env.VNUM_ALLOWED_NUMBER_TYPES;
  try {
    return parseNumberPolicy(text);
  } catch (e) {
    // Name where it came from: under systemd or Docker the variable is the only clue.
    if (isVnumError(e)) throw new VnumError(e.code, `invalid ${flag !== undefined ? '--allowed-number-types' : POLICY_ENV} "${text}": ${e.message}`);
    throw e;
  }
}

/** The option that sets it, with the same help on every command that takes it. */
export const ALLOWED_NUMBER_TYPES_OPTION = [
  '--allowed-number-types <list>',
  `kinds of number a party may have (${POLICY_ENV}; default: fixed-line, mobile, fixed-line-or-mobile, voip); "default,toll-free" widens the default`,
] as const;
