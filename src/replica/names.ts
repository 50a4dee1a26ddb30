import { ErrorCode, VnumError } from '../errors.js';

/**
 * What a node's settings need without loading the replication code (pg,
 * pg-logical-replication): slot names and the replica's defaults. Every
 * `vnum` command registers `vnum replica`, so its help and settings must not
 * cost every other command those imports.
 */

export const REPLICA_DEFAULTS = {
  pingIntervalMs: 500,
  staleAfterMs: 3_000,
  connectTimeoutMs: 2_000,
  commandTimeoutMs: 30_000,
  retryMinMs: 250,
  retryMaxMs: 5_000,
} as const;

const SLOT_NAME = /^[a-z0-9_]{1,63}$/;

export function assertSlotName(slot: string): string {
  if (!SLOT_NAME.test(slot)) {
    throw new VnumError(ErrorCode.InvalidArgument, `invalid replication slot name "${slot.slice(0, 70)}": 1-63 characters of a-z 0-9 _`);
  }
  return slot;
}

const NODE = /^[a-z0-9_]{1,58}$/;

export function slotForNode(node: string): string {
  if (!NODE.test(node)) throw new VnumError(ErrorCode.InvalidArgument, `invalid node name "${node.slice(0, 70)}": 1-58 characters of a-z 0-9 _`);
  return assertSlotName(`vnum_${node}`);
}
