/**
 * A session's life: active -> grace (released, still routing) -> ended.
 * The state is derived from time at every read, so expiry is enforced when a
 * call is looked up, not only when some sweeper runs.
 */
export const SESSION_STATES = ['active', 'grace', 'ended'] as const;
export type SessionState = (typeof SESSION_STATES)[number];

export interface SessionTimes {
  /** When the TTL given at create runs out; null: no TTL. */
  expiresAt: number | null;
  releasedAt: number | null;
  /** When the session stops routing: min(expiresAt, releasedAt + grace); null: open-ended. */
  endsAt: number | null;
}

export function sessionState(times: SessionTimes, now: number): SessionState {
  if (times.endsAt !== null && times.endsAt <= now) return 'ended';
  return times.releasedAt === null ? 'active' : 'grace';
}

export function isLive(endsAt: number | null, now: number): boolean {
  return endsAt === null || endsAt > now;
}

/** Release never extends a session: grace ends no later than the TTL or an earlier release. */
export function endAfterRelease(times: SessionTimes, now: number, graceMs: number): number {
  const graceEnd = now + graceMs;
  return times.endsAt === null ? graceEnd : Math.min(times.endsAt, graceEnd);
}

/** A sliding session's end after activity at \`at\`: \`at\` + idle, never past the TTL's hard end. */
export function slidEnd(expiresAt: number | null, idleMs: number, at: number): number {
  return expiresAt === null ? at + idleMs : Math.min(expiresAt, at + idleMs);
}

/**
 * The same rules in SQL, over a row's `released_at` and `ends_at` (of `table`
 * when given, e.g. `s`) and a `@now` parameter: for queries that filter or
 * count sessions, or bridges, which have an `ends_at` of their own.
 */
export function liveSql(table?: string): string {
  const column = table === undefined ? 'ends_at' : `${table}.ends_at`;
  return `(${column} IS NULL OR ${column} > @now)`;
}

export function stateSql(state: SessionState, table?: string): string {
  const prefix = table === undefined ? '' : `${table}.`;
  switch (state) {
    case 'active':
      return `${prefix}released_at IS NULL AND ${liveSql(table)}`;
    case 'grace':
      return `${prefix}released_at IS NOT NULL AND ${prefix}ends_at > @now`;
    case 'ended':
      return `${prefix}ends_at <= @now`;
  }
}
