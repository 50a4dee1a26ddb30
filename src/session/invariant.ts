import type { Db } from '../store/db.js';
import { liveSql } from './state.js';

export interface InvariantViolation {
  /** shared: two live sessions in which `caller` dials `dialled`; unrouted: a live session whose bridge row is not its own; stale: a bridge whose end differs from its session's. */
  kind: 'shared' | 'unrouted' | 'stale';
  caller: string;
  dialled: string;
}

/**
 * Audit of the allocation invariant, from the sessions themselves (the source
 * of truth), and of the bridge rows that routing and allocation read instead
 * of the sessions. Always empty. Full scans: for tests, benchmarks and audits,
 * never for the call path.
 */
export function invariantViolations(db: Db, now: number): InvariantViolation[] {
  return db.prepare<[{ now: number }], InvariantViolation>(invariantSql('sqlite')).all({ now });
}

/**
 * The audit's query, with an `@now` parameter, in SQLite's SQL or
 * PostgreSQL's (cluster mode's authority holds the same tables): they differ
 * only in how NULL-safe equality is written.
 */
export function invariantSql(dialect: 'sqlite' | 'postgres'): string {
  const same = dialect === 'sqlite' ? 'IS' : 'IS NOT DISTINCT FROM';
  const differs = dialect === 'sqlite' ? 'IS NOT' : 'IS DISTINCT FROM';
  return `WITH live AS (
       SELECT sid, ends_at, first_party, first_masked_as, second_party, second_masked_as FROM session
        WHERE ${liveSql()}
     ),
     dials AS (
       SELECT sid, ends_at, second_party AS caller, first_masked_as AS dialled FROM live
       UNION ALL
       SELECT sid, ends_at, first_party, second_masked_as FROM live
     )
     SELECT 'shared' AS kind, caller, dialled FROM dials GROUP BY caller, dialled HAVING count(*) > 1
     UNION ALL
     SELECT 'unrouted', d.caller, d.dialled FROM dials d
      WHERE NOT EXISTS (SELECT 1 FROM bridge b WHERE b.caller = d.caller AND b.dialled = d.dialled AND b.sid = d.sid AND b.ends_at ${same} d.ends_at)
     UNION ALL
     SELECT 'stale', b.caller, b.dialled FROM bridge b JOIN session s ON s.sid = b.sid WHERE b.ends_at ${differs} s.ends_at`;
}
