import type Database from 'better-sqlite3';
import { ErrorCode, VnumError } from '../errors.js';
import type { Db } from '../store/db.js';
import { formatLsn, parseLsn, type Lsn } from './lsn.js';
import type { Change, Row } from './pgoutput.js';

/**
 * The SQLite side of the replica: changes applied by table name and column
 * name to the tables of the same name, which are the single-box schema
 * (src/store/migrations.ts), so `vnum serve` routes from them unchanged.
 * Nothing here knows a table of vnum's: a table or column added to the
 * authority and to the SQLite migrations replicates with no code here.
 *
 * Each upstream transaction is one IMMEDIATE SQLite transaction that also
 * moves replica_state.applied_lsn: the rows and the position that covers them
 * commit together or not at all. Inserts are plain INSERTs and every update
 * and delete must hit exactly one row: a change applied twice, or to a row
 * that is not there, stops the replica loudly instead of drifting from the
 * authority. No message here carries a row's values (they are real numbers).
 */

export interface ReplicaState {
  systemId: string;
  database: string;
  slot: string;
  publication: string;
  /** The tables the publication had when the replica was built. */
  tables: string[];
  /** The consistent point of the snapshot this replica was built from. */
  builtLsn: Lsn;
  builtAt: number;
  /** Everything up to here is in this file. */
  appliedLsn: Lsn;
  /** PostgreSQL's commit time (ms) of the last transaction applied, if any since the build. */
  appliedCommitAt: number | null;
}

export interface Built {
  systemId: string;
  database: string;
  slot: string;
  publication: string;
  tables: readonly string[];
  consistentPoint: Lsn;
  at: number;
}

interface StateRow {
  system_id: string;
  database: string;
  slot: string;
  publication: string;
  tables: string;
  built_lsn: string;
  built_at: number;
  applied_lsn: string;
  applied_commit_at: number | null;
}

const quote = (name: string): string => `"${name.replace(/"/g, '""')}"`;

export class ReplicaStore {
  private readonly statements = new Map<string, Database.Statement>();
  private readonly columns = new Map<string, Set<string>>();
  private readonly readState: Database.Statement<[], StateRow>;
  private readonly advanceState: Database.Statement<[string, number | null]>;
  private readonly applyInTransaction: Database.Transaction<(changes: readonly Change[], lsn: Lsn, commitTimeMs: number | null) => void>;

  constructor(readonly db: Db) {
    // The authority checked its foreign keys when it committed. Checked again
    // here they would only cost (a parent deleted or copied scans its
    // children, unindexed in SQLite) or stop the replica on a local row
    // (the call log names sessions) that refers to a row the authority removed.
    if (db.inTransaction) throw new Error('ReplicaStore needs a connection outside a transaction');
    db.pragma('foreign_keys = OFF');
    this.readState = db.prepare<[], StateRow>('SELECT * FROM replica_state WHERE id = 1');
    this.advanceState = db.prepare<[string, number | null]>(
      'UPDATE replica_state SET applied_lsn = ?, applied_commit_at = coalesce(?, applied_commit_at) WHERE id = 1',
    );
    this.applyInTransaction = db.transaction((changes, lsn, commitTimeMs) => {
      for (const change of changes) this.applyChange(change);
      this.moveTo(lsn, commitTimeMs);
    });
  }

  state(): ReplicaState | undefined {
    const row = this.readState.get();
    if (!row) return undefined;
    return {
      systemId: row.system_id,
      database: row.database,
      slot: row.slot,
      publication: row.publication,
      tables: JSON.parse(row.tables) as string[],
      builtLsn: parseLsn(row.built_lsn),
      builtAt: row.built_at,
      appliedLsn: parseLsn(row.applied_lsn),
      appliedCommitAt: row.applied_commit_at,
    };
  }

  /** One upstream transaction and the position after it, atomically. */
  applyTransaction(changes: readonly Change[], endLsn: Lsn, commitTimeMs: number): void {
    this.applyInTransaction.immediate(changes, endLsn, Math.round(commitTimeMs));
  }

  /** A later position with nothing of ours before it (a keepalive's, while no transaction is open). */
  advance(lsn: Lsn): void {
    this.applyInTransaction.immediate([], lsn, null);
  }


  private moveTo(lsn: Lsn, commitTimeMs: number | null): void {
    if (this.advanceState.run(formatLsn(lsn), commitTimeMs).changes !== 1) {
      throw new VnumError(ErrorCode.Database, 'the replica has no replica_state row: it was never built from a snapshot');
    }
  }

