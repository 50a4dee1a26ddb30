import type { ReplicaHealth } from './health.js';

/**
 * The freshness policy of a node's `vnum serve` (docs/cluster.md,
 * "Freshness"), judged per call from the health row the replica process
 * writes (health.ts). Pure.
 *
 * - keep-routing (the default): a stale node routes the sessions it has.
 *   Expiry is judged at lookup time from the replicated end times, so TTLs
 *   end on a cut node too; a session created meanwhile is not there (its
 *   calls get NO_SESSION on this node, never someone else); a release made
 *   meanwhile takes effect when the node hears again.
 * - fail-closed: past the bound every call is refused (ERROR): nothing
 *   routes from a view older than the bound, and nothing routes at all.
 */
export const WHEN_STALE = ['keep-routing', 'fail-closed'] as const;
export type WhenStale = (typeof WHEN_STALE)[number];

export interface FreshnessPolicy {
  whenStale: WhenStale;
  /** How old the node's view may be before it is stale (ms). */
  staleAfterMs: number;
}

export const FRESHNESS_DEFAULTS: FreshnessPolicy = Object.freeze({ whenStale: 'keep-routing', staleAfterMs: 10_000 });

export interface Freshness {
  /** False when no replica process has ever reported into the file: a single box (keep-routing: the policy does not apply). */
  replica: boolean;
  /** How old the node's view is (ms), null when it was never fresh. */
  ageMs: number | null;
  stale: boolean;
  /** Why a call is refused (fail-closed and stale), for the log; undefined when calls route. */
  refusal: string | undefined;
}

export function judgeFreshness(health: ReplicaHealth | undefined, now: number, policy: FreshnessPolicy): Freshness {
  if (health === undefined) {
    // No replica process has ever reported into this file: a single box, or a node whose replica never ran.
    // fail-closed was chosen for a node: without evidence of freshness, nothing routes.
    if (policy.whenStale === 'keep-routing') return { replica: false, ageMs: null, stale: false, refusal: undefined };
    return { replica: false, ageMs: null, stale: true, refusal: 'no replica process has ever reported into this file (vnum replica) and the policy is fail-closed' };
  }
  const ageMs = health.freshAt === null ? null : Math.max(0, now - health.freshAt);
  const stale = ageMs === null || ageMs > policy.staleAfterMs;
  const refusal =
    stale && policy.whenStale === 'fail-closed'
      ? `the replica of node ${health.node} is stale (${ageMs === null ? 'never caught up' : `last fresh ${ageMs} ms ago`}, bound ${policy.staleAfterMs} ms) and the policy is fail-closed`
      : undefined;
  return { replica: true, ageMs, stale, refusal };
}
