/**
 * How a session's calls are shaped: announcements, limits, recording. Each
 * value is optional; an absent one takes the global default (`vnum serve`'s
 * settings, or the dialplan's VNUM_RING_TIMEOUT and VNUM_CALL_LIMIT). Sound
 * and class names travel into dialplan arguments (Playback, Dial's U() and
 * m()), so they are held to a safe alphabet here, at create, and again by
 * src/routing/answer.ts before they reach the dialplan.
 */
import { durationRange, formatDuration, parseDuration } from '../duration.js';
import { ErrorCode, VnumError } from '../errors.js';

export interface CallSettings {
  /** Played to the callee once they answer, before the two are connected (a sound name). */
  calleeAnnouncement?: string;
  /** Played to the caller while the callee rings: a music-on-hold class the operator defined. */
  callerAnnouncement?: string;
  /** The longest an answered call may last, ms (whole seconds). */
  callLimitMs?: number;
  /** How long before that end the warning sound plays to the caller, ms (whole seconds). */
  limitWarningMs?: number;
  /** How long the callee may ring, ms (whole seconds). */
  ringTimeoutMs?: number;
  /** Record this session's calls (with the consent notice); absent: the global default. */
  record?: boolean;
}

/**
 * An Asterisk sound name: letters, digits, _ and -, in up to four /-separated
 * parts (`followme/call-from`, `custom/recorded`). No `.` (no `..`, no
 * extension), no `&` (Playback would chain), no `,` `(` `)` `$` `{` `^`
 * `"` `\` or spaces: nothing the dialplan's parser would read as syntax.
 */
export const SOUND_NAME = /^[A-Za-z0-9_-]{1,64}(?:\/[A-Za-z0-9_-]{1,64}){0,3}$/;
/** A musiconhold.conf class name: one part of the same alphabet. */
export const CLASS_NAME = /^[A-Za-z0-9_-]{1,64}$/;

export const CALL_LIMITS = Object.freeze({
  ringTimeoutMs: Object.freeze({ min: 1_000, max: 300_000 }),
  callLimitMs: Object.freeze({ min: 1_000, max: 86_400_000 }),
  limitWarningMs: Object.freeze({ min: 1_000, max: 3_600_000 }),
});

function invalid(message: string): VnumError {
  return new VnumError(ErrorCode.InvalidArgument, message);
}

export function checkSoundName(value: string, what: string): string {
  if (value.length > 160 || !SOUND_NAME.test(value)) {
    throw invalid(
      `invalid ${what} "${value.slice(0, 70)}": an Asterisk sound name, 1-4 parts of A-Z a-z 0-9 _ - separated by /, e.g. followme/call-from (no extension, no . & , ( ) $ or spaces)`,
    );
  }
  return value;
}

export function checkClassName(value: string, what: string): string {
  if (!CLASS_NAME.test(value)) {
    throw invalid(`invalid ${what} "${value.slice(0, 70)}": a music-on-hold class name, 1-64 of A-Z a-z 0-9 _ -`);
  }
  return value;
}

function checkSeconds(ms: unknown, what: string, limits: { min: number; max: number }): number {
  if (typeof ms !== 'number' || !Number.isInteger(ms) || ms < limits.min || ms > limits.max) {
    throw invalid(`invalid ${what}: ${durationRange(limits.min, limits.max)}`);
  }
  if (ms % 1000 !== 0) throw invalid(`invalid ${what} ${formatDuration(ms)}: whole seconds`);
  return ms;
}

/** The settings checked, with nothing but known keys; throws VNUM_INVALID_ARGUMENT naming the first problem. */
export function validateCallSettings(input: CallSettings): CallSettings {
  const out: CallSettings = {};
  if (input.calleeAnnouncement !== undefined) out.calleeAnnouncement = checkSoundName(input.calleeAnnouncement, 'callee announcement');
  if (input.callerAnnouncement !== undefined) out.callerAnnouncement = checkClassName(input.callerAnnouncement, 'caller announcement');
  if (input.ringTimeoutMs !== undefined) out.ringTimeoutMs = checkSeconds(input.ringTimeoutMs, 'ring timeout', CALL_LIMITS.ringTimeoutMs);
  if (input.callLimitMs !== undefined) out.callLimitMs = checkSeconds(input.callLimitMs, 'call limit', CALL_LIMITS.callLimitMs);
  if (input.limitWarningMs !== undefined) {
    out.limitWarningMs = checkSeconds(input.limitWarningMs, 'limit warning', CALL_LIMITS.limitWarningMs);
    if (out.callLimitMs !== undefined && out.limitWarningMs >= out.callLimitMs) {
      throw invalid(`the limit warning (${formatDuration(out.limitWarningMs)}) must come before the end: shorter than the call limit (${formatDuration(out.callLimitMs)})`);
    }
  }
  if (input.record !== undefined) {
    if (typeof input.record !== 'boolean') throw invalid('record: true or false');
    out.record = input.record;
  }
  return out;
}

/**
 * The settings as a face takes them (`vnum session create`'s flags, POST
 * /v1/sessions' fields): durations as text (45s, 30m), each named in errors as
 * that face names it (`name`). Undefined when nothing is set.
 */
export interface CallSettingsText {
  calleeAnnouncement?: string | undefined;
  callerAnnouncement?: string | undefined;
  ringTimeout?: string | undefined;
  callLimit?: string | undefined;
  limitWarning?: string | undefined;
  record?: boolean | undefined;
}

export function callSettingsFromText(text: CallSettingsText, name: (field: keyof CallSettingsText) => string): CallSettings | undefined {
  const out: CallSettings = {};
  if (text.calleeAnnouncement !== undefined) out.calleeAnnouncement = checkSoundName(text.calleeAnnouncement, name('calleeAnnouncement'));
  if (text.callerAnnouncement !== undefined) out.callerAnnouncement = checkClassName(text.callerAnnouncement, name('callerAnnouncement'));
  const seconds = (field: 'ringTimeout' | 'callLimit' | 'limitWarning', limits: { min: number; max: number }) =>
    text[field] === undefined ? undefined : parseDuration(text[field], name(field), limits);
  const ring = seconds('ringTimeout', CALL_LIMITS.ringTimeoutMs);
  const limit = seconds('callLimit', CALL_LIMITS.callLimitMs);
  const warning = seconds('limitWarning', CALL_LIMITS.limitWarningMs);
  if (ring !== undefined) out.ringTimeoutMs = ring;
  if (limit !== undefined) out.callLimitMs = limit;
  if (warning !== undefined) out.limitWarningMs = warning;
  if (text.record !== undefined) out.record = text.record;
  return Object.keys(out).length === 0 ? undefined : validateCallSettings(out);
}

/** As stored in session.call_settings: null when nothing is set (the common case costs no parse). */
export function storedCallSettings(settings: CallSettings | undefined): string | null {
  if (settings === undefined) return null;
  const valid = validateCallSettings(settings);
  return Object.keys(valid).length === 0 ? null : JSON.stringify(valid);
}

/** Read back from the store; undefined when the text is not settings vnum wrote (the router then fails closed). */
export function parseCallSettings(text: string | null): CallSettings | undefined {
  if (text === null) return {};
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
    const known = ['calleeAnnouncement', 'callerAnnouncement', 'callLimitMs', 'limitWarningMs', 'ringTimeoutMs', 'record'];
    if (Object.keys(value).some((k) => !known.includes(k))) return undefined;
    return validateCallSettings(value as CallSettings);
  } catch {
    return undefined;
  }
}
