import type { Db } from '../store/db.js';
import type { E164 } from '../numbers/normalise.js';
import type { BridgeLookup, LiveBridge } from './decide.js';

/**
 * The store side of the routing decision: one point read on the bridge key
 * (caller, dialled), which holds the pair's latest session whether it is live
 * or ended; `decideRoute` judges which by `endsAt` and `now`.
 */
export function storeBridgeLookup(db: Db): BridgeLookup {
  const current = db.prepare<[string, string], LiveBridge>(
    // The caller ID to present is the caller's own masked number, kept on the session.
    `SELECT b.target, iif(b.caller = s.first_party, s.first_masked_as, s.second_masked_as) AS cli, s.id AS session, b.ends_at AS endsAt
       FROM bridge b JOIN session s ON s.sid = b.sid
      WHERE b.caller = ? AND b.dialled = ?`,
  );
  return {
    live: (caller: E164, dialled: E164) => current.get(caller, dialled),
    latestSession: (caller: E164, dialled: E164) => current.get(caller, dialled)?.session,
    liveReturnsLatest: true,
  };
}
