import type { AmiEvent, AmiMessage } from '../ami/client.js';

/**
 * The call facts vnum reads from Asterisk's AMI events, as typed values. Each
 * is exact in the sense that it is Asterisk's own record of the moment, not
 * something vnum infers:
 *
 * - `DialBegin` (Uniqueid: the caller's channel): the callee's leg is being
 *   dialled: the call is ringing.
 * - `DialEnd`: `DialStatus` is the value app_dial also puts in DIALSTATUS
 *   (ANSWER, BUSY, NOANSWER, CANCEL, CONGESTION, CHANUNAVAIL, ...). With
 *   ANSWER it is sent when the callee answers: the answer time.
 * - `Hangup` of the caller's channel: the end, with the channel's hang-up
 *   cause (Q.850 number and Asterisk's text for it).
 *
 * Times are the events' `Timestamp` (Asterisk's clock, with `timestampevents
 * = yes`), else when vnum read them. Only these three events are asked for.
 * An event whose values do not look like Asterisk's is ignored rather than
 * stored.
 */
export const CALL_EVENTS = ['DialBegin', 'DialEnd', 'Hangup'] as const;
/** Every event above is in AMI's `call` class: the only class the AMI user needs to read. */
export const CALL_EVENT_CLASSES = ['call'] as const;

export type CallFact =
  | { kind: 'dial-begin'; uniqueid: string; at: number; calleeUniqueid: string | null }
  | { kind: 'dial-end'; uniqueid: string; at: number; dialStatus: string }
  | { kind: 'hangup'; uniqueid: string; at: number; cause: number | null; causeText: string | null };

// Asterisk's Uniqueid: [systemname-]epoch.sequence.
const UNIQUEID = /^[A-Za-z0-9._-]{1,150}$/;
const DIAL_STATUS = /^[A-Z]{1,20}$/;
const CAUSE_TEXT = /^[A-Za-z0-9 ,.()/'-]{0,80}$/;

export function isUniqueid(value: unknown): value is string {
  return typeof value === 'string' && UNIQUEID.test(value);
}

export function callFact(event: AmiEvent): CallFact | undefined {
  const uniqueid = event.fields.uniqueid;
  if (!isUniqueid(uniqueid)) return undefined;
  switch (event.name) {
    case 'DialBegin': {
      const callee = event.fields.destuniqueid;
      return { kind: 'dial-begin', uniqueid, at: event.at, calleeUniqueid: isUniqueid(callee) ? callee : null };
    }
    case 'DialEnd': {
      const dialStatus = event.fields.dialstatus ?? '';
      if (!DIAL_STATUS.test(dialStatus)) return undefined;
      return { kind: 'dial-end', uniqueid, at: event.at, dialStatus };
    }
    case 'Hangup': {
      const causeNumber = Number(event.fields.cause);
      const cause = /^\d{1,3}$/.test(event.fields.cause ?? '') && causeNumber <= 255 ? causeNumber : null;
      const text = event.fields['cause-txt'] ?? '';
      return { kind: 'hangup', uniqueid, at: event.at, cause, causeText: text !== '' && CAUSE_TEXT.test(text) ? text : null };
    }
    default:
      return undefined;
  }
}

/** The Uniqueids of the channels in a CoreShowChannels answer. */
export function liveUniqueids(list: readonly AmiMessage[]): Set<string> {
  const live = new Set<string>();
  for (const item of list) {
    const uniqueid = item.fields.uniqueid;
    if (isUniqueid(uniqueid)) live.add(uniqueid);
  }
  return live;
}
