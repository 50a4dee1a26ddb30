import type { Db } from '../store/db.js';
import type { E164 } from '../numbers/normalise.js';
import { numberTypeCached } from '../numbers/cache.js';
import { numberTypeFromCode } from '../numbers/type.js';
import { pinDigestFor } from '../session/pin.js';
import { numberHandling, type NumberHandling } from '../pool/handling.js';
import type { BridgeLookup, LiveBridge } from './decide.js';
import type { PinLookup } from './pin.js';

/** What the router reads besides bridges: PINs, and how a pool number handles callers without a bridge. */
export interface RouterLookup extends BridgeLookup, PinLookup {
  handling(number: E164): NumberHandling | undefined;
}

/** A pair's bridge joined with its session, as the router reads it (both stores: the authority's decideRoute too). */
export interface RouteBridgeRow {
  target: E164;
  presentedCallerId: E164;
  session: string;
  endsAt: number | null;
  /** bridge.target_type; NULL on a row written before the store kept it. */
  targetTypeCode: number | null;
  callSettings: string | null;
  idleMs: number | null;
}

/**
 * The store side of the routing decision: one point read on the bridge key
 * (caller, dialled), which holds the pair's latest session whether it is live
 * or ended; `decideRoute` judges which by `endsAt` and `now`. The target's
 * type comes with the row; a row from before the store kept it has its
 * target classified here instead (cached: such rows end with their sessions).
 */
export function storeBridgeLookup(db: Db): RouterLookup {
  const current = db.prepare<[string, string], RouteBridgeRow>(
    // The caller ID to present is the caller's own masked number, kept on the session.
    `SELECT b.target, iif(b.caller = s.first_party, s.first_masked_as, s.second_masked_as) AS presentedCallerId, s.id AS session,
            b.ends_at AS endsAt, b.target_type AS targetTypeCode, s.call_settings AS callSettings, s.idle_ms AS idleMs
       FROM bridge b JOIN session s ON s.sid = b.sid
      WHERE b.caller = ? AND b.dialled = ?`,
  );
  // The PIN's row names its party's bridge, still its session's: a point read, then the same join and the same
  // columns as above, so that a PIN-bridged call is shaped and slides its session exactly as that party's own call.
  const pinned = db.prepare<[string, Buffer], RouteBridgeRow>(
    `SELECT b.target, iif(b.caller = s.first_party, s.first_masked_as, s.second_masked_as) AS presentedCallerId, s.id AS session,
            b.ends_at AS endsAt, b.target_type AS targetTypeCode, s.call_settings AS callSettings, s.idle_ms AS idleMs
       FROM pin p JOIN bridge b ON b.caller = p.caller AND b.dialled = p.dialled AND b.sid = p.sid
                  JOIN session s ON s.sid = b.sid
      WHERE p.dialled = ? AND p.digest = ?`,
  );
  const inPool = db.prepare<[string], number>('SELECT 1 FROM pool_number WHERE number = ?').pluck();
  const live = (caller: E164, dialled: E164): LiveBridge | undefined => liveBridgeOf(current.get(caller, dialled));
  return {
    live,
    byPin: (dialled: E164, pin: string) => liveBridgeOf(pinned.get(dialled, pinDigestFor(db, pin))),
    handling: (number: E164) => numberHandling(db, number),
    latestSession: (caller: E164, dialled: E164) => current.get(caller, dialled)?.session,
    liveReturnsLatest: true,
    isPoolNumber: (number: E164) => inPool.get(number) !== undefined,
  };
}

/** A bridge row as the decision takes it (its target's type from the row, or classified when the row predates it). */
export function liveBridgeOf(row: RouteBridgeRow | undefined): LiveBridge | undefined {
  if (!row) return undefined;
  return {
    target: row.target,
    presentedCallerId: row.presentedCallerId,
    session: row.session,
    endsAt: row.endsAt,
    targetType: row.targetTypeCode === null ? numberTypeCached(row.target) : numberTypeFromCode(row.targetTypeCode),
    callSettings: row.callSettings,
    idleMs: row.idleMs,
  };
}
