import type { Command } from 'commander';
import { openDb, resolveDbPath, storeError, type Db, type OpenMode } from '../store/db.js';
import { parseCountry } from '../numbers/normalise.js';

/** Options every command understands, whichever level they were given at. */
export interface GlobalOptions {
  db?: string;
  country?: string;
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
