import type { Db } from '../store/db.js';
import type { E164 } from '../numbers/normalise.js';
import type { BridgeLookup, LiveBridge } from './decide.js';

/** The store side of the routing decision: prepared once, two indexed point reads per call. */
export function storeBridgeLookup(db: Db): BridgeLookup {
  const live = db.prepare<[string, string], LiveBridge>(
    `SELECT b.target, b.cli, s.id AS session, s.ends_at AS endsAt
       FROM bridge b JOIN session s ON s.sid = b.sid
      WHERE b.caller = ? AND b.dialled = ? AND b.live = 1`,
  );
  const latest = db
    .prepare<[string, string], string>(
      `SELECT s.id FROM bridge b JOIN session s ON s.sid = b.sid
        WHERE b.caller = ? AND b.dialled = ? ORDER BY b.sid DESC LIMIT 1`,
    )
    .pluck();
  return {
    live: (caller: E164, dialled: E164) => live.get(caller, dialled),
    latestSession: (caller: E164, dialled: E164) => latest.get(caller, dialled),
  };
}
