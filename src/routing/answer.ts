/**
 * What the router tells the dialplan: a routing decision as the channel
 * variables dialplan/vnum.conf branches on (dialplan/README.md documents
 * them). One definition, used by the router and by `vnum route`.
 *
 * The last check before a number reaches Dial(), so it fails closed: every
 * value must be of the safe alphabet (nothing Asterisk or a shell would
 * interpret), a BRIDGE needs both a target and a presented caller ID (an
 * empty one could let the caller's real number through), and any other
 * status carries no number at all. What fails is answered with ERROR.
 */
import { ROUTE_STATUSES, type RouteDecision, type RouteStatus } from './decide.js';
import { CLASS_NAME, parseCallSettings, SOUND_NAME } from '../session/call-settings.js';

/** The variables, in the order they are set. */
export const CHANNEL_VARIABLES = Object.freeze({
  status: 'VNUM_STATUS',
  target: 'VNUM_TARGET',
  presentedCallerId: 'VNUM_CLI',
  session: 'VNUM_SESSION',
} as const);

/**
 * How the call is shaped (announcements, limits, recording): set on BRIDGE
 * only, and only those with a value; vnum.conf starts each one empty, and an
 * empty one means the dialplan's own default (or nothing). A sliding
 * session's push is not here: it happens on the write path (the call log).
 */
export const CALL_VARIABLES = Object.freeze({
  ringTimeoutS: 'VNUM_RING_TIMEOUT_S',
  callLimitS: 'VNUM_CALL_LIMIT_S',
  limitWarningS: 'VNUM_LIMIT_WARNING_S',
  limitWarningSound: 'VNUM_LIMIT_WARNING_SOUND',
  calleeSound: 'VNUM_CALLEE_SOUND',
  callerClass: 'VNUM_CALLER_MOH',
  record: 'VNUM_RECORD',
  consentSound: 'VNUM_CONSENT_SOUND',
} as const);
export type CallShape = { readonly [K in keyof typeof CALL_VARIABLES]: string };

/** `vnum serve`'s global defaults for what a session does not set. */
export interface CallDefaults {
  calleeAnnouncement?: string | undefined;
  callerAnnouncement?: string | undefined;
  limitWarningMs?: number | undefined;
  /** Played as the limit warning (default `beep`). */
  limitWarningSound?: string | undefined;
  /** Record every session's calls unless a session says no. */
  record?: boolean | undefined;
  /** The consent notice; set only when recording is possible (a folder, AMI). Without it nothing is recorded. */
  recordingNotice?: string | undefined;
}

/** Every value the router writes into the dialplan. */
export const SAFE_VALUE = /^[A-Za-z0-9+._:-]{0,64}$/;

export interface RouteAnswer {
  readonly status: RouteStatus;
  /** The real number to dial; '' unless BRIDGE. */
  readonly target: string;
  /** The caller ID to present: the caller's masked number; '' unless BRIDGE. */
  readonly presentedCallerId: string;
  /** The session concerned; '' when none. */
  readonly session: string;
  /** BRIDGE when the session or vnum serve shapes its calls: announcements, limits, recording ('' each unless set). */
  readonly call?: CallShape;
  /** The session asked for recording but this router cannot record (no folder or notice configured). */
  readonly recordingUnavailable?: boolean;
}

export const ERROR_ANSWER: RouteAnswer = Object.freeze({ status: 'ERROR', target: '', presentedCallerId: '', session: '' });

const STATUSES: ReadonlySet<string> = new Set(ROUTE_STATUSES);

function safe(value: unknown): value is string {
  return typeof value === 'string' && SAFE_VALUE.test(value);
}

/**
 * The answer for a decision, or undefined when it fails the checks above
 * (the router then answers ERROR_ANSWER). Throws only if reading the decision
 * throws.
 */
export function answerFor(decision: RouteDecision, defaults: CallDefaults = {}): RouteAnswer | undefined {
  if (typeof decision !== 'object' || decision === null) return undefined;
  const { status, target, presentedCallerId, session } = decision;
  if (typeof status !== 'string' || !STATUSES.has(status)) return undefined;
  const values = { target: target ?? '', presentedCallerId: presentedCallerId ?? '', session: session ?? '' };
  if (!safe(values.target) || !safe(values.presentedCallerId) || !safe(values.session)) return undefined;
  if (status !== 'BRIDGE') return { status, target: '', presentedCallerId: '', session: values.session };
  if (values.target === '' || values.presentedCallerId === '') return undefined;
  const shaped = callShape(decision.callSettings ?? null, defaults);
  if (shaped === undefined) return undefined;
  return { status, ...values, ...shaped };
}

function seconds(ms: number | undefined): string {
  return ms === undefined ? '' : String(Math.floor(ms / 1000));
}

/** The session's settings over the defaults, every value checked again; undefined when any fails. */
function callShape(stored: string | null, defaults: CallDefaults): { call?: CallShape; recordingUnavailable?: boolean } | undefined {
  // The common case: nothing to shape, nothing parsed.
  if (stored === null && defaults.calleeAnnouncement === undefined && defaults.callerAnnouncement === undefined
    && defaults.limitWarningMs === undefined && !defaults.record) {
    return {};
  }
  const own = parseCallSettings(stored);
  if (own === undefined) return undefined;
  const wantsRecording = own.record ?? defaults.record ?? false;
  const recording = wantsRecording && defaults.recordingNotice !== undefined;
  const limitWarningMs = own.limitWarningMs ?? defaults.limitWarningMs;
  const call: CallShape = {
    ringTimeoutS: seconds(own.ringTimeoutMs),
    callLimitS: seconds(own.callLimitMs),
    limitWarningS: seconds(limitWarningMs),
    limitWarningSound: limitWarningMs === undefined ? '' : defaults.limitWarningSound ?? 'beep',
    calleeSound: own.calleeAnnouncement ?? defaults.calleeAnnouncement ?? '',
    callerClass: own.callerAnnouncement ?? defaults.callerAnnouncement ?? '',
    record: recording ? '1' : '',
    consentSound: recording ? defaults.recordingNotice! : '',
  };
  for (const key of ['limitWarningSound', 'calleeSound', 'consentSound'] as const) {
    if (call[key] !== '' && !SOUND_NAME.test(call[key])) return undefined;
  }
  if (call.callerClass !== '' && !CLASS_NAME.test(call.callerClass)) return undefined;
  return wantsRecording && !recording ? { call, recordingUnavailable: true } : { call };
}

/** The answer as `[name, value]` pairs, in CHANNEL_VARIABLES' order. */
export function channelVariables(answer: RouteAnswer): Array<[string, string]> {
  return [
    [CHANNEL_VARIABLES.status, answer.status],
    [CHANNEL_VARIABLES.target, answer.target],
    [CHANNEL_VARIABLES.presentedCallerId, answer.presentedCallerId],
    [CHANNEL_VARIABLES.session, answer.session],
    ...(answer.call === undefined ? [] : callVariables(answer.call)),
  ];
}

function callVariables(call: CallShape): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const key of Object.keys(CALL_VARIABLES) as Array<keyof CallShape>) {
    if (call[key] !== '') out.push([CALL_VARIABLES[key], call[key]]);
  }
  return out;
}
