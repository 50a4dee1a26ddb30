import { isoTime } from '../time.js';

/**
 * A release's request to hang up its session's calls in progress, and the
 * answer the faces (`vnum session release --hangup`, `POST
 * /v1/sessions/{id}/release` with `"hangup": true`) give about it.
 *
 * On a single box the release marks the session's open calls itself
 * (call.hangup_requested_at): `calls` are their ids, and the face waits up to
 * `wait` for them to end. In cluster mode the calls are in each PBX node's
 * own call log, not on the authority: the release writes `at` on the
 * session's row (session.hangup_requested_at), replication brings it to every
 * node, and each node's `vnum serve` hangs up its open calls of the session
 * that started at or before it (./store.ts, callsToHangUp). `calls` is then
 * undefined: the authority does not know them, and the answer says so with
 * `requested` and `ended` null rather than a count of zero. A call log on the
 * authority could fill them later; the shape stays.
 */
export interface HangupRequest {
  /** When it was asked (the release's time). */
  at: number;
  /** The calls it marked, where the store knows them (a single box); undefined in cluster mode. */
  calls: number[] | undefined;
}

/**
 * `requested`: calls in progress asked to hang up; `ended`: how many of them
 * ended within the wait. Both null where the calls are not known here (cluster mode).
 */
export type HangupAnswer = { requestedAt: string } & ({ requested: number; ended: number } | { requested: null; ended: null });

/** Polls `openCount` until the calls asked to hang up have ended, or `waitMs` passes (no wait where the calls are not known). */
export async function awaitHangup(request: HangupRequest, waitMs: number, openCount: (ids: number[]) => number | Promise<number>): Promise<HangupAnswer> {
  const requestedAt = isoTime(request.at)!;
  const ids = request.calls;
  if (ids === undefined) return { requestedAt, requested: null, ended: null };
  const deadline = Date.now() + waitMs;
  let open = ids.length === 0 ? 0 : await openCount(ids);
  while (open > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    open = await openCount(ids);
  }
  return { requestedAt, requested: ids.length, ended: ids.length - open };
}
