import { ErrorCode, VnumError } from '../errors.js';
import type { Db } from '../store/db.js';

/**
 * A cluster node's SQLite file is the authority's copy: `vnum replica` is its
 * only writer of the replicated tables. A session, a pool number, an API key
 * or a webhook written into it locally would be invisible to the authority
 * and every other node, and overwritten or refused by the next change the
 * slot brings. A file is a replica once `vnum replica` has claimed it: it has
 * built it from a snapshot (replica_state) or reported into it
 * (replica_health). The CLI's writing commands refuse such a file; reads go
 * on as on any file. `vnum serve` sends a sliding session's pushes to the
 * authority instead of writing them into such a file (src/calls/sliding.ts);
 * it still writes its own call log into it (a local table the authority
 * never sends).
 */

export interface ReplicaMark {
  /** The node that claimed the file (replica_health), when it reported. */
  node: string | null;
  /** The authority's database the file was built from (replica_state), when built. */
  database: string | null;
}

/** The mark, or undefined for a single box's file (or one of a schema older than the replica tables). */
export function replicaMark(db: Db): ReplicaMark | undefined {
  const tables = db
    .prepare<[], { name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('replica_state', 'replica_health')")
    .all()
    .map((t) => t.name);
  if (tables.length < 2) return undefined;
  const state = db.prepare<[], { database: string }>('SELECT database FROM replica_state WHERE id = 1').get();
  const health = db.prepare<[], { node: string }>('SELECT node FROM replica_health WHERE id = 1').get();
  if (!state && !health) return undefined;
  return { node: health?.node ?? null, database: state?.database ?? null };
}

/** The writing commands that also run on the authority with --authority (src/cli/apikey.ts, session.ts, pool.ts, webhooks.ts). */
const AUTHORITY_COMMANDS = /^vnum (apikey|session|pool (add|import|set|retire|sync)|webhooks)\b/;

/** Why `what` may not write this replica, naming the authority as the place to write. */
export function replicaReadOnlyError(mark: ReplicaMark, shownPath: string, what: string): VnumError {
  const node = mark.node === null ? 'a cluster node' : `cluster node ${mark.node}`;
  const authority = mark.database === null ? 'the authority (PostgreSQL)' : `the authority (PostgreSQL database ${mark.database})`;
  // Keys, sessions, the pool's changes and the webhook outbox are handled on the authority by the same command with --authority; the rest through the API.
  const through = AUTHORITY_COMMANDS.test(what) ? `${what} --authority` : 'vnum api --authority';
  return new VnumError(
    ErrorCode.ReplicaReadOnly,
    `${shownPath} is the replica of ${node}, written only by vnum replica: ${what} writes on ${authority}, through ${through}, not in this file (reading it still works)`,
  );
}

/** Throws when `db` is a replica: `what` (e.g. "vnum session create") may not write it. */
export function refuseReplicaWrites(db: Db, shownPath: string, what: string): void {
  const mark = replicaMark(db);
  if (mark) throw replicaReadOnlyError(mark, shownPath, what);
}
