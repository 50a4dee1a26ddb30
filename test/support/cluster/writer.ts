import type pg from 'pg';
import { numberType, numberTypeCode } from '../../../src/numbers/type.js';

/**
 * Writes to the authority what cluster mode's domain will write (it does not
 * exist yet: allocation on PostgreSQL is later work), in SQL, one
 * transaction per step, with every kind of change the replica must carry:
 * creates (a session and its two bridges), releases (updates of a session
 * and its bridges), pool numbers added and deleted with the pool revision
 * bumped, a bridge's key changed (the old key is sent), a bridge deleted,
 * NULL end times, and a value past 2^53. Every transaction also increments
 * meta's 'test_counter', so the replica's history of that row shows any
 * transaction applied twice or skipped.
 *
 * Parties are unique per session (+447911NNNNNN) and masked numbers come
 * from a pool of ten London DIDs, so every created session routes.
 */

export const DIDS = Array.from({ length: 10 }, (_, i) => `+4420794600${String(i + 1).padStart(2, '0')}`);
export const BIG = 9_007_199_254_740_993n; // 2^53 + 1: must stay exact

export function partyNumber(n: number): string {
  return `+447911${String(n).padStart(6, '0')}`;
}

/** bridge.target_type as the single box's store writes it. */
function typeCode(target: string): number {
  return numberTypeCode(numberType(target));
}

export interface CreatedSession {
  id: string;
  first: string;
  second: string;
  firstMaskedAs: string;
  secondMaskedAs: string;
}

export class Writer {
  /** Transactions committed by this writer. */
  committed = 0;
  private step = 0;
  private readonly created: CreatedSession[] = [];
  private readonly added: string[] = [];

  constructor(
    private readonly client: pg.Client,
    private readonly prefix: string,
    /** Party numbers start here (keep writers of one database 1,000,000 apart; up to 250,000 steps each). */
    private readonly partyBase: number,
  ) {}

  /** The pool, the counter and the big value (idempotent). */
  static async seed(client: pg.Client): Promise<void> {
    const now = Date.now();
    await client.query('BEGIN');
    for (const did of DIDS) {
      await client.query(`INSERT INTO pool_number (number, country, state, added_at) VALUES ($1, 'GB', 'available', $2) ON CONFLICT DO NOTHING`, [did, now]);
    }
    await client.query(`INSERT INTO meta (key, value) VALUES ('test_counter', 0), ('test_big', $1) ON CONFLICT DO NOTHING`, [BIG.toString()]);
    await client.query(`UPDATE meta SET value = value + 1 WHERE key = 'pool_revision'`);
    await client.query('COMMIT');
  }

  /** One transaction. */
  async next(): Promise<void> {
    const i = this.step++;
    const now = Date.now();
    await this.client.query('BEGIN');
    try {
      if (i % 5 === 4 && this.created.length > 0) await this.release(this.created[(i * 7) % this.created.length]!, now);
      else if (i % 7 === 6) await this.poolChurn(i, now);
      else if (i % 13 === 12 && this.created.length > 0) await this.moveBridge(this.created[(i * 3) % this.created.length]!, i);
      else if (i % 17 === 16 && this.created.length > 0) await this.deleteBridge(this.created.shift()!);
      else await this.create(i, now);
      await this.client.query(`UPDATE meta SET value = value + 1 WHERE key = 'test_counter'`);
      await this.client.query('COMMIT');
      this.committed++;
    } catch (error) {
      await this.client.query('ROLLBACK').catch(() => {});
      throw error;
    }
  }

  /** Create one session now and return it (for routing checks). */
  async createOne(): Promise<CreatedSession> {
    await this.client.query('BEGIN');
    const session = await this.create(this.step++, Date.now());
    await this.client.query(`UPDATE meta SET value = value + 1 WHERE key = 'test_counter'`);
    await this.client.query('COMMIT');
    this.committed++;
    return session;
  }

