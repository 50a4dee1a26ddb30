/**
 * Issue 15: a node SIGKILLed mid-apply, 50 times, while a writer commits to
 * the authority: its replica ends whole and equal to PostgreSQL row by row,
 * every transaction applied once (the replica's own history of a counter
 * that every transaction increments climbs by exactly one), and at no
 * moment has PostgreSQL been told more than the file holds (the slot's
 * confirmed position never passes the file's applied position).
 *
 * The kills, in turn: inside the SQLite transaction (a trigger in the node's
 * process kills it at the n-th row written, snapshot copy included), right
 * after a transaction's SQLite commit and before PostgreSQL is told, and
 * from outside at a random moment (start-up, connect, stream, apply).
 */
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { parseLsn } from '../../src/replica/lsn.js';
import { openDb } from '../../src/store/db.js';
import { prng } from '../../bench/seed.js';
import { audit, barrier, counterHistoryProblems, sleep } from '../support/cluster/checks.js';
import { startNode, type NodeConfig } from '../support/cluster/node.js';
import { clusterSuite } from '../support/cluster/suite.js';
import { Writer } from '../support/cluster/writer.js';

const TRIALS = 50;

clusterSuite('a node killed mid-apply', (env) => {
  function fileApplied(path: string): bigint | undefined {
    try {
      const db = openDb(path, { readonly: true });
      try {
        const lsn = db.prepare<[], string>('SELECT applied_lsn FROM replica_state').pluck().get();
        return lsn === undefined ? undefined : parseLsn(lsn);
      } finally {
        db.close();
      }
    } catch {
      return undefined; // not created or not migrated yet
    }
  }

  it(`${TRIALS} SIGKILLs while a writer commits: the replica ends equal to PostgreSQL, nothing lost or applied twice`, async () => {
    const { target, client } = await env.authority();
    const writer = new Writer(client, 'crash', 0);
    for (let i = 0; i < 200; i++) await writer.next();
    let writing = true;
    const written = writer.run(150, () => !writing);
    written.catch(() => {});

    const random = prng(1515);
    const base: NodeConfig = { db: join(env.dir, 'crash.db'), target, node: 'crash', statusEveryMs: 1_000 };
    const kinds = { 'in-apply': 0, 'after-commit': 0, outside: 0 };
    let previous: bigint | undefined;
    try {
      for (let trial = 0; trial < TRIALS; trial++) {
        const kind = (['in-apply', 'after-commit', 'outside'] as const)[trial % 3]!;
        // The first trial dies inside the snapshot copy (~500 rows), later in-apply ones inside streamed transactions.
        const crash =
          kind === 'in-apply' ? { kind, at: trial === 0 ? 1 + Math.floor(random() * 300) : 1 + Math.floor(random() * 120) }
          : kind === 'after-commit' ? { kind, at: 1 + Math.floor(random() * 25) }
          : undefined;
        const replica = startNode({ ...base, ...(crash ? { crash } : {}) });
        const outsideAfter = kind === 'outside' ? 100 + random() * 700 : 8_000;
        const timer = setTimeout(() => replica.child.kill('SIGKILL'), outsideAfter);
        const { signal } = await replica.exited;
        clearTimeout(timer);
        expect(signal, replica.stderr()).toBe('SIGKILL');
        kinds[kind]++;

        // PostgreSQL never holds a confirmation the file does not cover.
        const applied = fileApplied(base.db);
        if (applied !== undefined) {
          if (previous !== undefined) expect(applied >= previous, `trial ${trial}: applied position went backwards`).toBe(true);
          previous = applied;
          let confirmed: string | null | undefined;
          for (let i = 0; i < 50; i++) {
            // The slot's walsender may outlive the killed process by a moment; its position is final once it is inactive.
            const { rows } = await client.query<{ confirmed_flush_lsn: string | null; active: boolean }>(
              `SELECT confirmed_flush_lsn::text, active FROM pg_replication_slots WHERE slot_name = 'vnum_crash'`,
            );
            confirmed = rows[0]?.confirmed_flush_lsn;
            if (!rows[0]?.active) break;
            await sleep(20);
          }
          if (confirmed) expect(parseLsn(confirmed) <= applied, `trial ${trial} (${kind}): slot confirmed ${confirmed} beyond the file`).toBe(true);
        }
      }
    } finally {
      writing = false;
      await written;
    }
    expect(kinds).toEqual({ 'in-apply': 17, 'after-commit': 17, outside: 16 });

    const last = startNode(base);
    try {
      await barrier(client, [base.db], 30_000);
      const report = await audit(target, base.db);
      expect(report.equal, report.text).toBe(true);
      expect(report.tables.find((t) => t.table === 'session')!.authority).toBeGreaterThan(300);
      const history = counterHistoryProblems(base.db);
      expect(history.problems).toEqual([]);
      // Every committed increment is in the history once, after the last build.
      const { rows } = await client.query<{ value: string }>("SELECT value FROM meta WHERE key = 'test_counter'");
      const db = openDb(base.db, { readonly: true });
      const lastBuild = db.prepare<[], number>("SELECT max(seq) FROM test_counter_log WHERE how = 'insert'").pluck().get()!;
      const after = db.prepare<[number], { value: number }>('SELECT value FROM test_counter_log WHERE seq >= ? ORDER BY seq').all(lastBuild);
      db.close();
      expect(after.at(-1)!.value).toBe(Number(rows[0]!.value));
      expect(after.length).toBe(after.at(-1)!.value - after[0]!.value + 1);
      await last.waitForStatus((s) => s.phase === 'streaming', 10_000, 'streaming');
    } finally {
      await last.stop();
      await client.end();
    }
  }, 240_000);
});
