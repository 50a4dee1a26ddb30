/**
 * The store's figures metrics show: pool numbers by state, sessions by state,
 * the busiest party's live sessions, the pool headroom those give, and the
 * webhook outbox's figures (a few counts over its open events). Read
 * in one read transaction, so they agree with one another.
 */
import type { Db } from '../store/db.js';
import { busiestPartyLiveSessions, poolCounts, sessionCounts, type Stats } from '../stats.js';
import { webhookFigures, type WebhookFigures } from '../webhooks/status.js';

export interface StoreFigures {
  /** When they were read (ms since the epoch). */
  at: number;
  /** How long reading them took, ms. */
  tookMs: number;
  pool: Stats['pool'];
  sessions: Stats['sessions'];
  /** The most live sessions (active or in grace) any one party is in. */
  busiestPartyLive: number;
  /**
   * Available pool numbers minus the busiest party's live sessions: how many
   * more sessions that party can surely be given numbers for. Each of a
   * party's live sessions holds a distinct number it dials (the allocation
   * invariant), so a party in k live sessions can be lent only the available
   * numbers outside those k; at 0 or below its next session may be refused
   * with VNUM_POOL_EXHAUSTED. A lower bound: a party's numbers that were
   * reserved or retired since they were lent do not take an available one.
   */
  headroom: number;
  /** The outbox: backlog by state, the oldest undelivered event, running totals. */
  webhooks: WebhookFigures;
}

export function storeFigures(db: Db, now: number): StoreFigures {
  const started = performance.now();
  return db.transaction(() => {
    const pool = poolCounts(db);
    const sessions = sessionCounts(db, now);
    const busiestPartyLive = busiestPartyLiveSessions(db, now);
    const webhooks = webhookFigures(db);
    return { at: now, tookMs: performance.now() - started, pool, sessions, busiestPartyLive, headroom: pool.available - busiestPartyLive, webhooks };
  })();
}
