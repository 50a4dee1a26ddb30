import type Database from 'better-sqlite3';
import type { Db } from '../store/db.js';
import type { ReplicaStatus } from './consumer.js';

/**
 * How fresh a node's replica is, told across the process boundary through
 * the file itself: the replica process (`vnum replica`) writes one row every
 * ping, `vnum serve` reads it (one point read, no IPC) and applies its
 * freshness policy (freshness.ts). A replica process that dies stops
 * writing, so its file goes stale like one cut off from PostgreSQL.
 */

export interface ReplicaHealth {
  node: string;
  pid: number;
  phase: string;
  /** The last moment the file was known to hold everything PostgreSQL had sent (ms, this host's clock). */
  freshAt: number | null;
  lastContactAt: number | null;
  lagBytes: number | null;
  lastError: string | null;
  updatedAt: number;
}

interface HealthRow {
  node: string;
  pid: number;
  phase: string;
  fresh_at: number | null;
  last_contact_at: number | null;
  lag_bytes: number | null;
  last_error: string | null;
  updated_at: number;
}

/** The health row of a file; undefined on a single box (or a node whose replica process never ran). */
export function readReplicaHealth(db: Db): ReplicaHealth | undefined {
  const row = db.prepare<[], HealthRow>('SELECT * FROM replica_health WHERE id = 1').get();
  return row && fromRow(row);
}

/** A prepared reader for a connection kept open (the router's). */
export function replicaHealthReader(db: Db): () => ReplicaHealth | undefined {
  const statement: Database.Statement<[], HealthRow> = db.prepare('SELECT * FROM replica_health WHERE id = 1');
  return () => {
    const row = statement.get();
    return row && fromRow(row);
  };
}

function fromRow(row: HealthRow): ReplicaHealth {
  return {
    node: row.node,
    pid: row.pid,
    phase: row.phase,
    freshAt: row.fresh_at,
    lastContactAt: row.last_contact_at,
    lagBytes: row.lag_bytes,
    lastError: row.last_error,
    updatedAt: row.updated_at,
  };
}

/**
 * Writes the replica process's status into its file. fresh_at never moves
 * back: a restarted process has not heard from PostgreSQL yet, but the file
 * still holds what it held.
 */
export class HealthWriter {
  private readonly upsert: Database.Statement<[string, number, string, number | null, number | null, number | null, string | null, number]>;

  constructor(db: Db) {
    this.upsert = db.prepare(
      `INSERT INTO replica_health (id, node, pid, phase, fresh_at, last_contact_at, lag_bytes, last_error, updated_at)
       VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET node = excluded.node, pid = excluded.pid, phase = excluded.phase,
         fresh_at = CASE WHEN excluded.node <> replica_health.node THEN excluded.fresh_at
                         ELSE nullif(max(coalesce(excluded.fresh_at, 0), coalesce(replica_health.fresh_at, 0)), 0) END,
         last_contact_at = coalesce(excluded.last_contact_at, replica_health.last_contact_at),
         lag_bytes = excluded.lag_bytes, last_error = excluded.last_error, updated_at = excluded.updated_at`,
    );
  }

  write(status: ReplicaStatus, now = Date.now()): void {
    this.upsert.run(
      status.node,
      process.pid,
      status.phase,
      status.caughtUpAt,
      status.lastContactAt,
      status.lagBytes,
      status.lastError === null ? null : status.lastError.slice(0, 500),
      now,
    );
  }
}
