import type { Logger } from 'pino';
import { openDb, type Db } from '../store/db.js';
import { judgeFreshness, type Freshness, type FreshnessPolicy } from './freshness.js';
import { replicaHealthReader, type ReplicaHealth } from './health.js';

/**
 * `vnum serve`'s freshness policy at call time: the replica process's health
 * row (health.ts), read through a read-only connection of the gate's own at
 * most every `readEveryMs` (the bound is seconds; a point read per call
 * would only cost), judged by freshness.ts. Logs each change between fresh
 * and stale once, not per call.
 */
export interface FreshnessGate {
  /** Why calls are refused now (fail-closed and stale); undefined when they route. */
  refusal(): string | undefined;
  freshness(): Freshness;
  close(): void;
}

export interface GateOptions {
  dbPath: string;
  policy: FreshnessPolicy;
  logger: Logger;
  now?: () => number;
  readEveryMs?: number;
}

export function createFreshnessGate(options: GateOptions): FreshnessGate {
  const now = options.now ?? Date.now;
  const readEveryMs = options.readEveryMs ?? 100;
  const log = options.logger;
  let db: Db | undefined;
  let read: (() => ReplicaHealth | undefined) | undefined;
  let readAt = -Infinity;
  let health: ReplicaHealth | undefined;
  let readFailed = false;
  let current: Freshness | undefined;

  const refresh = (t: number): void => {
    try {
      if (!read) {
        db = openDb(options.dbPath, { mode: 'read' });
        read = replicaHealthReader(db);
      }
      health = read();
      readFailed = false;
    } catch (error) {
      // The router's own store reports a broken file; here, an unreadable row is no evidence of freshness.
      if (!readFailed) log.error({ err: error }, 'cannot read the replica health row: judging the replica stale');
      readFailed = true;
      db?.close();
      db = undefined;
      read = undefined;
      health = health && { ...health, freshAt: null };
    }
    readAt = t;
  };

  const judge = (): Freshness => {
    const t = now();
    if (t - readAt >= readEveryMs) refresh(t);
    const next = judgeFreshness(health, t, options.policy);
    if (current === undefined || next.stale !== current.stale) {
      const fields = { node: health?.node ?? null, ageMs: next.ageMs, staleAfterMs: options.policy.staleAfterMs, whenStale: options.policy.whenStale };
      if (!next.replica && !next.stale) {
        if (current === undefined) log.info(fields, 'single box: no replica process reports into this file');
      } else if (next.stale) log.warn(fields, next.refusal ? 'replica stale: refusing every call (fail-closed)' : 'replica stale: routing the sessions it has (keep-routing)');
      else if (current !== undefined) log.info(fields, 'replica fresh again');
    }
    current = next;
    return next;
  };

  return {
    refusal: () => judge().refusal,
    freshness: judge,
    close() {
      db?.close();
      db = undefined;
      read = undefined;
    },
  };
}
