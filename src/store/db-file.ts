import { accessSync, closeSync, constants, fchmodSync, lstatSync, mkdirSync, openSync, readlinkSync, statSync, type Stats } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { ErrorCode, VnumError } from '../errors.js';

/**
 * The database file on disk, before SQLite opens it: which file a path
 * really names, creating it owner-only, refusing one that is not.
 *
 * The database holds real phone numbers, so vnum only writes to a file (and
 * to -wal and -shm beside it) that no other user may read: a file it creates
 * is 0600 in a 0700 folder whatever the umask, and an existing one with any
 * group or other permission is refused, naming the file and the fix. SQLite
 * gives -wal and -shm the database file's mode when it creates them.
 */

/** The companions SQLite keeps beside the database file in WAL mode. */
export const COMPANIONS = ['-wal', '-shm'] as const;

const MAX_LINKS = 40;

function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException).code;
}

function statOrUndefined(path: string, follow: boolean): Stats | undefined {
  try {
    return follow ? statSync(path) : lstatSync(path);
  } catch (e) {
    if (errno(e) === 'ENOENT') return undefined;
    throw e;
  }
}

/** `path`, or the file its chain of symbolic links ends at (which may not exist yet: a dangling link). */
export function resolveLinks(path: string): string {
  let current = resolve(path);
  for (let hops = 0; hops < MAX_LINKS; hops++) {
    let stat: Stats | undefined;
    try {
      stat = statOrUndefined(current, false);
    } catch (e) {
      throw fileError(path, e);
    }
    if (stat === undefined || !stat.isSymbolicLink()) return current;
    current = resolve(dirname(current), readlinkSync(current));
  }
  throw new VnumError(ErrorCode.Database, `cannot open database ${path}: more than ${MAX_LINKS} symbolic links`);
}

/** `path` as given, and where its links lead when that differs: for messages. */
export function describePath(path: string, file: string): string {
  return file === resolve(path) ? file : `${file} (linked from ${path})`;
}

/** A file-system error on the database's path as one of ours: permissions are the operator's to fix. */
export function fileError(path: string, e: unknown): VnumError {
  const code = errno(e);
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
    return new VnumError(ErrorCode.DatabasePermissions, `cannot use database ${path}: ${code === 'EROFS' ? 'read-only file system' : 'permission denied'} (${code})`);
  }
  return new VnumError(ErrorCode.Database, `cannot use database ${path}: ${code ?? (e as Error).message}`);
}

/**
 * The regular file a path names, following links; DatabaseNotFound when
 * nothing is there. Never creates anything.
 */
export function existingDatabaseFile(path: string): string {
  const file = resolveLinks(path);
  let stat: Stats | undefined;
  try {
    stat = statOrUndefined(file, true);
  } catch (e) {
    if (errno(e) !== 'ENOTDIR') throw fileError(path, e);
  }
  if (stat === undefined) {
    throw new VnumError(
      ErrorCode.DatabaseNotFound,
      `no database at ${describePath(path, file)}: check --db or VNUM_DB (only commands that add to the pool or create sessions create a database)`,
    );
  }
  if (!stat.isFile()) throw new VnumError(ErrorCode.Database, `cannot use database ${describePath(path, file)}: not a regular file`);
  return file;
}

/**
 * The file to open read-write: the path with its links followed; created
 * 0600 (its missing folders 0700) when absent and `create` is set. Refuses a
 * database or companion that other users may read or write.
 */
export function writableDatabaseFile(path: string, create: boolean): string {
  const target = resolveLinks(path);
  if (create && statOrUndefined(target, true) === undefined) {
    try {
      mkdirSync(dirname(target), { recursive: true, mode: 0o700 });
      const fd = openSync(target, 'wx', 0o600);
      try {
        // Under a umask such as 0200 the mode above lost bits the owner needs.
        fchmodSync(fd, 0o600);
      } finally {
        closeSync(fd);
      }
    } catch (e) {
      // EEXIST: another process created it in between; theirs is checked below like any other.
      if (errno(e) !== 'EEXIST') throw fileError(path, e);
    }
  }
  const file = existingDatabaseFile(path);
  assertOwnerOnly(path, file);
  const problem = writeProblem(path, file);
  if (problem !== undefined) throw new VnumError(ErrorCode.DatabasePermissions, problem);
  return file;
}

/**
 * Why this user cannot write the database, or undefined when it can: the
 * file, any -wal and -shm beside it, and the folder when they must be
 * created. SQLite would fall back to read-only on such a file and create
 * -wal and -shm with its read-only mode, which later writers cannot use.
 */
export function writeProblem(path: string, file: string): string | undefined {
  const denied = (name: string): boolean => {
    try {
      accessSync(name, constants.W_OK);
      return false;
    } catch (e) {
      return errno(e) !== 'ENOENT';
    }
  };
  const companions = COMPANIONS.map((suffix) => file + suffix);
  const blocked = [file, ...companions].find(denied);
  if (blocked !== undefined) {
    return `cannot write database ${blocked === file ? describePath(path, file) : blocked}: permission denied; run as the database's owner, or make it writable by them ("chmod 600 ${blocked}")`;
  }
  const missing = companions.some((name) => statOrUndefined(name, true) === undefined);
  if (missing && denied(dirname(file))) {
    return `cannot write database ${describePath(path, file)}: this user cannot create files in ${dirname(file)} (its -wal and -shm); run as the database's owner`;
  }
  return undefined;
}

function assertOwnerOnly(path: string, file: string): void {
  for (const suffix of ['', ...COMPANIONS]) {
    const name = file + suffix;
    let stat: Stats | undefined;
    try {
      stat = statOrUndefined(name, true);
    } catch (e) {
      throw fileError(name, e);
    }
    if (stat === undefined || (stat.mode & 0o077) === 0) continue;
    const mode = (stat.mode & 0o777).toString(8).padStart(4, '0');
    const shown = suffix === '' ? describePath(path, file) : name;
    throw new VnumError(
      ErrorCode.DatabasePermissions,
      `database file ${shown} is open to other users (mode ${mode}) and holds real phone numbers: make it owner-only with "chmod 600 ${name}"`,
    );
  }
}

/** The size of a companion file; undefined when absent (or unreadable). */
export function companionSize(file: string, suffix: (typeof COMPANIONS)[number]): number | undefined {
  try {
    return statOrUndefined(file + suffix, true)?.size;
  } catch {
    return undefined;
  }
}
