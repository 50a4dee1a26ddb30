import { existsSync } from 'node:fs';
import type pg from 'pg';
import { auditReplica, describeAudit, type AuditReport } from '../../../src/replica/audit.js';
import { openSqlClient } from '../../../src/replica/snapshot.js';
import type { PgTarget } from '../../../src/replica/stream.js';
import { openDb } from '../../../src/store/db.js';
import { vnum } from '../cli.js';
import { sleep } from '../wait.js';

export { sleep };

/** What the cluster tests check on a replica file, from outside the node's process. */

/** `probe`'s first value other than undefined, asked every 50 ms; fails naming `what` after `timeoutMs`. */
export async function eventually<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`no ${what} within ${timeoutMs} ms`);
    await sleep(50);
  }
}

/** The replica file compared with the authority, row by row (src/replica/audit.ts). */
export async function audit(target: PgTarget, dbPath: string): Promise<AuditReport & { text: string }> {
  const client = await openSqlClient(target, 5_000, 'vnum-test-audit');
  const db = openDb(dbPath, { readonly: true });
  try {
    const report = await auditReplica(client, db);
    return { ...report, text: describeAudit(report) };
  } finally {
    db.close();
    await client.end();
  }
}

/** A meta value on the replica; undefined while the file is missing or not yet migrated by its node. */
function readMeta(dbPath: string, key: string): number | undefined {
  if (!existsSync(dbPath)) return undefined;
  let db;
  try {
    db = openDb(dbPath, { readonly: true });
    return db.prepare<[string], number>('SELECT value FROM meta WHERE key = ?').pluck().get(key);
  } catch {
    return undefined;
  } finally {
    db?.close();
  }
}

/**
 * A barrier: commit a new value of meta's 'test_barrier' on the authority and
 * wait until each replica has it. Transactions apply in commit order, so
 * everything committed before the barrier is then on the replica.
 */
export async function barrier(client: pg.Client, dbPaths: readonly string[], timeoutMs = 20_000): Promise<void> {
  const { rows } = await client.query<{ value: string }>(
    `INSERT INTO meta (key, value) VALUES ('test_barrier', 1)
     ON CONFLICT (key) DO UPDATE SET value = meta.value + 1 RETURNING value`,
  );
  const want = Number(rows[0]!.value);
  const deadline = Date.now() + timeoutMs;
  for (const path of dbPaths) {
    while (readMeta(path, 'test_barrier') !== want) {
      if (Date.now() > deadline) throw new Error(`replica ${path} did not reach barrier ${want} within ${timeoutMs} ms`);
      await sleep(25);
    }
  }
}

/**
 * The history of meta's 'test_counter' on the replica (test_counter_log,
 * written inside the apply transactions by workers/replica.mjs): after each
 * build from a snapshot (an insert) the values must climb by exactly one,
 * every increment applied once and none skipped.
 */
export function counterHistoryProblems(dbPath: string): { problems: string[]; entries: number; builds: number } {
  const db = openDb(dbPath, { readonly: true });
  try {
    const log = db.prepare<[], { value: number; how: string }>('SELECT value, how FROM test_counter_log ORDER BY seq').all();
    const problems: string[] = [];
    let builds = 0;
    for (let i = 0; i < log.length; i++) {
      const { value, how } = log[i]!;
      if (how === 'insert') {
        builds++;
        continue;
      }
      const before = log[i - 1];
      if (!before) problems.push(`update to ${value} before any insert`);
      else if (value !== before.value + 1) problems.push(`${before.value} -> ${value}`);
    }
    return { problems, entries: log.length, builds };
  } finally {
    db.close();
  }
}

/** What `vnum route` (the router's own decision code) answers from the replica file. */
export function routeFrom(dbPath: string, caller: string, dialled: string): { status: string; target: string | null; session: string | null } {
  const run = vnum(['--db', dbPath, 'route', caller, dialled, '--json'], { VNUM_DEFAULT_COUNTRY: 'GB' });
  if (run.code !== 0) throw new Error(`vnum route failed (${run.code}): ${run.stderr}`);
  return JSON.parse(run.stdout) as { status: string; target: string | null; session: string | null };
}
