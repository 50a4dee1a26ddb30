import type { Command } from 'commander';
import { AllowList } from '../../agi/allow-list.js';
import { ErrorCode, VnumError } from '../errors.js';
import { configurationError } from '../settings.js';

/** What the person who set it will recognise: the flag, or the environment variable it came from. */
export function settingName(command: Command, key: string, flag: string, envVar?: string): string {
  const source = command.getOptionValueSource(key);
  if (source === 'env' && envVar !== undefined) return envVar;
  if (source === 'default') return `${flag} (default)`;
  return flag;
}

/**
 * The FastAGI allow-list: comma-separated addresses or CIDR subnets. Empty
 * (or with an empty entry, what `127.0.0.1,${UNSET}` expands to) is refused:
 * a router that refuses Asterisk looks healthy and fails every call.
 */
export function allowSetting(name: string, text: string): string[] {
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
}
