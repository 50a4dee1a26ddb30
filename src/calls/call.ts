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
}
