import { PgoutputPlugin, type Pgoutput } from 'pg-logical-replication';
import { ErrorCode, VnumError } from '../errors.js';
import { parseLsn, type Lsn } from './lsn.js';
import { converterFor, type SqlValue } from './values.js';

/**
 * The pgoutput decoder: the only module that touches pg-logical-replication,
 * and only its decoder (`PgoutputPlugin#parse`, protocol version 1).
 * Its `LogicalReplicationService` is not used at all: it confirms positions
 * the consumer has not applied and adds 1 to every position it confirms,
 * which loses transactions (docs/cluster.md; shown in
 * test/cluster/pgoutput-library.test.ts). The stream itself is ours
 * (stream.ts).
 *
 * What comes out is the replica's own vocabulary: changes by table name and
 * column name, values already converted for SQLite (values.ts).
 */

export type Row = Record<string, SqlValue>;

export type Change =
  | { kind: 'insert'; table: string; row: Row }
  /** `key`: the row's identity before the change; `row`: the new values (a column left out was not sent: unchanged TOAST). */
  | { kind: 'update'; table: string; key: Row; row: Row }
  | { kind: 'delete'; table: string; key: Row }
  | { kind: 'truncate'; tables: string[] };

export type Decoded =
  | { kind: 'begin'; commitLsn: Lsn; commitTimeMs: number }
  | { kind: 'commit'; commitLsn: Lsn; endLsn: Lsn; commitTimeMs: number }
  | { kind: 'change'; change: Change }
  /** A table's columns and types, before its first change in this stream (or after it changed). */
  | { kind: 'relation'; table: string }
  /** Type and origin messages: nothing to apply. */
  | { kind: 'other' };

/** PostgreSQL's epoch (2000-01-01) in ms since 1970: times on the wire count µs from it. */
export const PG_EPOCH_MS = 946_684_800_000;

/** The decoder's commit times are already µs since 1970: to ms, keeping the fraction. */
function decoderTimeToMs(micros: bigint): number {
  return Number(micros) / 1000;
}

/** The options START_REPLICATION takes for pgoutput (protocol 1: whole transactions, no streaming). */
export function pgoutputOptions(publication: string): string {
  return `proto_version '1', publication_names '${publication.replace(/'/g, "''")}'`;
}

interface RelationInfo {
  name: string;
  identity: Pgoutput.MessageRelation['replicaIdentity'];
  keyColumns: string[];
  convert: Map<string, (text: string | null) => SqlValue>;
}

export class PgoutputDecoder {
  private readonly plugin = new PgoutputPlugin({ protoVersion: 1, publicationNames: [] });
  private readonly relations = new Map<number, RelationInfo>();

  /** One XLogData payload (the pgoutput message after the 25-byte header). */
  decode(payload: Buffer): Decoded {
    const m: Pgoutput.Message = this.plugin.parse(payload);
    switch (m.tag) {
      case 'begin':
        return { kind: 'begin', commitLsn: parseLsn(m.commitLsn ?? '0/0'), commitTimeMs: decoderTimeToMs(m.commitTime as bigint) };
      case 'commit':
        return {
          kind: 'commit',
          commitLsn: parseLsn(m.commitLsn ?? '0/0'),
          endLsn: parseLsn(required(m.commitEndLsn, 'commit end LSN')),
          commitTimeMs: decoderTimeToMs(m.commitTime as bigint),
        };
      case 'relation':
        this.learn(m);
        return { kind: 'relation', table: m.name };
      case 'insert': {
        const r = this.relation(m.relation);
        return { kind: 'change', change: { kind: 'insert', table: r.name, row: convertRow(r, m.new) } };
      }
      case 'update': {
        const r = this.relation(m.relation);
        const row = convertRow(r, m.new);
        // The old key comes only when the key changed (or the identity is FULL); otherwise the new row holds it.
        const key = m.key ? convertRow(r, m.key) : m.old ? convertRow(r, m.old) : pick(row, r);
        return { kind: 'change', change: { kind: 'update', table: r.name, key, row } };
      }
      case 'delete': {
        const r = this.relation(m.relation);
        const key = m.key ? convertRow(r, m.key) : m.old ? convertRow(r, m.old) : undefined;
        if (!key) throw new VnumError(ErrorCode.Database, `a delete from ${r.name} came without its key (replica identity ${r.identity})`);
        return { kind: 'change', change: { kind: 'delete', table: r.name, key } };
      }
      case 'truncate':
        return { kind: 'change', change: { kind: 'truncate', tables: m.relations.map((rel: Pgoutput.MessageRelation) => this.relation(rel).name) } };
      default:
        return { kind: 'other' };
    }
  }

  private learn(m: Pgoutput.MessageRelation): void {
    const convert = new Map<string, (text: string | null) => SqlValue>();
    for (const column of m.columns) {
      convert.set(column.name, converterFor(column.typeOid, `${m.name}.${column.name}`));
      // The decoder parses each value with the parser it stored on this very
      // (cached) relation object: keep the server's text, converted by us.
      column.parser = (raw: string) => raw;
    }
    this.relations.set(m.relationOid, { name: m.name, identity: m.replicaIdentity, keyColumns: m.keyColumns, convert });
  }

  private relation(m: Pgoutput.MessageRelation): RelationInfo {
    const known = this.relations.get(m.relationOid);
    if (!known) throw new VnumError(ErrorCode.Database, `a change to ${m.name} came before its relation message`);
    return known;
  }
}

function convertRow(r: RelationInfo, tuple: Record<string, unknown>): Row {
  const row: Row = {};
  for (const [column, raw] of Object.entries(tuple)) {
    // undefined: an unchanged TOAST value the server did not send; leave it out so it is not overwritten.
    if (raw === undefined) continue;
    if (raw !== null && typeof raw !== 'string') {
      throw new VnumError(ErrorCode.Database, `column ${r.name}.${column} came in binary form; the replica reads text only`);
    }
    row[column] = r.convert.get(column)!(raw);
  }
  return row;
}

function pick(row: Row, r: RelationInfo): Row {
  if (r.keyColumns.length === 0) {
    throw new VnumError(ErrorCode.Database, `an update of ${r.name} came without a key (replica identity ${r.identity})`);
  }
  return Object.fromEntries(r.keyColumns.map((k) => [k, row[k] ?? null]));
}

function required<T>(value: T | null | undefined, what: string): T {
  if (value === null || value === undefined) throw new VnumError(ErrorCode.Database, `pgoutput message without its ${what}`);
  return value;
}
