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
import { CLASS_NAME, parseCallSettings, SOUND_NAME as CALL_SOUND_NAME } from '../session/call-settings.js';

/** The variables, in the order they are set. The last ones only on the answers that need them. */
export const CHANNEL_VARIABLES = Object.freeze({
  status: 'VNUM_STATUS',
  target: 'VNUM_TARGET',
  presentedCallerId: 'VNUM_CLI',
  session: 'VNUM_SESSION',
  /** The announcement of a refusal, or what PIN_RETRY plays before asking again. */
  sound: 'VNUM_SOUND',
  pinPrompt: 'VNUM_PIN_PROMPT',
  pinMaxDigits: 'VNUM_PIN_DIGITS',
  pinDigitTimeout: 'VNUM_PIN_DIGIT_TIMEOUT',
  pinTimeout: 'VNUM_PIN_TIMEOUT',
  /** What the caller hears when the PIN phase runs out while typing. */
  pinFailed: 'VNUM_PIN_FAILED',
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

/**
 * An Asterisk sound name: letters, digits, _ and -, in folders separated by
 * single slashes; no dot (so no `..`, no extension), no leading slash, nothing
 * a dialplan application would split on (`,` `|` `&` `^`) or expand (`$` `[`).
 */
export const SOUND_NAME = /^(?!.*\/\/)[A-Za-z0-9_][A-Za-z0-9_/-]{0,63}(?<!\/)$/;

export function isSoundName(value: unknown): value is string {
  return typeof value === 'string' && SOUND_NAME.test(value);
}

/** What the caller hears on the answers without a bridge, and how a PIN is read. */
export interface Prompts {
  sounds: {
    /** NO_SESSION: a caller in no session on the number. */
    noSession: string;
    /** ENDED: a party whose session on the number has ended. */
    ended: string;
    /** INVALID: a withheld caller, or one whose number is no number. */
    invalid: string;
    /** PIN: asks for the PIN. */
    pinPrompt: string;
    /** PIN_RETRY: played before asking again. */
    pinWrong: string;
    /** PIN_FAILED: no more tries. */
    pinFailed: string;
  };
  pin: {
    /** Read() stops after this many digits (# ends sooner). */
    maxDigits: number;
    /** Seconds Read() waits for each digit. */
    digitTimeoutS: number;
    /** Seconds the whole PIN phase may take, every try included. */
    timeoutS: number;
  };
}

export interface RouteAnswer {
  readonly status: RouteStatus;
  /** The real number to dial; '' unless BRIDGE. */
  readonly target: string;
  /** The caller ID to present: the caller's masked number; '' unless BRIDGE. */
  readonly presentedCallerId: string;
  /** The session concerned; '' when none. */
  readonly session: string;
  /** VNUM_SOUND; '' when the dialplan's own default plays (or none). */
  readonly sound?: string;
  /** PIN, PIN_RETRY: how the PIN is read. */
  readonly pin?: { prompt: string; failed: string; maxDigits: number; digitTimeoutS: number; timeoutS: number };
  /** A BRIDGE reached by a PIN: for the call log, never written to the channel. */
  readonly via?: 'pin';
  /** BRIDGE when the session or vnum serve shapes its calls: announcements, limits, recording ('' each unless set). */
  readonly call?: CallShape;
  /** The session asked for recording but this router cannot record (no folder or notice configured). */
  readonly recordingUnavailable?: boolean;
}

export const ERROR_ANSWER: RouteAnswer = Object.freeze({ status: 'ERROR', target: '', presentedCallerId: '', session: '' });

/** The sound of each answer that plays one. */
const SOUND_OF: Partial<Record<RouteStatus, keyof Prompts['sounds']>> = {
  NO_SESSION: 'noSession',
  ENDED: 'ended',
  INVALID: 'invalid',
  PIN: 'pinPrompt',
  PIN_RETRY: 'pinWrong',
  PIN_FAILED: 'pinFailed',
};

function soundOf(status: RouteStatus, prompts: Prompts): string | undefined {
  const key = SOUND_OF[status];
  return key === undefined ? undefined : prompts.sounds[key];
}

function wholeSeconds(value: number, max: number): boolean {
  return Number.isInteger(value) && value >= 1 && value <= max;
}

const STATUSES: ReadonlySet<string> = new Set(ROUTE_STATUSES);

function safe(value: unknown): value is string {
  return typeof value === 'string' && SAFE_VALUE.test(value);
}

/**
 * The answer for a decision, or undefined when it fails the checks above
 * (the router then answers ERROR_ANSWER). Throws only if reading the decision
 * throws. With `prompts`, the answers without a bridge carry their sound, and
 * PIN answers how to read the PIN; each is checked like a number: a sound not
 * of SOUND_NAME, or a PIN setting out of range, is an ERROR.
 */
export function answerFor(decision: RouteDecision, prompts?: Prompts, defaults: CallDefaults = {}): RouteAnswer | undefined {
  if (typeof decision !== 'object' || decision === null) return undefined;
  const { status, target, presentedCallerId, session } = decision;
  if (typeof status !== 'string' || !STATUSES.has(status)) return undefined;
  const values = { target: target ?? '', presentedCallerId: presentedCallerId ?? '', session: session ?? '' };
  if (!safe(values.target) || !safe(values.presentedCallerId) || !safe(values.session)) return undefined;
  if (status === 'BRIDGE') {
    if (values.target === '' || values.presentedCallerId === '') return undefined;
    const shaped = callShape(decision.callSettings ?? null, defaults);
    if (shaped === undefined) return undefined;
    return decision.via === 'pin' ? { status, ...values, ...shaped, via: 'pin' } : { status, ...values, ...shaped };
  }
  if (status === 'FALLBACK') {
    if (values.target === '' || values.presentedCallerId === '') return undefined;
    return { status, ...values, session: '' };
  }
  const answer = { status, target: '', presentedCallerId: '', session: values.session };
  // Without prompts (`vnum route`), a PIN answer has no way to read it: the dialplan refuses it as a bad answer.
  if (prompts === undefined) return answer;
  const sound = soundOf(status, prompts);
  if (sound !== undefined && !isSoundName(sound)) return undefined;
  if (status !== 'PIN' && status !== 'PIN_RETRY') return sound === undefined ? answer : { ...answer, sound };
  const { maxDigits, digitTimeoutS, timeoutS } = prompts.pin;
  if (!isSoundName(prompts.sounds.pinPrompt) || !isSoundName(prompts.sounds.pinFailed) || !wholeSeconds(maxDigits, 20) || !wholeSeconds(digitTimeoutS, 60) || !wholeSeconds(timeoutS, 600)) {
    return undefined;
  }
  return { ...answer, sound: sound!, pin: { prompt: prompts.sounds.pinPrompt, failed: prompts.sounds.pinFailed, maxDigits, digitTimeoutS, timeoutS } };
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
    if (call[key] !== '' && !CALL_SOUND_NAME.test(call[key])) return undefined;
  }
  if (call.callerClass !== '' && !CLASS_NAME.test(call.callerClass)) return undefined;
  return wantsRecording && !recording ? { call, recordingUnavailable: true } : { call };
}

/** The answer as `[name, value]` pairs, in CHANNEL_VARIABLES' order; a bridge's answer is always the first four. */
export function channelVariables(answer: RouteAnswer): Array<[string, string]> {
  const variables: Array<[string, string]> = [
    [CHANNEL_VARIABLES.status, answer.status],
    [CHANNEL_VARIABLES.target, answer.target],
    [CHANNEL_VARIABLES.presentedCallerId, answer.presentedCallerId],
    [CHANNEL_VARIABLES.session, answer.session],
    ...(answer.call === undefined ? [] : callVariables(answer.call)),
  ];
  if (answer.sound !== undefined) variables.push([CHANNEL_VARIABLES.sound, answer.sound]);
  if (answer.pin !== undefined) {
    variables.push(
      [CHANNEL_VARIABLES.pinPrompt, answer.pin.prompt],
      [CHANNEL_VARIABLES.pinMaxDigits, String(answer.pin.maxDigits)],
      [CHANNEL_VARIABLES.pinDigitTimeout, String(answer.pin.digitTimeoutS)],
      [CHANNEL_VARIABLES.pinTimeout, String(answer.pin.timeoutS)],
      [CHANNEL_VARIABLES.pinFailed, answer.pin.failed],
    );
  }
  return variables;
}

function callVariables(call: CallShape): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const key of Object.keys(CALL_VARIABLES) as Array<keyof CallShape>) {
    if (call[key] !== '') out.push([CALL_VARIABLES[key], call[key]]);
  }
  return out;
}
