import type { Logger } from 'pino';
import { FollowedDatabase } from '../store/followed-db.js';
import { judgeFreshness, type Freshness, type FreshnessPolicy } from './freshness.js';
import { replicaHealthReader, type ReplicaHealth } from './health.js';

/**
 * `vnum serve`'s freshness policy at call time: the replica process's health
 * row (health.ts), read through a connection of the gate's own that follows
 * the file as the router's does (a file replaced by `mv` is reopened), at
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
  const store = new FollowedDatabase<() => ReplicaHealth | undefined>({
    path: options.dbPath,
    prepare: replicaHealthReader,
    busyTimeoutMs: 50,
    reopenDelayMs: 1_000,
    logger: log,
    holder: 'freshness gate',
    now,
  });
  let readAt = -Infinity;
  let health: ReplicaHealth | undefined;
  let readFailed = false;
  let current: Freshness | undefined;

  const refresh = (t: number): void => {
    try {
      const read = store.get(); // throws when opening fails, and waits before the next try
      if (read === undefined) throw new Error('the store is reopening');
      try {
        health = read();
      } catch (error) {
        store.drop();
        throw error;
      }
      readFailed = false;
    } catch (error) {
      // The router's own store reports a broken file; here, an unreadable row is no evidence of freshness.
      if (!readFailed) log.error({ err: error }, 'cannot read the replica health row: judging the replica stale');
      readFailed = true;
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
    close: () => store.close(),
  };
}
