import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { isVnumError, VnumError } from '../errors.js';
import { openDb, resolveDbPath, storeError, type Db, type OpenMode } from '../store/db.js';
import { parseCountry } from '../numbers/normalise.js';
import { parseNumberPolicy, POLICY_ENV, type NumberPolicy } from '../numbers/policy.js';
import { refuseReplicaWrites } from '../replica/read-only.js';

/** Options every command understands, whichever level they were given at. */
export interface GlobalOptions {
  db?: string;
  country?: string;
  allowedNumberTypes?: string;
}

export function globalOptions(command: Command): GlobalOptions {
  return command.optsWithGlobals<GlobalOptions>();
}

/** The command as typed: `vnum session create`. */
export function commandName(command: Command): string {
  const names: string[] = [];
  for (let c: Command | null = command; c?.parent; c = c.parent) names.unshift(c.name());
  return ['vnum', ...names].join(' ');
}

/**
 * Run `work` on the database: `create` for commands that add (a missing
 * database is created), `write` for commands that change what exists,
 * `read` for commands that only look (never creates or writes anything).
 * A command that writes refuses a cluster node's replica file
 * (VNUM_REPLICA_READ_ONLY) before it writes anything.
 * SQLite's errors come out as ours (busy, disk full, …).
 */
export function withDb<T>(command: Command, work: (db: Db) => T, mode: OpenMode = 'create'): T {
  const path = resolveDbPath(globalOptions(command).db);
  const db = openDb(path, { mode });
  try {
    if (mode !== 'read') refuseReplicaWrites(db, path, commandName(command));
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

/**
 * For a command that opens the file through another module (vnum api, vnum
 * apikey, vnum webhooks deliver): refuse a replica before it is opened for
 * writing. A file that does not exist yet is no replica.
 */
export function refuseReplicaFile(command: Command, path: string): void {
  if (path === ':memory:' || !existsSync(path)) return;
  const db = openDb(path, { mode: 'read' });
  try {
    refuseReplicaWrites(db, path, commandName(command));
  } finally {
    db.close();
  }
}
