import pg from 'pg';
import type { Duplex } from 'node:stream';
import { ErrorCode, VnumError } from '../errors.js';
import { formatLsn, parseLsn, type Lsn } from './lsn.js';
import { assertSlotName } from './names.js';
import { PG_EPOCH_MS, pgoutputOptions } from './pgoutput.js';

/**
 * The replication connection: a `pg` client in walsender mode
 * (`replication: 'database'`), the replication commands as simple queries,
 * and the streaming protocol's frames read and written here:
 *
 *   XLogData 'w'          dataStart, walEnd, sendTime, then one pgoutput message
 *   keepalive 'k'         walEnd, sendTime, replyRequested
 *   status update 'r'     written, flushed, applied positions, our clock, replyRequested
 *
 * Positions confirmed are exactly the ones the caller gives: PostgreSQL
 * resumes after a restart from the first transaction whose commit record
 * starts at or after the confirmed position, so one byte too far skips a
 * transaction whose commit record directly follows (pg-logical-replication's
 * service sends position + 1; see pgoutput.ts).
 *
 * This is the one module that uses pg's connection internals (the CopyData
 * events and sendCopyFromChunk, as pg-logical-replication itself does).
 */

export interface PgTarget {
  host: string;
  port: number;
  user: string;
  database: string;
  password?: string | undefined;
}

export interface XLogData {
  walStart: Lsn;
  walEnd: Lsn;
  /** The server's clock when it sent this, ms since 1970. */
  sentAtMs: number;
  payload: Buffer;
}

export interface Keepalive {
  walEnd: Lsn;
  sentAtMs: number;
  replyRequested: boolean;
}

export interface SlotInfo {
  /** Where the slot's consumer has confirmed up to; null for a slot never used. */
  confirmedFlush: Lsn | null;
  /** 'reserved', 'extended', 'unreserved' or 'lost' (past max_slot_wal_keep_size). */
  walStatus: string | null;
  activePid: number | null;
  plugin: string | null;
}

export interface SystemIdentity {
  systemId: string;
  timeline: number;
  walPosition: Lsn;
  database: string;
}

/** The parts of pg's (untyped) Connection this module uses. */
interface WireConnection {
  on(event: 'copyData', listener: (message: { chunk: Buffer }) => void): void;
  once(event: 'replicationStart', listener: () => void): void;
  sendCopyFromChunk(chunk: Buffer): void;
  stream: Duplex;
}

export { assertSlotName };

/** µs since 2000-01-01, from ms since 1970. */
function pgMicros(ms: number): bigint {
  return BigInt(Math.round((ms - PG_EPOCH_MS) * 1000));
}

/** A status update: everything up to `position` is written, flushed and applied here. */
export function statusUpdate(position: Lsn, nowMs: number, replyRequested: boolean): Buffer {
  const frame = Buffer.alloc(34);
  frame.write('r', 0, 'latin1');
  frame.writeBigUInt64BE(position, 1);
  frame.writeBigUInt64BE(position, 9);
  frame.writeBigUInt64BE(position, 17);
  frame.writeBigInt64BE(pgMicros(nowMs), 25);
  frame.writeUInt8(replyRequested ? 1 : 0, 33);
  return frame;
}

export class ReplicationConnection {
  /** The first error of a stream's handlers (or its parsing): ends the stream, and is what it rejects with. */
  private failure: unknown;

  private constructor(
    private readonly client: pg.Client,
    private readonly wire: WireConnection,
    private readonly commandTimeoutMs: number,
  ) {}

  /**
   * Connect in walsender mode; fails after `connectTimeoutMs` instead of
   * waiting on TCP. Each command before the stream fails after
   * `commandTimeoutMs` (a link that dies there would otherwise hang it for
   * as long as TCP takes); the stream itself is watched by the caller's pings.
   */
  static async open(target: PgTarget, connectTimeoutMs: number, applicationName: string, commandTimeoutMs = 30_000): Promise<ReplicationConnection> {
    const client = new pg.Client({
      ...target,
      replication: 'database',
      connectionTimeoutMillis: connectTimeoutMs,
      application_name: applicationName,
      keepAlive: true,
    } as pg.ClientConfig);
    // Errors come back through the pending query or the stream; without a listener an 'error' event would end the process.
    client.on('error', () => {});
    await client.connect();
    return new ReplicationConnection(client, (client as unknown as { connection: WireConnection }).connection, commandTimeoutMs);
  }

