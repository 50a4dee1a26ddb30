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

export function collectStats(db: Db, now: number): Stats {
  const pool = { available: 0, reserved: 0, retired: 0, total: 0 };
  for (const row of db.prepare<[], { state: PoolState; n: number }>('SELECT state, count(*) AS n FROM pool_number GROUP BY state').all()) {
    pool[row.state] = row.n;
    pool.total += row.n;
  }
  const sessions = db
    .prepare<[{ now: number }], Record<SessionState, number>>(
      `SELECT ${SESSION_STATES.map((state) => `coalesce(sum(${stateSql(state)}), 0) AS ${state}`).join(', ')} FROM session`,
    )
    .get({ now })!;
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
