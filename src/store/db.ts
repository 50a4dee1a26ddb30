import Database from 'better-sqlite3';
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, VnumError } from '../errors.js';
import { companionSize, describePath, existingDatabaseFile, fileError, writableDatabaseFile, writeProblem } from './db-file.js';
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

/**
 * - `create` (the default): read-write; a missing file is created owner-only,
 *   with its folders. Commands that add to the pool or create sessions, and
 *   `vnum serve`.
 * - `write`: read-write on an existing database only (retire, release: there
 *   is nothing to act on in a new one).
 * - `read` (read commands): never creates a database or a folder. A database
 *   this user can write is opened as with `write` (so SQLite tidies its -wal
 *   and -shm away at the end, and an older schema is migrated); one it cannot
 *   write is read without writing anything beside it.
 */
export type OpenMode = 'create' | 'write' | 'read';

export interface OpenOptions {
  mode?: OpenMode;
  /** The same as mode `read`. */
  readonly?: boolean;
  /** Apply migrations to an older schema (default); false: refuse it, as a probe such as `vnum health` must. */
  migrate?: boolean;
  /** How long a statement waits for another process's lock before SQLITE_BUSY; default BUSY_TIMEOUT_MS. */
  busyTimeoutMs?: number;
}

/**
 * Open the store. Read-write: owner-only files (src/store/db-file.ts), WAL,
 * busy timeout, migrations applied in one IMMEDIATE transaction so that
 * several processes opening a fresh file at once agree on the schema.
 */
export function openDb(path: string, options: OpenOptions = {}): Db {
  const mode = options.readonly ? 'read' : (options.mode ?? 'create');
  const settings = { busyTimeoutMs: options.busyTimeoutMs ?? BUSY_TIMEOUT_MS, migrate: options.migrate ?? true };
  if (path === ':memory:') return configure(new Database(path), path, true, settings);
  if (mode !== 'read') return openForWriting(path, mode === 'create', settings);
  const file = existingDatabaseFile(path);
  return writeProblem(path, file) === undefined ? openForWriting(path, false, settings) : openForReading(path, file, settings);
}

interface Settings {
  busyTimeoutMs: number;
  migrate: boolean;
}

function openForWriting(path: string, create: boolean, settings: Settings): Db {
  const file = writableDatabaseFile(path, create);
  let db: Db;
  try {
    // The file exists now: SQLite must not create one through a link changed since.
    db = new Database(file, { fileMustExist: true });
  } catch (e) {
    throw storeError(e, describePath(path, file), ErrorCode.Database);
  }
  return configure(db, describePath(path, file), true, settings);
}

/**
 * A database this user cannot write, read without writing anything: not the
 * database, not a -wal or -shm that would be left behind with the file's
 * read-only mode. A writer that has it open keeps -wal and -shm, and SQLite
 * reads through them. Without them (no writer, or a read-only folder or
 * mount) the file is read into memory and queried there: it holds every
 * committed transaction, since the last connection to close checkpointed
 * the WAL. A WAL left with transactions in it (a writer killed) needs a
 * writer to recover it first.
 */
function openForReading(path: string, file: string, settings: Settings): Db {
  const shown = describePath(path, file);
  let db: Db;
  try {
    if (companionSize(file, '-shm') !== undefined) {
      db = new Database(file, { readonly: true, fileMustExist: true });
    } else {
      if ((companionSize(file, '-wal') ?? 0) > 0) {
        throw new VnumError(
          ErrorCode.DatabasePermissions,
          `cannot read database ${shown}: its ${file}-wal holds transactions that only a user who can write the folder can recover; run the command as the database's owner`,
        );
      }
      db = new Database(snapshot(file), { readonly: true });
    }
  } catch (e) {
    throw storeError(e, shown, ErrorCode.Database);
  }
  return configure(db, shown, false, settings);
}

/** The database file's bytes, marked as a rollback-journal database so SQLite reads it from memory. */
function snapshot(file: string): Buffer {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    throw fileError(file, e);
  }
  // Header bytes 18 and 19: file format write/read version, 2 in WAL mode.
  if (bytes.length >= 20 && bytes[18] === 2 && bytes[19] === 2) bytes[18] = bytes[19] = 1;
  return bytes;
}

