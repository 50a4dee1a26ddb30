/**
 * Settings of the long-running commands (`vnum serve`, `vnum health`, AMI),
 * judged as commander reads them, before anything is opened: one that cannot
 * work is a configuration error (VNUM_CONFIGURATION, exit 1) naming where it
 * came from (the flag, or the environment variable behind it), never a
 * database created first and a failure later.
 */
import type { EventEmitter } from 'node:events';
import { isIP } from 'node:net';
import { Option, type Command } from 'commander';
import { AllowList } from '../../agi/allow-list.js';
import { parseDuration } from '../duration.js';
import { ErrorCode, VnumError } from '../errors.js';

export const SETTING_LIMITS = Object.freeze({
  /**
   * One routing connection, connect to close. Asterisk waits in silence meanwhile
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
  /**
   * How old the store figures on /metrics may get before a scrape has them
   * read again: each read scans the session and bridge tables (about 1.5 s of
   * a worker thread at 1,000,000 sessions).
   */
  metricsStoreAgeMs: Object.freeze({ min: 1_000, max: 3_600_000 }),
});

export function configurationError(name: string, value: string, why: string): VnumError {
  return new VnumError(ErrorCode.Configuration, `invalid ${name} "${value}": ${why}`);
}

/** `2000` -> `2s`, `250` -> `250ms`: as a duration flag takes it. */
export function formatMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

/** `100ms to 10s`, for help texts. */
export function span(limits: { min: number; max: number }): string {
  return `${formatMs(limits.min)} to ${formatMs(limits.max)}`;
}

// Each judge takes the setting's name (as its user gave it) and its text, and
// returns its value or throws the configuration error.
type Judge<T> = (name: string, text: string) => T;

/** A duration within [min, max] ms. */
export function boundedDuration(limits: { min: number; max: number }): Judge<number> {
  return (name, text) => {
    let ms: number;
    try {
      ms = parseDuration(text, name);
    } catch {
      throw configurationError(name, text, 'use a whole number and a unit, e.g. 250ms, 2s');
    }
    if (ms < limits.min || ms > limits.max) throw configurationError(name, text, `from ${span(limits)}`);
    return ms;
  };
}

export function boundedInteger(limits: { min: number; max: number }): Judge<number> {
  return (name, text) => {
    const value = Number(text);
    if (!/^\d{1,15}$/.test(text) || value < limits.min || value > limits.max) {
      throw configurationError(name, text, `a whole number from ${limits.min} to ${limits.max}`);
    }
    return value;
  };
}

export const tcpPort: Judge<number> = boundedInteger({ min: 1, max: 65535 });

/** A TCP port, or `off`. */
export const portOrOff: Judge<number | null> = (name, text) => (text === 'off' ? null : tcpPort(name, text));

/** RFC 1123 host names: what a resolver can look up. */
const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** An IP address (IPv6 without brackets) or a host name. */
export const hostSetting: Judge<string> = (name, text) => {
  if (isIP(text) !== 0 || HOST_NAME.test(text)) return text;
  throw configurationError(name, text, /^\[.*\]$/.test(text) ? 'write an IPv6 address without brackets' : 'an IP address or a host name');
};

/**
 * The FastAGI allow-list: comma-separated addresses or CIDR subnets. Empty
 * (or with an empty entry, what `127.0.0.1,${UNSET}` expands to) is refused:
 * a router that refuses Asterisk looks healthy and fails every call.
 */
export const allowSetting: Judge<string[]> = (name, text) => {
  if (text.trim() === '') {
    throw new VnumError(
      ErrorCode.Configuration,
      `${name} is empty: the router would refuse every call, Asterisk's included; list your Asterisk's address (e.g. 127.0.0.1,::1)`,
    );
  }
  const entries = text.split(',').map((entry) => entry.trim());
  const blank = entries.indexOf('');
  if (blank >= 0) {
    throw configurationError(name, text, `entry ${blank + 1} is empty (a stray comma, or a variable that expanded to nothing?)`);
  }
  try {
    new AllowList(entries);
  } catch (e) {
    throw configurationError(name, text, (e as Error).message);
  }
  return entries;
};

export interface SettingSpec<T> {
  /** e.g. `--port <port>` */
  flags: string;
  description: string;
  judge: Judge<T>;
  /** Already judged; `shown` is how help prints it. Absent: unset unless given. */
  default?: { value: T; shown?: string };
  /** The environment variable read when the flag is absent. */
  env?: string;
}

/**
 * Add an option whose value commander hands to `judge` as it reads it (its
 * argParser), under the name its user gave: the flag, or the environment
 * variable it came from.
 */
export function addSetting<T>(command: Command, spec: SettingSpec<T>): Command {
  const option = new Option(spec.flags, spec.description);
  if (spec.default !== undefined) option.default(spec.default.value, spec.default.shown);
  let readingEnv = false;
  option.argParser((text: string) => spec.judge(readingEnv && spec.env !== undefined ? spec.env : option.long!, text));
  if (spec.env !== undefined) option.env(spec.env);
  command.addOption(option);
  // Commander reads the environment after the command line, through this event (its Command is an
  // EventEmitter; its typings do not say so): mark it before the parser runs.
  if (spec.env !== undefined) (command as unknown as EventEmitter).prependListener(`optionEnv:${option.name()}`, () => (readingEnv = true));
  return command;
}
