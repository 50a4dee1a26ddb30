/**
 * `GET /v1/sessions?party=` (and `vnum session list --party`) reads that
 * party's own index entries, never the session table: at 1,000,000
 * sessions a scan would take a second per page. Shown with SQLite's own
 * query plan for the very statements listSessions prepares.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { listSessions } from '../../src/session/sessions.js';
import type { SessionState } from '../../src/session/state.js';
import { openDb, type Db } from '../../src/store/db.js';

let dir: string;
let db: Db;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vnum-party-index-'));
  db = openDb(join(dir, 'vnum.db'));
});
afterEach(() => {
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The SQL listSessions prepares for this filter, and SQLite's plan for it. */
function planOf(filter: { party?: string; state?: SessionState; after?: number }): string[] {
  return planRows(filter).map((row) => row.detail);
}

function planRows(filter: { party?: string; state?: SessionState; after?: number }): Array<{ id: number; parent: number; detail: string }> {
  const prepared: string[] = [];
  const prepare = db.prepare.bind(db);
  const spy = ((sql: string) => {
    prepared.push(sql);
    return prepare(sql);
  }) as typeof db.prepare;
  db.prepare = spy;
  try {
    listSessions(db, { ...filter, party: filter.party as never, limit: 100, now: Date.now() });
  } finally {
    db.prepare = prepare;
  }
  expect(prepared).toHaveLength(1);
  const parameters = { party: filter.party ?? null, now: Date.now(), after: filter.after ?? Number.MAX_SAFE_INTEGER, limit: 101 };
  return db
    .prepare<Record<string, unknown>, { id: number; parent: number; detail: string }>(`EXPLAIN QUERY PLAN ${prepared[0]}`)
    .all(parameters);
}

it.each([{}, { state: 'active' as const }, { state: 'ended' as const, after: 500 }])('a party filter is two index searches, never a scan (%o)', (extra) => {
  const plan = planOf({ party: '+447911123456', ...extra });
  expect(plan.some((d) => /SEARCH session USING (COVERING )?INDEX session_first_party \(first_party=\?/.test(d)), plan.join('\n')).toBe(true);
  expect(plan.some((d) => /SEARCH session USING (COVERING )?INDEX session_second_party \(second_party=\?/.test(d)), plan.join('\n')).toBe(true);
  expect(plan.filter((d) => /^SCAN session\b/.test(d))).toEqual([]);
  // the index gives the order (by sid): inside each side, no sort of the party's sessions before its page is cut;
  // only the two cut pages (at most limit + 1 rows each) are merged
  const rows = planRows({ party: '+447911123456', ...extra });
  const sides = rows.filter((r) => r.detail.startsWith('CO-ROUTINE')).map((r) => r.id);
  expect(sides).toHaveLength(2);
  expect(rows.filter((r) => sides.includes(r.parent) && /TEMP B-TREE/.test(r.detail))).toEqual([]);
});

it('the check can fail: without a party, the page walks the table (by its key, newest first)', () => {
  const plan = planOf({});
  expect(plan.some((d) => /^SCAN session\b|SEARCH session USING INTEGER PRIMARY KEY/.test(d))).toBe(true);
  expect(plan.some((d) => /session_first_party/.test(d))).toBe(false);
});
