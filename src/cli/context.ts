import type { Command } from 'commander';
import { openDb, resolveDbPath, type Db } from '../store/db.js';
import { parseCountry } from '../numbers/normalise.js';

/** Options every command understands, whichever level they were given at. */
export interface GlobalOptions {
  db?: string;
  country?: string;
}

export function globalOptions(command: Command): GlobalOptions {
  return command.optsWithGlobals<GlobalOptions>();
}

export function withDb<T>(command: Command, work: (db: Db) => T): T {
  const db = openDb(resolveDbPath(globalOptions(command).db));
  try {
    return work(db);
  } finally {
    db.close();
  }
}

/** `--country`, else `VNUM_DEFAULT_COUNTRY`: the country for numbers written without `+`. */
export function defaultCountry(command: Command): string | undefined {
  return parseCountry(globalOptions(command).country ?? process.env.VNUM_DEFAULT_COUNTRY);
}