  /** Steps at about `perSecond` until `stop()` says so; resolves with the count. */
  async run(perSecond: number, stop: () => boolean): Promise<number> {
    const started = performance.now();
    let n = 0;
    while (!stop()) {
      await this.next();
      n++;
      const wait = started + (n * 1000) / perSecond - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    return n;
  }

  private async create(i: number, now: number): Promise<CreatedSession> {
    const first = partyNumber(this.partyBase + 2 * i);
    const second = partyNumber(this.partyBase + 2 * i + 1);
    const firstMaskedAs = DIDS[i % DIDS.length]!;
    const secondMaskedAs = DIDS[(i + 3) % DIDS.length]!;
    const endsAt = i % 3 === 0 ? null : now + 3_600_000;
    const id = `${this.prefix}-${i}`;
    const { rows } = await this.client.query<{ sid: string }>(
      `INSERT INTO session (id, first_party, first_masked_as, second_party, second_masked_as, created_at, expires_at, ends_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING sid`,
      [id, first, firstMaskedAs, second, secondMaskedAs, now, endsAt],
    );
    await this.client.query(
      `INSERT INTO bridge (caller, dialled, sid, target, target_type, lent_at, ends_at)
       VALUES ($1, $2, $5, $3, $8, $6, $7), ($3, $4, $5, $1, $9, $6, $7)`,
      [second, firstMaskedAs, first, secondMaskedAs, rows[0]!.sid, now, endsAt, typeCode(first), typeCode(second)],
    );
    const session = { id, first, second, firstMaskedAs, secondMaskedAs };
    this.created.push(session);
    return session;
  }

  private async release(s: CreatedSession, now: number): Promise<void> {
    const endsAt = now + 60_000;
    await this.client.query(`UPDATE session SET released_at = coalesce(released_at, $2), ends_at = $3 WHERE id = $1`, [s.id, now, endsAt]);
    await this.client.query(`UPDATE bridge SET ends_at = $2 WHERE sid = (SELECT sid FROM session WHERE id = $1)`, [s.id, endsAt]);
  }

  private async poolChurn(i: number, now: number): Promise<void> {
    if (this.added.length >= 3) {
      await this.client.query('DELETE FROM pool_number WHERE number = $1', [this.added.shift()!]);
    }
    const number = `+4420795${String(this.partyBase + i).padStart(7, '0').slice(-5)}`;
    await this.client.query(
      `INSERT INTO pool_number (number, country, state, added_at) VALUES ($1, 'GB', $2, $3) ON CONFLICT (number) DO UPDATE SET state = excluded.state`,
      [number, i % 2 === 0 ? 'available' : 'reserved', now],
    );
    this.added.push(number);
    await this.client.query(`UPDATE meta SET value = value + 1 WHERE key = 'pool_revision'`);
  }

  /** A bridge's key changes: the replica must find the row by its old key. */
  private async moveBridge(s: CreatedSession, i: number): Promise<void> {
    const moved = partyNumber(this.partyBase + 500_000 + i);
    const done = await this.client.query(`UPDATE bridge SET caller = $3 WHERE caller = $1 AND dialled = $2`, [s.first, s.secondMaskedAs, moved]);
    if (done.rowCount === 1) s.first = moved;
  }

  private async deleteBridge(s: CreatedSession): Promise<void> {
    await this.client.query(`DELETE FROM bridge WHERE caller = $1 AND dialled = $2`, [s.second, s.firstMaskedAs]);
  }
}

/** `count` more sessions with their two bridges, in SQL on the authority (parties +4479/+4478 and 8 digits; large seeds in seconds). */
export async function seedSessions(client: pg.Client, count: number): Promise<void> {
  const now = Date.now();
  await client.query('BEGIN');
  const { rows } = await client.query<{ first: string }>(`SELECT coalesce(max(sid), 0) + 1 AS first FROM session`);
  await client.query(
    `INSERT INTO session (id, first_party, first_masked_as, second_party, second_masked_as, created_at, expires_at, ends_at)
     SELECT 'seed-' || g, '+4479' || lpad(g::text, 8, '0'), '+442079460001', '+4478' || lpad(g::text, 8, '0'), '+442079460002', $3, $4, $4
       FROM generate_series($1::bigint, $1::bigint + $2::int - 1) g`,
    [rows[0]!.first, count, now, now + 86_400_000],
  );
  await client.query(
    `INSERT INTO bridge (caller, dialled, sid, target, target_type, lent_at, ends_at)
     SELECT second_party, first_masked_as, sid, first_party, $2::int, created_at, ends_at FROM session WHERE id LIKE 'seed-%' AND sid >= $1
     UNION ALL SELECT first_party, second_masked_as, sid, second_party, $2::int, created_at, ends_at FROM session WHERE id LIKE 'seed-%' AND sid >= $1`,
    [rows[0]!.first, numberTypeCode('mobile')],
  );
  await client.query('COMMIT');
}
