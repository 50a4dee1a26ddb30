import type { Db } from '../store/db.js';
import type { E164 } from '../numbers/normalise.js';
import { numberTypeCached } from '../numbers/cache.js';
import { numberTypeFromCode } from '../numbers/type.js';
import type { BridgeLookup, LiveBridge } from './decide.js';

interface BridgeRow {
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
export function storeBridgeLookup(db: Db): BridgeLookup {
  const current = db.prepare<[string, string], BridgeRow>(
    // The caller ID to present is the caller's own masked number, kept on the session.
    `SELECT b.target, iif(b.caller = s.first_party, s.first_masked_as, s.second_masked_as) AS presentedCallerId, s.id AS session,
            b.ends_at AS endsAt, b.target_type AS targetTypeCode, s.call_settings AS callSettings, s.idle_ms AS idleMs
       FROM bridge b JOIN session s ON s.sid = b.sid
      WHERE b.caller = ? AND b.dialled = ?`,
  );
  const inPool = db.prepare<[string], number>('SELECT 1 FROM pool_number WHERE number = ?').pluck();
  const live = (caller: E164, dialled: E164): LiveBridge | undefined => {
    const row = current.get(caller, dialled);
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
  };
  return {
    live,
    latestSession: (caller: E164, dialled: E164) => current.get(caller, dialled)?.session,
    liveReturnsLatest: true,
    isPoolNumber: (number: E164) => inPool.get(number) !== undefined,
  };
}
