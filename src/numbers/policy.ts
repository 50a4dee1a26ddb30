import { ErrorCode, VnumError } from '../errors.js';
import { NUMBER_TYPES, type NumberType } from './type.js';

/**
 * The number-type policy: which kinds of number a party's real number may be.
 * The operator pays for every leg vnum dials out, so a party whose number
 * earns its owner money per call would be toll fraud. The default list, and
 * why each type is in it or not: README, "The number-type policy (toll fraud)".
 * The international networks are refused whatever the setting.
 */
export interface NumberPolicy {
  readonly allowed: ReadonlySet<NumberType>;
}

export const DEFAULT_ALLOWED_TYPES: readonly NumberType[] = ['fixed-line', 'mobile', 'fixed-line-or-mobile', 'voip'];

/** Never allowed, whatever the setting says. */
const NEVER: ReadonlySet<NumberType> = new Set(['international-network']);

export const DEFAULT_POLICY: NumberPolicy = { allowed: new Set(DEFAULT_ALLOWED_TYPES) };

export const POLICY_ENV = 'VNUM_ALLOWED_NUMBER_TYPES';

/** Types an operator may name in the setting. */
export const ALLOWABLE_TYPES: readonly NumberType[] = NUMBER_TYPES.filter((t) => !NEVER.has(t));

/**
 * The setting: a comma-separated list of types, the whole allowed set;
 * `default` stands for the default list, so `default,toll-free` widens it.
 * Unset or undefined: the default.
 */
export function parseNumberPolicy(text: string | undefined): NumberPolicy {
  if (text === undefined) return DEFAULT_POLICY;
  const names = text.split(',').map((name) => name.trim().toLowerCase());
  if (names.every((name) => name === '')) {
    throw new VnumError(ErrorCode.InvalidArgument, `empty list of allowed number types: name at least one of default, ${ALLOWABLE_TYPES.join(', ')}`);
  }
  const allowed = new Set<NumberType>();
  for (const name of names) {
    if (name === '') continue;
    if (name === 'default') {
      for (const type of DEFAULT_ALLOWED_TYPES) allowed.add(type);
    } else if (NEVER.has(name as NumberType)) {
      throw new VnumError(ErrorCode.InvalidArgument, `number type "${name}" cannot be allowed: international networks are always refused`);
    } else if ((ALLOWABLE_TYPES as readonly string[]).includes(name)) {
      allowed.add(name as NumberType);
    } else {
      throw new VnumError(
        ErrorCode.InvalidArgument,
        `unknown number type "${name.slice(0, 40)}" in the allowed number types: use default, ${ALLOWABLE_TYPES.join(', ')}`,
      );
    }
  }
  return { allowed };
}

export function allowsType(policy: NumberPolicy, type: NumberType): boolean {
  return !NEVER.has(type) && policy.allowed.has(type);
}

/** How the policy's refusal of a type reads, for errors and the router's reason. */
export function refusal(type: NumberType): string {
  return type === 'international-network'
    ? 'an international-network number (+800, +808, +870, +878, +881, +882, +883, +888, +979), which is always refused'
    : `${type === 'unknown' ? 'an' : 'a'} ${type} number, which the number-type policy refuses (${POLICY_ENV} or --allowed-number-types widens it)`;
}

/** Throws VNUM_NUMBER_NOT_ALLOWED unless a party may have this number. */
export function assertPartyAllowed(policy: NumberPolicy, number: string, type: NumberType): void {
  if (!allowsType(policy, type)) {
    throw new VnumError(ErrorCode.NumberNotAllowed, `${number} is ${refusal(type)}`);
  }
}