  /**
   * Start a rebuild: one open IMMEDIATE transaction in which every table
   * named is emptied; `insert` then adds the snapshot's rows and `finish`
   * commits them with the new state. Until then readers see the old replica.
   * Several awaits happen inside (the copy streams from PostgreSQL), so this
   * is a manual BEGIN/COMMIT, not better-sqlite3's synchronous transaction().
   */
  beginRebuild(tables: readonly string[]): Rebuild {
    for (const table of tables) this.assertTable(table);
    this.db.exec('BEGIN IMMEDIATE');
    let open = true;
    try {
      for (const table of tables) this.db.exec(`DELETE FROM ${quote(table)}`);
    } catch (error) {
      this.db.exec('ROLLBACK');
      throw error;
    }
    const abandon = (): void => {
      if (open && this.db.inTransaction) this.db.exec('ROLLBACK');
      open = false;
    };
    return {
      insert: (table, row) => this.insert(table, row),
      finish: (built) => {
        try {
          this.db
            .prepare(
              `INSERT INTO replica_state (id, system_id, database, slot, publication, tables, built_lsn, built_at, applied_lsn, applied_commit_at)
               VALUES (1, @systemId, @database, @slot, @publication, @tables, @lsn, @at, @lsn, NULL)
               ON CONFLICT (id) DO UPDATE SET system_id = excluded.system_id, database = excluded.database, slot = excluded.slot,
                 publication = excluded.publication, tables = excluded.tables, built_lsn = excluded.built_lsn,
                 built_at = excluded.built_at, applied_lsn = excluded.applied_lsn, applied_commit_at = NULL`,
            )
            .run({
              systemId: built.systemId, database: built.database, slot: built.slot, publication: built.publication,
              tables: JSON.stringify(built.tables), lsn: formatLsn(built.consistentPoint), at: built.at,
            });
          this.db.exec('COMMIT');
          open = false;
        } catch (error) {
          abandon();
          throw error;
        }
      },
      abandon,
    };
  }

  private applyChange(change: Change): void {
    switch (change.kind) {
      case 'insert':
        this.insert(change.table, change.row);
        return;
      case 'update': {
        const set = Object.keys(change.row);
        const key = Object.keys(change.key);
        const statement = this.statement(`u|${change.table}|${set}|${key}`, change.table, [...set, ...key], () =>
          `UPDATE ${quote(change.table)} SET ${set.map((c) => `${quote(c)} = ?`).join(', ')}
            WHERE ${key.map((c) => `${quote(c)} IS ?`).join(' AND ')}`,
        );
        const done = statement.run(...set.map((c) => change.row[c]), ...key.map((c) => change.key[c])).changes;
        if (done !== 1) throw new VnumError(ErrorCode.Database, `an update of ${change.table} matched ${done} rows on the replica, not 1: it has drifted from PostgreSQL`);
        return;
      }
      case 'delete': {
        const key = Object.keys(change.key);
        const statement = this.statement(`d|${change.table}|${key}`, change.table, key, () =>
          `DELETE FROM ${quote(change.table)} WHERE ${key.map((c) => `${quote(c)} IS ?`).join(' AND ')}`,
        );
        const done = statement.run(...key.map((c) => change.key[c])).changes;
        if (done !== 1) throw new VnumError(ErrorCode.Database, `a delete from ${change.table} matched ${done} rows on the replica, not 1: it has drifted from PostgreSQL`);
        return;
      }
      case 'truncate':
        for (const table of change.tables) {
          this.assertTable(table);
          this.db.exec(`DELETE FROM ${quote(table)}`);
        }
        return;
    }
  }

  private insert(table: string, row: Row): void {
    const columns = Object.keys(row);
    const statement = this.statement(`i|${table}|${columns}`, table, columns, () =>
      `INSERT INTO ${quote(table)} (${columns.map(quote).join(', ')}) VALUES (${columns.map(() => '?').join(', ')})`,
    );
    statement.run(...columns.map((c) => row[c]));
  }

  /**
   * What the authority publishes that this file's schema lacks: tables, and
   * table.column for columns of tables it has. Empty when it can hold it all.
   */
  schemaGaps(published: ReadonlyMap<string, readonly string[]>): string[] {
    const gaps: string[] = [];
    for (const [table, columns] of published) {
      const have = this.tableColumns(table);
      if (!have) gaps.push(`table ${table}`);
      else gaps.push(...columns.filter((c) => !have.has(c)).map((c) => `${table}.${c}`));
    }
    return gaps;
  }

  private statement(cacheKey: string, table: string, columns: readonly string[], sql: () => string): Database.Statement {
    let statement = this.statements.get(cacheKey);
    if (!statement) {
      const have = this.assertTable(table);
      const missing = columns.filter((c) => !have.has(c));
      if (missing.length > 0) throw schemaGapError(missing.map((c) => `${table}.${c}`));
      statement = this.db.prepare(sql());
      this.statements.set(cacheKey, statement);
    }
    return statement;
  }

  private assertTable(table: string): Set<string> {
    const have = this.tableColumns(table);
    if (!have) throw schemaGapError([`table ${table}`]);
    return have;
  }

  private tableColumns(table: string): Set<string> | undefined {
    let have = this.columns.get(table);
    if (!have) {
      const info = this.db.prepare<[string], { name: string }>('SELECT name FROM pragma_table_info(?)').all(table);
      if (info.length === 0) return undefined;
      have = new Set(info.map((c) => c.name));
      this.columns.set(table, have);
    }
    return have;
  }
}

export function schemaGapError(gaps: readonly string[]): VnumError {
  return new VnumError(
    ErrorCode.Database,
    `PostgreSQL publishes ${gaps.join(', ')}, which this node's SQLite schema lacks: its vnum is older than the authority's schema; upgrade vnum on this node`,
  );
}

export interface Rebuild {
  insert(table: string, row: Row): void;
  /** Commit the copy with the state that says where the stream takes over. */
  finish(built: Built): void;
  /** Roll back: the old replica stays as it was. */
  abandon(): void;
}
