import { isoTime } from '../time.js';
import type { Call } from './call.js';

/** The documented JSON shape of a call (README, "JSON"): `vnum calls --json`, and `data.call` in webhook events. */
export function callJson(call: Call) {
  return {
    id: call.id,
    uniqueid: call.uniqueid,
    session: call.session,
    caller: call.caller,
    state: call.state,
    startedAt: isoTime(call.startedAt),
    ringingAt: isoTime(call.ringingAt),
    answeredAt: isoTime(call.answeredAt),
    endedAt: isoTime(call.endedAt),
    lostAt: isoTime(call.lostAt),
    durationMs: call.durationMs,
    dialStatus: call.dialStatus,
    hangupCause: call.hangupCause,
    hangupCauseText: call.hangupCauseText,
    hangupRequestedAt: isoTime(call.hangupRequestedAt),
    hangupReason: call.hangupReason,
    via: call.via,
    recording:
      call.recording === null
        ? null
        : { path: call.recording.path, bytes: call.recording.bytes, deletedAt: isoTime(call.recording.deletedAt) },
  };
}
