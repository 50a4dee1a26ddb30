import type pg from 'pg';
import type { Db } from '../store/db.js';
import { PUBLICATION } from '../store/pg/migrations.js';
import { eachRow, publishedTables } from './snapshot.js';
import { valueKey } from './values.js';

/**
 * Compare a replica with the authority row by row, every published table:
 * each side's rows as a multiset of whole rows (so a row changed on one side
 * counts as one missing and one extra), values compared after the replica's
 * own conversion (values.ts). Meaningful when nothing is being written, or
 * when the replica has applied at least up to the authority's snapshot.
 * `client` must read values as text (snapshot.ts' openSqlClient).
 */

export interface TableAudit {
  table: string;
  authority: number;
  replica: number;
  /** Rows the authority has and the replica lacks. */
  missing: number;
  /** Rows the replica has and the authority lacks. */
  extra: number;
}

export interface AuditReport {
  equal: boolean;
  tables: TableAudit[];
}

export async function auditReplica(client: pg.Client, db: Db, publication = PUBLICATION): Promise<AuditReport> {
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    const tables: TableAudit[] = [];
    for (const table of await publishedTables(client, publication)) {
      const authority = new Map<string, number>();
      let columns: string[] | undefined;
      const count = await eachRow(client, table, (row) => {
        columns ??= Object.keys(row);
        const key = rowKey(columns.map((c) => row[c]));
        authority.set(key, (authority.get(key) ?? 0) + 1);
      });
      let replica = 0;
      let extra = 0;
      if (columns === undefined) {
        // An empty table on the authority: every replica row is extra.
        replica = db.prepare<[], number>(`SELECT count(*) FROM "${table.replace(/"/g, '""')}"`).pluck().get() ?? 0;
        extra = replica;
      } else {
        const select = db
          .prepare(`SELECT ${columns.map((c) => `"${c.replace(/"/g, '""')}"`).join(', ')} FROM "${table.replace(/"/g, '""')}"`)
          .raw(true)
          .safeIntegers(true);
        for (const values of select.iterate() as IterableIterator<unknown[]>) {
          replica++;
          const key = rowKey(values);
          const left = authority.get(key) ?? 0;
          if (left === 0) extra++;
          else if (left === 1) authority.delete(key);
          else authority.set(key, left - 1);
        }
      }
      let missing = 0;
      for (const left of authority.values()) missing += left;
      tables.push({ table, authority: count, replica, missing, extra });
    }
    return { equal: tables.every((t) => t.missing === 0 && t.extra === 0), tables };
  } finally {
    await client.query('COMMIT').catch(() => {});
  }
}

function rowKey(values: readonly unknown[]): string {
  return JSON.stringify(values.map(valueKey));
}

/** One line per table, for a test's failure message or an operator. */
export function describeAudit(report: AuditReport): string {
  return report.tables
    .map((t) => `${t.table}: authority ${t.authority}, replica ${t.replica}, missing ${t.missing}, extra ${t.extra}`)
    .join('; ');
}
