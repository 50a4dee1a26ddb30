import type { Logger } from 'pino';
import { openDb, type Db } from './db.js';
import { watchFileIdentity, type FileIdentityWatch } from './file-identity.js';

export interface FollowedDatabaseOptions<T> {
  path: string;
  /** What the holder keeps with each connection (its prepared statements), made at each open. */
  prepare: (db: Db) => T;
  /** How long a statement waits for another process's lock. */
  busyTimeoutMs: number;
  /** After a failure, how long before the next open. */
  reopenDelayMs: number;
  logger: Logger;
  /** Who holds it, first in its log lines (`call log`); none for the router. */
  holder?: string;
  now?: () => number;
}

/**
 * A connection a long-running process holds (the router's, the call log's),
 * that follows the file its path names: an open SQLite connection keeps
 * reading the file it opened even after that file is deleted or replaced by
 * `mv` (a restore), so before each use the path is checked against the file
 * that is open (./file-identity.ts), and a connection to a file no longer
 * there is closed. It opens an existing database only: a database deleted
 * under a running process is not recreated empty; until one is back, get()
 * fails. After a failure, the next open waits `reopenDelayMs`.
 */
export class FollowedDatabase<T> {
  private db: Db | undefined;
  private prepared: T | undefined;
  /** The identity of the file `db` has open. */
  private openedFile: string | undefined;
  private reopenAt = 0;
  private readonly identity: FileIdentityWatch;
  private readonly now: () => number;
  private readonly prefix: string;

  constructor(private readonly options: FollowedDatabaseOptions<T>) {
    this.now = options.now ?? Date.now;
    this.prefix = options.holder === undefined ? '' : `${options.holder}: `;
    this.identity = watchFileIdentity(options.path, {
      onWatchError: (error) =>
        options.logger.warn({ err: error, db: options.path }, `${this.prefix}cannot watch the database's folder: a stat at every use instead`),
    });
  }

  /**
   * What `prepare` made for a connection to the file at the path now, opened
   * if need be; undefined while waiting to open again after a failure. Throws
   * when opening fails (and waits `reopenDelayMs` before the next try).
   */
  get(): T | undefined {
    if (this.db !== undefined) this.follow();
    if (this.prepared !== undefined) return this.prepared;
    if (this.now() < this.reopenAt) return undefined;
    try {
      // Identify the file before opening it: if it is replaced in between, the next use sees the difference.
      const before = this.identity.check();
      const db = openDb(this.options.path, { mode: 'write', busyTimeoutMs: this.options.busyTimeoutMs });
      this.db = db;
      this.openedFile = before ?? this.identity.check();
      this.prepared = this.options.prepare(db);
      return this.prepared;
    } catch (error) {
      this.drop(this.options.reopenDelayMs);
      throw error;
    }
  }

  /** After a failure using the connection: close it; the next get() opens again, after `delayMs`. */
  drop(delayMs = this.options.reopenDelayMs): void {
    try {
      this.db?.close();
    } catch {
      // already unusable
    }
    this.db = undefined;
    this.prepared = undefined;
    this.openedFile = undefined;
    this.reopenAt = this.now() + delayMs;
  }

  close(): void {
    this.identity.close();
    this.drop(0);
  }

  /** Close a connection whose file is no longer the one at the path; the next open takes the new one. */
  private follow(): void {
    let current: string | undefined;
    try {
      current = this.identity.current();
    } catch {
      current = undefined; // unreadable: the open that follows says why
    }
    if (current === this.openedFile) return;
    this.options.logger.warn({ db: this.options.path, present: current !== undefined }, `${this.prefix}database file replaced or removed: reopening`);
    this.drop(0);
  }
}
