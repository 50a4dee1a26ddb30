/**
 * `vnum serve`'s settings for callers without a bridge (README, "PINs" and
 * "Out-of-session calls"): the defaults for pool numbers that set nothing of
 * their own (`vnum pool set`), the PIN limits, and the sounds. Judged as they
 * are read, like every setting of the router (./settings.ts).
 */
import type { Command } from 'commander';
import { ErrorCode, VnumError } from '../errors.js';
import { E164_SHAPE, normaliseNumber, type E164 } from '../numbers/normalise.js';
import { OUT_OF_SESSION_MODES, PIN_MODES, type OutOfSessionMode, type PinMode } from '../pool/handling.js';
import { isSoundName, type Prompts } from '../routing/answer.js';
import type { HandlingDefaults } from '../routing/out-of-session.js';
import { DEFAULT_PIN_LIMITS, PIN_LIMIT_BOUNDS, type PinLimits } from '../routing/pin-guard.js';
import { PIN_MAX_DIGITS } from '../session/pin.js';
import { addSetting, boundedDuration, boundedInteger, configurationError } from './settings.js';

export const PIN_TIMEOUT_LIMITS = Object.freeze({
  /** The whole PIN phase, every try included: a prompt (~5 s) and typing fit in 10 s. */
  timeoutMs: Object.freeze({ min: 10_000, max: 300_000 }),
  /** Between digits. */
  digitTimeoutMs: Object.freeze({ min: 1_000, max: 20_000 }),
});

/** The stock sounds (asterisk-core-sounds-en) vnum plays unless told otherwise. */
export const DEFAULT_SOUNDS: Prompts['sounds'] = Object.freeze({
  noSession: 'ss-noservice',
  ended: 'vm-goodbye',
  invalid: 'cannot-complete-as-dialed',
  pinPrompt: 'confbridge-pin',
  pinWrong: 'vm-invalidpassword',
  pinFailed: 'goodbye',
});

const SOUND_SETTINGS: ReadonlyArray<{ key: keyof Prompts['sounds']; flag: string; env: string; what: string }> = [
  { key: 'noSession', flag: 'sound-no-session', env: 'VNUM_SOUND_NO_SESSION', what: 'a caller in no session on the number' },
  { key: 'ended', flag: 'sound-ended', env: 'VNUM_SOUND_ENDED', what: 'a party whose session on the number has ended' },
  { key: 'invalid', flag: 'sound-invalid', env: 'VNUM_SOUND_INVALID', what: 'a withheld caller, or one whose number is no number' },
  { key: 'pinPrompt', flag: 'sound-pin-prompt', env: 'VNUM_SOUND_PIN_PROMPT', what: 'the PIN prompt' },
  { key: 'pinWrong', flag: 'sound-pin-wrong', env: 'VNUM_SOUND_PIN_WRONG', what: 'after a wrong PIN, before asking again' },
  { key: 'pinFailed', flag: 'sound-pin-failed', env: 'VNUM_SOUND_PIN_FAILED', what: 'no more PIN tries' },
];

function oneOf<T extends string>(values: readonly T[]): (name: string, text: string) => T {
  return (name, text) => {
    if ((values as readonly string[]).includes(text)) return text as T;
    throw configurationError(name, text.slice(0, 40), `use ${values.join(', ')}`);
  };
}

const soundSetting = (name: string, text: string): string => {
  if (isSoundName(text)) return text;
  throw configurationError(
    name,
    String(text).slice(0, 70),
    'a sound name: letters, digits, _ and -, in folders separated by /, at most 64 characters, no extension, no dot (e.g. custom/order-ended)',
  );
};

const deskSetting = (name: string, text: string): E164 => {
  if (!E164_SHAPE.test(text)) throw configurationError(name, text.slice(0, 30), 'the desk number in +E.164, e.g. +442079460999');
  try {
    return normaliseNumber(text);
  } catch (e) {
    throw configurationError(name, text.slice(0, 30), (e as Error).message);
  }
};

/** A duration in whole seconds within limits: the dialplan counts seconds. */
function wholeSeconds(limits: { min: number; max: number }): (name: string, text: string) => number {
  const judge = boundedDuration(limits);
  return (name, text) => {
    const ms = judge(name, text);
    if (ms % 1000 !== 0) throw configurationError(name, text, 'whole seconds, e.g. 5s');
    return ms;
  };
}

