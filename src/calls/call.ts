/**
 * What a call in the call log is (./store.ts writes and reads them; ./json.ts
 * shows them). No real number: the caller is named by its side of the session.
 */
export const CALL_STATES = ['routed', 'ringing', 'answered', 'ended', 'lost'] as const;
export type CallState = (typeof CALL_STATES)[number];
export type HangupReason = 'release' | 'session-ended';

export interface Call {
  id: number;
  /** Asterisk's Uniqueid of the caller's channel. */
  uniqueid: string;
  session: string;
  /** Which party of the session called. */
  caller: 'first' | 'second';
  state: CallState;
  startedAt: number;
  ringingAt: number | null;
  answeredAt: number | null;
  endedAt: number | null;
  /** When vnum found the call gone without having seen its end (facts after it unknown). */
  lostAt: number | null;
  /** Answer to end, ms: the conversation. */
  durationMs: number | null;
  dialStatus: string | null;
  hangupCause: number | null;
  hangupCauseText: string | null;
  /** When vnum asked Asterisk to hang it up, and why. */
  hangupRequestedAt: number | null;
  hangupReason: HangupReason | null;
  /** 'pin': the caller reached the party by typing its PIN; null: from the party's own number. */
  via: 'pin' | null;
  /** The call's recording, when it was recorded: where it is (or was), its size, when vnum deleted it. */
  recording: Recording | null;
}

export interface Recording {
  /** As vnum sees it: the recordings folder and the caller channel's Uniqueid, never a number. */
  path: string;
  /** Known once the call has ended and the file is closed. */
  bytes: number | null;
  /** When the retention sweep deleted it (null: still on disk). */
  deletedAt: number | null;
}
