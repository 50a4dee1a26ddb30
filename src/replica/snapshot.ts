import pg from 'pg';
import type { Rebuild } from './apply.js';
import type { Row } from './pgoutput.js';
import type { PgTarget } from './stream.js';
import { converterFor, type SqlValue } from './values.js';

/**
 * Reading PostgreSQL's published tables as one consistent snapshot: the one
 * a new replication slot exported (SET TRANSACTION SNAPSHOT), so the copy
 * holds exactly the transactions committed before the slot's consistent
 * point and the slot streams exactly the ones after. Used to build a replica
 * and, without a slot's snapshot, to audit one (audit.ts).
 *
 * Values come as the server's text and are converted by values.ts, as the
 * stream's are. Rows come through a cursor, a batch at a time, so a table
 * of millions of rows is never held in memory.
 */

const BATCH = 5_000;

/** Every value as the server's text: the conversion is ours (values.ts). */
const RAW_TEXT = { getTypeParser: () => (text: string) => text } as unknown as pg.CustomTypesConfig;

/** A plain connection reading values as text; each query fails after `queryTimeoutMs` if given (a dead link mid-copy). */
export async function openSqlClient(target: PgTarget, connectTimeoutMs: number, applicationName: string, queryTimeoutMs?: number): Promise<pg.Client> {
  const client = new pg.Client({
    ...target,
    connectionTimeoutMillis: connectTimeoutMs,
    application_name: applicationName,
    types: RAW_TEXT,
    ...(queryTimeoutMs ? { query_timeout: queryTimeoutMs } : {}),
  });
  client.on('error', () => {});
  await client.connect();
  return client;
}

/** Close without waiting on a dead link: a polite end for up to a second, then the socket is dropped. */
export async function closeSqlClient(client: pg.Client): Promise<void> {
  await Promise.race([client.end().catch(() => {}), new Promise((r) => setTimeout(r, 1_000).unref())]);
  (client as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
}

/** The tables of a publication, as the snapshot sees them. */
export async function publishedTables(client: pg.Client, publication: string): Promise<string[]> {
  const { rows } = await client.query<{ tablename: string }>(
    'SELECT tablename FROM pg_publication_tables WHERE pubname = $1 ORDER BY tablename',
    [publication],
  );
  return rows.map((r) => r.tablename);
}

/** Each row of `table`, converted, batch by batch (inside the caller's transaction). */
export async function eachRow(client: pg.Client, table: string, visit: (row: Row) => void): Promise<number> {
  const cursor = `vnum_copy_${table.replace(/[^a-z0-9_]/gi, '_')}`;
  await client.query(`DECLARE ${cursor} NO SCROLL CURSOR FOR SELECT * FROM ${pg.escapeIdentifier(table)}`);
  let count = 0;
  let convert: Array<[string, (text: string | null) => SqlValue]> | undefined;
  for (;;) {
    const result = await client.query<Record<string, string | null>>(`FETCH ${BATCH} FROM ${cursor}`);
    convert ??= result.fields.map((f) => [f.name, converterFor(f.dataTypeID, `${table}.${f.name}`)]);
    for (const raw of result.rows) {
      const row: Row = {};
      for (const [name, to] of convert) row[name] = to(raw[name] ?? null);
      visit(row);
      count++;
    }
    if (result.rows.length < BATCH) break;
  }
  await client.query(`CLOSE ${cursor}`);
  return count;
}

/**
 * Copy every published table as of `snapshotName` into the rebuild, then
 * leave the transaction. Returns the row count by table.
 */
export async function copySnapshot(
  client: pg.Client,
  snapshotName: string,
  publication: string,
  startRebuild: (tables: readonly string[]) => Rebuild,
): Promise<{ rebuild: Rebuild; rows: Record<string, number> }> {
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    await client.query(`SET TRANSACTION SNAPSHOT ${pg.escapeLiteral(snapshotName)}`);
    const tables = await publishedTables(client, publication);
    const rebuild = startRebuild(tables);
    const rows: Record<string, number> = {};
    try {
      for (const table of tables) rows[table] = await eachRow(client, table, (row) => rebuild.insert(table, row));
    } catch (error) {
      rebuild.abandon();
      throw error;
    }
    await client.query('COMMIT');
    return { rebuild, rows };
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  }
}