export function addOutOfSessionSettings(serve: Command): void {
  addSetting(serve, {
    flags: '--pin <mode>',
    description: `who, calling a pool number without a bridge, is asked for a PIN: ${PIN_MODES.join(', ')} (withheld: callers whose number is withheld or no number); pool numbers may set their own`,
    judge: oneOf(PIN_MODES),
    default: { value: 'off' as PinMode },
    env: 'VNUM_PIN',
  });
  addSetting(serve, {
    flags: '--out-of-session <mode>',
    description: `what a refused caller gets: ${OUT_OF_SESSION_MODES.join(', ')} (the desk, --fallback); pool numbers may set their own`,
    judge: oneOf(OUT_OF_SESSION_MODES),
    default: { value: 'announce' as OutOfSessionMode },
    env: 'VNUM_OUT_OF_SESSION',
  });
  addSetting<E164 | null>(serve, {
    flags: '--fallback <number>',
    description: 'the desk refused callers are put through to, +E.164, dialled through the trunk presenting the dialled pool number',
    judge: deskSetting,
    default: { value: null, shown: 'none' },
    env: 'VNUM_FALLBACK',
  });
  const { attempts, perCaller, perNumber } = PIN_LIMIT_BOUNDS;
  addSetting(serve, {
    flags: '--pin-attempts <n>',
    description: `PIN tries in one call, ${attempts.min} to ${attempts.max}`,
    judge: boundedInteger(attempts),
    default: { value: DEFAULT_PIN_LIMITS.attempts },
    env: 'VNUM_PIN_ATTEMPTS',
  });
  addSetting(serve, {
    flags: '--pin-caller-limit <n>',
    description: `wrong PINs an hour from one caller number, ${perCaller.min} to ${perCaller.max}`,
    judge: boundedInteger(perCaller),
    default: { value: DEFAULT_PIN_LIMITS.perCaller },
    env: 'VNUM_PIN_CALLER_LIMIT',
  });
  addSetting(serve, {
    flags: '--pin-number-limit <n>',
    description: `wrong PINs an hour on one pool number, whoever types them, ${perNumber.min} to ${perNumber.max}`,
    judge: boundedInteger(perNumber),
    default: { value: DEFAULT_PIN_LIMITS.perNumber },
    env: 'VNUM_PIN_NUMBER_LIMIT',
  });
  addSetting(serve, {
    flags: '--pin-timeout <duration>',
    description: 'the whole PIN phase of a call, every try included, 10s to 300s',
    judge: wholeSeconds(PIN_TIMEOUT_LIMITS.timeoutMs),
    default: { value: 60_000, shown: '60s' },
    env: 'VNUM_PIN_TIMEOUT',
  });
  addSetting(serve, {
    flags: '--pin-digit-timeout <duration>',
    description: 'how long to wait for each digit, 1s to 20s',
    judge: wholeSeconds(PIN_TIMEOUT_LIMITS.digitTimeoutMs),
    default: { value: 5_000, shown: '5s' },
    env: 'VNUM_PIN_DIGIT_TIMEOUT',
  });
  for (const sound of SOUND_SETTINGS) {
    addSetting(serve, {
      flags: `--${sound.flag} <name>`,
      description: `Asterisk sound for ${sound.what}`,
      judge: soundSetting,
      default: { value: DEFAULT_SOUNDS[sound.key] },
      env: sound.env,
    });
  }
}

export interface OutOfSessionSettings {
  handling: HandlingDefaults;
  pinLimits: PinLimits;
  prompts: Prompts;
}

/** The settings as commander judged them, checked together. */
export function outOfSessionSettings(options: Record<string, unknown>): OutOfSessionSettings {
  const handling: HandlingDefaults = {
    pin: options.pin as PinMode,
    outOfSession: options.outOfSession as OutOfSessionMode,
    fallback: (options.fallback as E164 | null) ?? null,
  };
  if (handling.outOfSession === 'fallback' && handling.fallback === null) {
    throw new VnumError(ErrorCode.Configuration, 'out-of-session handling "fallback" needs the desk: set --fallback (VNUM_FALLBACK)');
  }
  const digitTimeoutMs = options.pinDigitTimeout as number;
  const timeoutMs = options.pinTimeout as number;
  if (digitTimeoutMs >= timeoutMs) {
    throw new VnumError(ErrorCode.Configuration, `--pin-digit-timeout (${digitTimeoutMs / 1000}s) must be shorter than --pin-timeout (${timeoutMs / 1000}s)`);
  }
  const sounds = Object.fromEntries(SOUND_SETTINGS.map((s) => [s.key, options[soundOptionName(s.flag)] as string])) as Prompts['sounds'];
  return {
    handling,
    pinLimits: {
      ...DEFAULT_PIN_LIMITS,
      attempts: options.pinAttempts as number,
      perCaller: options.pinCallerLimit as number,
      perNumber: options.pinNumberLimit as number,
    },
    prompts: { sounds, pin: { maxDigits: PIN_MAX_DIGITS, digitTimeoutS: digitTimeoutMs / 1000, timeoutS: timeoutMs / 1000 } },
  };
}

/** `sound-no-session` -> `soundNoSession`: commander's attribute name. */
function soundOptionName(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}