function configure(db: Db, shown: string, writable: boolean, settings: Settings): Db {
  try {
    db.pragma(`busy_timeout = ${settings.busyTimeoutMs}`);
    // A newer schema is refused before anything is written to it.
    const version = schemaVersion(db);
    if (version > MIGRATIONS.length) {
      throw new VnumError(
        ErrorCode.DatabaseVersion,
        `database ${shown} has schema version ${version}, newer than this vnum understands (${MIGRATIONS.length}): upgrade vnum`,
      );
    }
    if (version < MIGRATIONS.length && !(writable && settings.migrate)) {
      throw new VnumError(
        ErrorCode.DatabaseVersion,
        `database ${shown} has schema version ${version}, older than this vnum's (${MIGRATIONS.length}): ` +
          'any vnum command (or vnum serve) run by a user who can write it migrates it',
      );
    }
    if (writable) {
      db.pragma('journal_mode = WAL');
      // NORMAL in WAL mode survives any process crash (SIGKILL included); only
      // an OS crash or power loss can lose the last transactions.
      db.pragma('synchronous = NORMAL');
      db.pragma(`wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES}`);
      migrate(db, shown);
    }
    db.pragma('foreign_keys = ON');
  } catch (e) {
    db.close();
    throw storeError(e, shown, ErrorCode.Database);
  }
  return db;
}

export function schemaVersion(db: Db): number {
  return db.pragma('user_version', { simple: true }) as number;
}

function migrate(db: Db, shown: string): void {
  if (schemaVersion(db) === MIGRATIONS.length) return;
  db.transaction(() => {
    const from = schemaVersion(db);
    if (from > MIGRATIONS.length) {
      throw new VnumError(
        ErrorCode.DatabaseVersion,
        `database ${shown} has schema version ${from}, newer than this vnum understands (${MIGRATIONS.length}): upgrade vnum`,
      );
    }
    for (let version = from; version < MIGRATIONS.length; version++) {
      db.exec(MIGRATIONS[version]!);
    }
    db.pragma(`user_version = ${MIGRATIONS.length}`);
  }).immediate();
}

/** Run `work` as one IMMEDIATE transaction: the write lock is taken before any read. */
export function writeTransaction<T>(db: Db, work: () => T): T {
  return db.transaction(work).immediate();
}

/**
 * An error met while using the store, as one of ours: SQLite's result codes
 * (better-sqlite3's SqliteError.code) say whose it is. Anything unexpected is
 * `unexpected`: vnum's own fault (VNUM_INTERNAL) once the database is open,
 * a database vnum cannot use (VNUM_DATABASE) while opening it. A VnumError,
 * or anything not from SQLite, passes unchanged.
 */
export function storeError(error: unknown, shown: string, unexpected: ErrorCode = ErrorCode.Internal): unknown {
  if (error instanceof VnumError) return error;
  const code = (error as { code?: unknown }).code;
  if (typeof code !== 'string' || !code.startsWith('SQLITE_')) return error;
  const cause = (error as Error).message;
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    return new VnumError(
      ErrorCode.DatabaseBusy,
      `database ${shown} is busy: another process held it locked for longer than the wait allows; nothing was written, try again`,
    );
  }
  if (code === 'SQLITE_FULL') {
    return new VnumError(ErrorCode.DiskFull, `database ${shown}: the disk is full; nothing was written (free space, then try again)`);
  }
  if (code.startsWith('SQLITE_READONLY') && code !== 'SQLITE_READONLY_DBMOVED') {
    return new VnumError(ErrorCode.DatabasePermissions, `cannot write database ${shown}: ${cause} (run as the database's owner)`);
  }
  if (code.startsWith('SQLITE_CANTOPEN') || code.startsWith('SQLITE_IOERR') || code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB' || code === 'SQLITE_READONLY_DBMOVED' || code === 'SQLITE_PERM' || code === 'SQLITE_AUTH') {
    return new VnumError(ErrorCode.Database, `cannot use database ${shown}: ${cause}`);
  }
  return unexpected === ErrorCode.Internal
    ? new VnumError(ErrorCode.Internal, `internal error on database ${shown}: ${cause} (${code})`)
    : new VnumError(unexpected, `cannot use database ${shown}: ${cause}`);
}
