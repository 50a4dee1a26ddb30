import { loadavg } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { PgTarget } from '../src/replica/stream.js';
import { openDb } from '../src/store/db.js';
import { migratePg } from '../src/store/pg/migrate.js';
import { PgCluster } from '../test/support/cluster/pg.js';
import { formatCount, type BenchContext } from './benchmark.js';
import { seedStore, type SeededStore } from './seed.js';

/** What a cluster benchmark measures on: the single box's store and an authority holding the same rows. */
export interface SeededAuthority {
  store: SeededStore;
  cluster: PgCluster;
  target: PgTarget;
  /** A connection to the authority's database (closed afterwards). */
  client: pg.Client;
  /** The 1-minute load average, from the start on; the benchmark pushes more as it goes. */
  load: number[];
}

/**
 * Seeds the single box's file (bench/seed.ts), starts a private PostgreSQL 15
 * with `settings`, makes cluster mode's schema and copies the file's rows
 * into it, then runs `body`; the cluster is stopped and removed afterwards.
 */
export async function withSeededAuthority<T>(
  context: BenchContext,
  options: { sessions: number; poolSize: number; copyBatch: number; settings: Record<string, string> },
  body: (seeded: SeededAuthority) => Promise<T>,
): Promise<T> {
  const load = [loadavg()[0]!];
  context.log(`seeding ${formatCount(options.sessions)} sessions (the single box's file); load average ${load[0]!.toFixed(2)}`);
  const store = seedStore(join(context.workDir, 'single.db'), { sessions: options.sessions, poolSize: options.poolSize, log: context.log });
  context.log(`seeded in ${(store.seedMs / 1000).toFixed(1)} s`);
  const cluster = await PgCluster.start({ settings: options.settings });
  try {
    const target = await cluster.createDatabase('bench');
    const client = new pg.Client({ ...target });
    await client.connect();
    try {
      await migratePg(client);
      const started = performance.now();
      await copyToAuthority(store.path, client, options.copyBatch, context.log);
      context.log(`authority holds the same rows (${((performance.now() - started) / 1000).toFixed(1)} s)`);
      return await body({ store, cluster, target, client, load });
    } finally {
      await client.end();
    }
  } finally {
    cluster.remove();
  }
}

/**
 * pool_number, session (with its sid: COPY-like, OVERRIDING SYSTEM VALUE),
 * bridge and meta's pool_revision from the SQLite file into PostgreSQL, in
 * batches of unnest()ed arrays. Bridges go in with their session, in sid
 * order, as creates would have written them: the snapshot reads the heap in
 * that order, so the replica's B-trees grow as a real node's would.
 */
export async function copyToAuthority(path: string, client: pg.Client, batch: number, log: (line: string) => void): Promise<void> {
  const db = openDb(path, { readonly: true });
  try {
    await client.query('SET synchronous_commit = off');
    const pool = db.prepare<[], { number: string; country: string; state: string; added_at: number }>('SELECT number, country, state, added_at FROM pool_number').all();
    await client.query(
      `INSERT INTO pool_number (number, country, state, added_at) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[])`,
      [pool.map((r) => r.number), pool.map((r) => r.country), pool.map((r) => r.state), pool.map((r) => r.added_at)],
    );
    const revision = db.prepare<[], number>(`SELECT value FROM meta WHERE key = 'pool_revision'`).pluck().get()!;
    await client.query(`UPDATE meta SET value = $1 WHERE key = 'pool_revision'`, [revision]);

    const sessions = db.prepare<[number, number], SessionRow>(
      `SELECT sid, id, first_party, first_masked_as, second_party, second_masked_as, created_at, expires_at, released_at, ends_at
         FROM session WHERE sid > ? ORDER BY sid LIMIT ?`,
    );
    const bridge = db.prepare<[string, string], BridgeRow>('SELECT caller, dialled, sid, target, target_type, lent_at, ends_at FROM bridge WHERE caller = ? AND dialled = ?');
    let last = 0;
    let copied = 0;
    for (;;) {
      const rows = sessions.all(last, batch);
      if (rows.length === 0) break;
      last = rows[rows.length - 1]!.sid;
      const bridges: BridgeRow[] = [];
      for (const s of rows) {
        // A session's two bridges: each party dials the other's masked number.
        for (const [caller, dialled] of [[s.second_party, s.first_masked_as], [s.first_party, s.second_masked_as]] as const) {
          const b = bridge.get(caller, dialled);
          if (b && b.sid === s.sid) bridges.push(b);
        }
      }
      await client.query('BEGIN');
      await client.query(
        `INSERT INTO session (sid, id, first_party, first_masked_as, second_party, second_masked_as, created_at, expires_at, released_at, ends_at)
         OVERRIDING SYSTEM VALUE
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[])`,
        columns(rows, ['sid', 'id', 'first_party', 'first_masked_as', 'second_party', 'second_masked_as', 'created_at', 'expires_at', 'released_at', 'ends_at']),
      );
      await client.query(
        `INSERT INTO bridge (caller, dialled, sid, target, target_type, lent_at, ends_at)
         SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::int[], $6::bigint[], $7::bigint[])`,
        columns(bridges, ['caller', 'dialled', 'sid', 'target', 'target_type', 'lent_at', 'ends_at']),
      );
      await client.query('COMMIT');
      copied += rows.length;
      if (copied % (batch * 10) === 0) log(`copied ${formatCount(copied)} sessions to the authority`);
    }
    await client.query(`SELECT setval(pg_get_serial_sequence('session', 'sid'), (SELECT max(sid) FROM session))`);
    const counts = await client.query<{ sessions: string; bridges: string }>('SELECT (SELECT count(*) FROM session) AS sessions, (SELECT count(*) FROM bridge) AS bridges');
    const local = db.prepare<[], { sessions: number; bridges: number }>('SELECT (SELECT count(*) FROM session) AS sessions, (SELECT count(*) FROM bridge) AS bridges').get()!;
    if (Number(counts.rows[0]!.sessions) !== local.sessions || Number(counts.rows[0]!.bridges) !== local.bridges) {
      throw new Error(`the authority holds ${JSON.stringify(counts.rows[0])}, the single box ${JSON.stringify(local)}`);
    }
    await client.query('ANALYZE');
    await client.query('RESET synchronous_commit');
  } finally {
    db.close();
  }
}

interface SessionRow {
  sid: number;
  id: string;
  first_party: string;
  first_masked_as: string;
  second_party: string;
  second_masked_as: string;
  created_at: number;
  expires_at: number | null;
  released_at: number | null;
  ends_at: number | null;
}

interface BridgeRow {
  caller: string;
  dialled: string;
  sid: number;
  target: string;
  target_type: number | null;
  lent_at: number;
  ends_at: number | null;
}

function columns<T>(rows: T[], names: (keyof T)[]): unknown[][] {
  return names.map((name) => rows.map((row) => row[name]));
}
