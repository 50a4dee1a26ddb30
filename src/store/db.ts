import Database from 'better-sqlite3';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { ErrorCode, VnumError } from '../errors.js';
import { MIGRATIONS } from './migrations.js';

export type Db = Database.Database;

export const BUSY_TIMEOUT_MS = 5_000;

/**
 * Checkpoint when the WAL holds this many pages (64 MiB at 4 KiB pages), not
 * SQLite's 1,000. In WAL mode with synchronous=NORMAL a commit never waits for
 * the disk; only checkpoints do (two fsyncs each), and each create scatters a
 * few pages over the bridge table. Fewer, larger checkpoints pay the fsyncs
 * less often and write a page rewritten by many creates back once: measured
 * at 1,000,000 sessions, ~4,500 -> ~5,200 creates/s (docs/benchmarks.md).
 * The price: the create whose commit crosses the mark runs the checkpoint
 * (a few hundred ms, once per ~3,000 creates), and the WAL file stays ~64 MiB.
 */
export const WAL_AUTOCHECKPOINT_PAGES = 16_384;

/** `--db`, then `VNUM_DB`, then `$XDG_DATA_HOME/vnum/vnum.db` (default `~/.local/share/vnum/vnum.db`). */
export function resolveDbPath(explicit?: string): string {
  if (explicit) return explicit;
  if (process.env.VNUM_DB) return process.env.VNUM_DB;
  const dataHome = process.env.XDG_DATA_HOME || join(homedir(), '.local', 'share');
  return join(dataHome, 'vnum', 'vnum.db');
}

export interface OpenOptions {
  readonly?: boolean;
  /** How long a statement waits for another process's lock before SQLITE_BUSY; default BUSY_TIMEOUT_MS. */
  busyTimeoutMs?: number;
}

/**
 * Open (creating if needed) the store: owner-only file, WAL, busy timeout,
 * migrations applied in one IMMEDIATE transaction so that several processes
 * opening a fresh file at once agree on the schema.
 */
export function openDb(path: string, options: OpenOptions = {}): Db {
  if (path !== ':memory:' && !options.readonly) createOwnerOnly(path);
  let db: Db;
  try {
    db = new Database(path, { readonly: options.readonly ?? false, fileMustExist: options.readonly ?? false });
  } catch (e) {
    throw new VnumError(ErrorCode.Database, `cannot open database ${path}: ${(e as Error).message}`);
  }
  try {
    db.pragma(`busy_timeout = ${options.busyTimeoutMs ?? BUSY_TIMEOUT_MS}`);
    if (!options.readonly) {
      db.pragma('journal_mode = WAL');
      // NORMAL in WAL mode survives any process crash (SIGKILL included); only
      // an OS crash or power loss can lose the last transactions.
      db.pragma('synchronous = NORMAL');
      db.pragma(`wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES}`);
      migrate(db);
    } else {
      assertSchema(db);
    }
    db.pragma('foreign_keys = ON');
  } catch (e) {
    db.close();
    if (e instanceof VnumError) throw e;
    throw new VnumError(ErrorCode.Database, `cannot use database ${path}: ${(e as Error).message}`);
  }
  return db;
}

function createOwnerOnly(path: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  try {
    closeSync(openSync(path, 'wx', 0o600));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw new VnumError(ErrorCode.Database, `cannot create database ${path}: ${(e as Error).message}`);
    }
  }
}

export function schemaVersion(db: Db): number {
  return db.pragma('user_version', { simple: true }) as number;
}

function migrate(db: Db): void {
  if (schemaVersion(db) === MIGRATIONS.length) return;
  db.transaction(() => {
    const from = schemaVersion(db);
    if (from > MIGRATIONS.length) {
      throw new VnumError(
        ErrorCode.Database,
        `database schema version ${from} is newer than this vnum understands (${MIGRATIONS.length}): upgrade vnum`,
      );
    }
    for (let version = from; version < MIGRATIONS.length; version++) {
      db.exec(MIGRATIONS[version]!);
    }
    db.pragma(`user_version = ${MIGRATIONS.length}`);
  }).immediate();
}

function assertSchema(db: Db): void {
  const version = schemaVersion(db);
  if (version !== MIGRATIONS.length) {
    throw new VnumError(ErrorCode.Database, `database schema version ${version}, expected ${MIGRATIONS.length}: open it read-write once to migrate`);
  }
}

/** Run `work` as one IMMEDIATE transaction: the write lock is taken before any read. */
export function writeTransaction<T>(db: Db, work: () => T): T {
  return db.transaction(work).immediate();
}
