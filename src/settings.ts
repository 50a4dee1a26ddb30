import { isIP } from 'node:net';
import { parseDuration } from './duration.js';
import { ErrorCode, VnumError } from './errors.js';

/**
 * Settings of the long-running faces (`vnum serve`, `vnum health`, AMI),
 * judged before anything is opened: one that cannot work is a configuration
 * error (VNUM_CONFIGURATION, exit 1) naming where it came from (the flag, or
 * the environment variable behind it), never a database created first and a
 * failure later.
 *
 * Time settings are bounded twice: by what Node's timers can hold and,
 * tighter, by what makes sense for a call waiting in silence for its route.
 */

/** The longest delay a Node timer keeps: a longer one fires after 1 ms (with a TimeoutOverflowWarning). */
export const TIMER_MAX_MS = 2 ** 31 - 1;

export const SETTING_LIMITS = Object.freeze({
  /**
   * One routing session, connect to close. Asterisk waits in silence meanwhile
   * (the caller hears nothing) and gives up after the dialplan's
   * VNUM_AGI_TIMEOUT (3 s); below 100 ms a loaded router drops real calls.
   */
  deadlineMs: Object.freeze({ min: 100, max: 10_000 }),
  /** On SIGTERM, how long calls in flight may finish (none lives longer than the deadline anyway). */
  drainMs: Object.freeze({ min: 0, max: 60_000 }),
  maxConnections: Object.freeze({ min: 1, max: 100_000 }),
  /** `vnum health --timeout`: how long the router may take to answer the probe. */
  healthTimeoutMs: Object.freeze({ min: 100, max: 60_000 }),
  /** A cluster node's freshness bound (`vnum serve --stale-after`): above the replica's link timeout (3 s), at most a day. */
  staleAfterMs: Object.freeze({ min: 1_000, max: 86_400_000 }),
});

export function configurationError(name: string, value: string, why: string): VnumError {
  return new VnumError(ErrorCode.Configuration, `invalid ${name} "${value}": ${why}`);
}

/** `2000` -> `2s`, `250` -> `250ms`: as a duration flag takes it. */
export function formatMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

/** A duration within [min, max] ms (and within what a Node timer holds). */
export function boundedDuration(name: string, text: string, limits: { min: number; max: number }): number {
  let ms: number;
  try {
    ms = parseDuration(text, name);
  } catch {
    throw configurationError(name, text, 'use a whole number and a unit, e.g. 250ms, 2s');
  }
  const max = Math.min(limits.max, TIMER_MAX_MS);
  if (ms < limits.min || ms > max) throw configurationError(name, text, `from ${formatMs(limits.min)} to ${formatMs(max)}`);
  return ms;
}

export function boundedInteger(name: string, text: string, limits: { min: number; max: number }): number {
  const value = Number(text);
  if (!/^\d{1,15}$/.test(text) || value < limits.min || value > limits.max) {
    throw configurationError(name, text, `a whole number from ${limits.min} to ${limits.max}`);
  }
  return value;
}

export function tcpPort(name: string, text: string): number {
  return boundedInteger(name, text, { min: 1, max: 65535 });
}

/** RFC 1123 host names: what a resolver can look up. */
const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** An IP address (IPv6 without brackets) or a host name. */
export function hostSetting(name: string, text: string): string {
  if (isIP(text) !== 0 || HOST_NAME.test(text)) return text;
  throw configurationError(name, text, /^\[.*\]$/.test(text) ? 'write an IPv6 address without brackets' : 'an IP address or a host name');
}