  private command<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string): Promise<pg.QueryResult<R>> {
    return this.client.query<R>({ text, query_timeout: this.commandTimeoutMs } as pg.QueryConfig);
  }

  async identifySystem(): Promise<SystemIdentity> {
    const row = (await this.command<{ systemid: string; timeline: string; xlogpos: string; dbname: string }>('IDENTIFY_SYSTEM')).rows[0]!;
    return { systemId: String(row.systemid), timeline: Number(row.timeline), walPosition: parseLsn(row.xlogpos), database: row.dbname };
  }

  async slot(name: string): Promise<SlotInfo | undefined> {
    // Walsender connections take simple queries only: the name is checked, then quoted.
    const rows = (
      await this.command<{ confirmed_flush_lsn: string | null; wal_status: string | null; active_pid: number | null; plugin: string | null }>(
        `SELECT confirmed_flush_lsn::text, wal_status, active_pid, plugin FROM pg_replication_slots WHERE slot_name = '${assertSlotName(name)}'`,
      )
    ).rows;
    const row = rows[0];
    if (!row) return undefined;
    return {
      confirmedFlush: row.confirmed_flush_lsn === null ? null : parseLsn(row.confirmed_flush_lsn),
      walStatus: row.wal_status,
      activePid: row.active_pid === null ? null : Number(row.active_pid),
      plugin: row.plugin,
    };
  }

  /** The tables a publication has now, each with the columns it publishes. */
  async published(publication: string): Promise<Map<string, string[]>> {
    const rows = (
      await this.command<{ tablename: string; columns: string }>(
        `SELECT tablename, to_json(attnames)::text AS columns FROM pg_publication_tables
          WHERE pubname = '${assertSlotName(publication)}' ORDER BY tablename`,
      )
    ).rows;
    return new Map(rows.map((r) => [r.tablename, JSON.parse(r.columns) as string[]]));
  }

  async dropSlot(name: string): Promise<void> {
    await this.command(`DROP_REPLICATION_SLOT "${assertSlotName(name)}"`);
  }

  /**
   * Create the slot and export the snapshot it starts from. The snapshot is
   * usable (SET TRANSACTION SNAPSHOT) only while this connection runs no
   * other command: copy, then call `stream` on this same connection.
   * Waits for write transactions already in progress on the server.
   */
  async createSlotWithSnapshot(name: string): Promise<{ consistentPoint: Lsn; snapshotName: string }> {
    const row = (
      await this.command<{ consistent_point: string; snapshot_name: string }>(
        `CREATE_REPLICATION_SLOT "${assertSlotName(name)}" LOGICAL pgoutput (SNAPSHOT 'export')`,
      )
    ).rows[0]!;
    return { consistentPoint: parseLsn(row.consistent_point), snapshotName: row.snapshot_name };
  }

  /**
   * START_REPLICATION from `from`, then every frame to the handlers, which
   * run synchronously in arrival order. Resolves when the server ends the
   * stream; rejects with the server's error (e.g. SQLSTATE 55006, the slot
   * is in use) or the connection's.
   */
  stream(
    slot: string,
    publication: string,
    from: Lsn,
    handlers: { started(): void; data(frame: XLogData): void; keepalive(frame: Keepalive): void },
  ): Promise<void> {
    const fail = (error: unknown): void => {
      // A handler's error must stop the stream, not vanish inside pg's socket handler.
      this.failure ??= error;
      this.destroy();
    };
    this.wire.once('replicationStart', () => handlers.started());
    this.wire.on('copyData', ({ chunk }) => {
      if (this.failure !== undefined) return;
      try {
        const kind = chunk[0];
        if (kind === 0x77 /* w */) {
          handlers.data({
            walStart: chunk.readBigUInt64BE(1),
            walEnd: chunk.readBigUInt64BE(9),
            sentAtMs: Number(chunk.readBigInt64BE(17)) / 1000 + PG_EPOCH_MS,
            payload: chunk.subarray(25),
          });
        } else if (kind === 0x6b /* k */) {
          handlers.keepalive({
            walEnd: chunk.readBigUInt64BE(1),
            sentAtMs: Number(chunk.readBigInt64BE(9)) / 1000 + PG_EPOCH_MS,
            replyRequested: chunk.readUInt8(17) === 1,
          });
        }
      } catch (error) {
        fail(error);
      }
    });
    const sql = `START_REPLICATION SLOT "${assertSlotName(slot)}" LOGICAL ${formatLsn(from)} (${pgoutputOptions(publication)})`;
    return this.client.query(sql).then(
      () => {
        if (this.failure !== undefined) throw this.failure;
      },
      (error: unknown) => {
        throw this.failure ?? error;
      },
    );
  }

  /** Confirm `position` (exactly) and optionally ask for a keepalive back. */
  sendStatus(position: Lsn, replyRequested: boolean): void {
    if (this.wire.stream.writable) this.wire.sendCopyFromChunk(statusUpdate(position, Date.now(), replyRequested));
  }

  /** Drop the connection now, without a goodbye that a dead link would never carry. */
  destroy(): void {
    this.wire.stream.destroy();
  }

  async close(): Promise<void> {
    await Promise.race([this.client.end().catch(() => {}), new Promise((r) => setTimeout(r, 1_000).unref())]);
    this.destroy();
  }
}

/** SQLSTATE of an error from the server, if it is one. */
export function sqlState(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}
