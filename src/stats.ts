import type { Db } from './store/db.js';
import type { PoolState } from './pool/pool.js';
import { liveSql, SESSION_STATES, stateSql, type SessionState } from './session/state.js';
import { redactNumber } from './log.js';

export interface Stats {
  pool: Record<PoolState, number> & { total: number };
  sessions: Record<SessionState, number>;
  busiestParty: {
    /** Redacted: stats are an overview, not a way to read real numbers. */
    number: string | null;
    liveSessions: number;
    /** Numbers that can be lent automatically (available). */
    poolAvailable: number;
  };
}

/** Pool numbers by state: a scan of the pool, which is small (thousands of numbers). */
export function poolCounts(db: Db): Stats['pool'] {
  const pool = { available: 0, reserved: 0, retired: 0, total: 0 };
  for (const row of db.prepare<[], { state: PoolState; n: number }>('SELECT state, count(*) AS n FROM pool_number GROUP BY state').all()) {
    pool[row.state] = row.n;
    pool.total += row.n;
  }
  return pool;
}

/** Sessions by state at `now`: one scan of the session table (0.65 s at 1,000,000 sessions). */
export function sessionCounts(db: Db, now: number): Stats['sessions'] {
  return db
    .prepare<[{ now: number }], Record<SessionState, number>>(
      `SELECT ${SESSION_STATES.map((state) => `coalesce(sum(${stateSql(state)}), 0) AS ${state}`).join(', ')} FROM session`,
    )
    .get({ now })!;
}

/**
 * The most live sessions any one party is in: its live bridges as a caller
 * (one per live session, by the allocation invariant), counted in the bridge
 * table's key order. One scan of the bridge table (0.9 s at 1,000,000
 * sessions), without the session table's union and sort.
 */
export function busiestPartyLiveSessions(db: Db, now: number): number {
  return (
    db
      .prepare<[{ now: number }], number | null>(`SELECT max(n) FROM (SELECT count(*) AS n FROM bridge WHERE ${liveSql()} GROUP BY caller)`)
      .pluck()
      .get({ now }) ?? 0
  );
}

export function collectStats(db: Db, now: number): Stats {
  const pool = poolCounts(db);
  const sessions = sessionCounts(db, now);
  const busiest = db
    .prepare<[{ now: number }], { party: string; n: number }>(
      `SELECT party, count(*) AS n FROM (
         SELECT first_party AS party FROM session WHERE ${liveSql()}
         UNION ALL
         SELECT second_party FROM session WHERE ${liveSql()}
       ) GROUP BY party ORDER BY n DESC, party LIMIT 1`,
    )
    .get({ now });
  return {
    pool,
    sessions,
    busiestParty: {
      number: busiest ? redactNumber(busiest.party) : null,
      liveSessions: busiest?.n ?? 0,
      poolAvailable: pool.available,
    },
  };
}
