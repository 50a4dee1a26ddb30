/**
 * When a failed event is tried again: exponential back-off with jitter,
 * for a bounded time, then parked (README, "Retries").
 *
 * The n-th failure waits min(backoffMax, backoffMin x 2^(n-1)), scaled by a
 * random factor from 0.5 to 1 (so receivers coming back are not hit by
 * every deliverer's retries at the same instant). The window starts at the
 * event's first failure; the last attempt is made when it closes, and a
 * failure then parks the event.
 */
export interface RetryPolicy {
  backoffMinMs: number;
  backoffMaxMs: number;
  /** How long after its first failure an event is still tried. */
  retryForMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = Object.freeze({
  backoffMinMs: 10_000,
  backoffMaxMs: 3_600_000,
  retryForMs: 3 * 86_400_000,
});

export type AfterFailure = { parked: true } | { parked: false; nextAt: number };

export function afterFailure(policy: RetryPolicy, failures: number, firstFailedAt: number, now: number, random: () => number = Math.random): AfterFailure {
  const closesAt = firstFailedAt + policy.retryForMs;
  if (now >= closesAt) return { parked: true };
  const exponent = Math.min(Math.max(failures - 1, 0), 40);
  const wait = Math.min(policy.backoffMaxMs, policy.backoffMinMs * 2 ** exponent) * (0.5 + random() / 2);
  return { parked: false, nextAt: Math.min(closesAt, now + Math.max(1, Math.round(wait))) };
}
