import type { E164 } from '../numbers/normalise.js';

/** What a pool number is: lent (available), lent only on request (reserved), or lent no more (retired). */
export const POOL_STATES = ['available', 'reserved', 'retired'] as const;
export type PoolState = (typeof POOL_STATES)[number];

/** A number whose state stayed as it was although the entry asked for another one (or named none), and why. */
export interface KeptState {
  number: E164;
  state: PoolState;
  reason: string;
}
