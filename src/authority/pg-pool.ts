import type pg from 'pg';
import { ErrorCode, VnumError } from '../errors.js';
import type { E164 } from '../numbers/normalise.js';
import { HELD_SQL, heldNumber, validateEntries, type HeldRow, type PoolNumber, type PoolState } from '../pool/pool.js';
import { changedHandling, checkHandlingChange, handlingOf, type HandlingRow } from '../pool/handling.js';
import { planPoolChange, type HeldNumber, type PoolPlan, type ValidEntry } from '../pool/plan.js';
import { retireLimit, retireLimitError, syncSummary } from '../pool/sync.js';
import type { Authority } from './authority.js';
import type { PgStore } from './pg-store.js';

/**
 * The pool on the authority: src/pool's rules (validateEntries, the plan,
 * the retire limit) around PostgreSQL's reads and writes. Every change holds
 * the pool lock exclusively (creates hold it shared: src/authority/postgres.ts)
 * and moves meta's pool_revision, which every API process's cached pool and
 * every node's replica follow. Numbers sort as SQLite sorts them (bytes:
 * COLLATE "C"), so pages and cursors are the single box's.
 */
export function pgPoolFaces(store: PgStore, poolLock: number): Pick<Authority, 'listPool' | 'addToPool' | 'retireNumber' | 'syncPool' | 'setNumberHandling'> {
  const changing = <T>(work: (c: pg.PoolClient) => Promise<T>): Promise<T> =>
    store.transaction(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1)', [poolLock]);
      return work(c);
    });

  return {
    listPool: async (query) => {
      const { rows } = await store.query<{ number: E164; country: string; state: PoolState; added_at: number } & HandlingRow>(
        `SELECT number, country, state, added_at, pin_mode, out_of_session, fallback FROM pool_number
          WHERE ($1::text IS NULL OR number COLLATE "C" > $1) AND ($2::text IS NULL OR state = $2)
          ORDER BY number COLLATE "C" LIMIT $3`,
        [query.after ?? null, query.state ?? null, query.limit + 1],
      );
      const numbers: PoolNumber[] = rows
        .slice(0, query.limit)
        .map((r) => ({ number: r.number, country: r.country, state: r.state, addedAt: r.added_at, handling: handlingOf(r) }));
      const more = rows.length > query.limit;
      return { numbers, more, next: more ? numbers.at(-1)!.number : undefined };
    },

    addToPool: async (entries, { defaultCountry, now, rule }) => {
      const valid = validateEntries(entries, defaultCountry);
      return changing(async (c) => {
        await refuseParties(c, valid);
        const plan = planPoolChange(await heldNumbers(c, valid), valid, { writer: rule });
        await applyPlan(c, plan, now);
        const added = plan.changes.filter((change) => change.from === null).length;
        return { added, updated: plan.changes.length - added, unchanged: plan.unchanged, kept: plan.kept };
      });
    },

    retireNumber: (number) =>
      changing(async (c) => {
        const held = (await heldNumbers(c, [{ number }])).get(number);
        if (!held) throw new VnumError(ErrorCode.NotInPool, `${number} is not in the pool`);
        // The operator's retirement is final for a sync (src/pool/pool.ts, retireNumber).
        const tookOverFromSync = held.retiredBy === 'sync';
        if (tookOverFromSync) await c.query('DELETE FROM pool_retired_by_sync WHERE number = $1', [number]);
        if (held.state === 'retired') return { changed: false, tookOverFromSync };
        await c.query("UPDATE pool_number SET state = 'retired' WHERE number = $1", [number]);
        await c.query("UPDATE meta SET value = value + 1 WHERE key = 'pool_revision'");
        return { changed: true, tookOverFromSync };
      }),

    setNumberHandling: async (number, change) => {
      checkHandlingChange(change);
      return store.transaction(async (c) => {
        const { rows } = await c.query<HandlingRow>('SELECT pin_mode, out_of_session, fallback FROM pool_number WHERE number = $1 FOR UPDATE', [number]);
        const desk = change.fallback == null ? [] : (await c.query('SELECT 1 FROM pool_number WHERE number = $1', [change.fallback])).rows;
        const result = changedHandling(number, rows[0] && handlingOf(rows[0]), change, desk.length > 0);
        if (result.changed) {
          await c.query('UPDATE pool_number SET pin_mode = $1, out_of_session = $2, fallback = $3 WHERE number = $4', [
            result.handling.pin, result.handling.outOfSession, result.handling.fallback, number,
          ]);
        }
        return result;
      });
    },

    syncPool: async (entries, options) => {
      if (entries.length === 0) throw new VnumError(ErrorCode.InvalidExport, 'the export lists no numbers: a sync never empties the pool');
      const valid = validateEntries(entries, options.defaultCountry);
      const run = async (c: pg.PoolClient) => {
        await refuseParties(c, valid);
        const held = await heldNumbers(c);
        const plan = planPoolChange(held, valid, { writer: 'sync', unlisted: options.retireMissing ? 'retire' : 'keep' });
        const limit = retireLimit(plan, held, options.maxRetirePercent);
        const summary = syncSummary(plan, limit, options.dryRun);
        if (options.dryRun) return summary;
        if (limit.exceeded) throw retireLimitError(summary);
        await applyPlan(c, plan, options.now);
        return summary;
      };
      // A dry run reads one snapshot and takes no lock.
      return options.dryRun ? store.transaction(run, { readOnly: true }) : changing(run);
    },
  };
}

/** A party's real number must never become a virtual number (src/pool/pool.ts, refuseParties). */
async function refuseParties(c: pg.ClientBase, valid: readonly ValidEntry[]): Promise<void> {
  if (valid.length === 0) return;
  const { rows } = await c.query<{ caller: string }>('SELECT DISTINCT caller FROM bridge WHERE caller = ANY($1)', [valid.map((e) => e.number)]);
  const parties = new Set(rows.map((r) => r.caller));
  const entry = valid.find((e) => parties.has(e.number));
  if (entry) throw new VnumError(ErrorCode.PoolConflict, `${entry.where}${entry.number} is a party's real number in a session; it cannot be a virtual number`);
}

async function heldNumbers(c: pg.ClientBase, entries?: ReadonlyArray<{ number: string }>): Promise<Map<string, HeldNumber>> {
  const { rows } =
    entries === undefined
      ? await c.query<HeldRow>(HELD_SQL)
      : await c.query<HeldRow>(`${HELD_SQL} WHERE p.number = ANY($1)`, [entries.map((e) => e.number)]);
  return new Map(rows.map((row) => [row.number, heldNumber(row)]));
}

async function applyPlan(c: pg.ClientBase, plan: PoolPlan, now: number): Promise<void> {
  if (plan.changes.length === 0) return;
  for (const change of plan.changes) {
    if (change.from === null) {
      await c.query('INSERT INTO pool_number (number, country, state, added_at) VALUES ($1, $2, $3, $4)', [change.number, change.to.country, change.to.state, now]);
    } else {
      await c.query('UPDATE pool_number SET country = $1, state = $2 WHERE number = $3', [change.to.country, change.to.state, change.number]);
    }
    if (change.retiredBy === 'sync') {
      await c.query('INSERT INTO pool_retired_by_sync (number, retired_at) VALUES ($1, $2) ON CONFLICT DO NOTHING', [change.number, now]);
    } else {
      await c.query('DELETE FROM pool_retired_by_sync WHERE number = $1', [change.number]);
    }
  }
  await c.query("UPDATE meta SET value = value + 1 WHERE key = 'pool_revision'");
}
