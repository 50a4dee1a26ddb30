import type { Db } from '../store/db.js';
import { PUBLICATION } from '../store/pg/migrations.js';
import { ErrorCode, VnumError } from '../errors.js';
import { ReplicaStore, schemaGapError, type ReplicaState } from './apply.js';
import { formatLsn, maxLsn, type Lsn } from './lsn.js';
import { PgoutputDecoder, type Change } from './pgoutput.js';
import { closeSqlClient, copySnapshot, openSqlClient } from './snapshot.js';
import { REPLICA_DEFAULTS, slotForNode } from './names.js';
import { ReplicationConnection, sqlState, type PgTarget, type SlotInfo, type SystemIdentity } from './stream.js';

/**
 * A cluster node's replica: follows its own logical replication slot into
 * the local SQLite file that `vnum serve` routes from.
 *
 * - Each upstream transaction is applied whole, in one SQLite transaction
 *   that also records its end position; a transaction ending at or before
 *   the recorded position is skipped. PostgreSQL is told a position only
 *   after the SQLite commit that holds it, so a crash anywhere loses nothing
 *   and applies nothing twice.
 * - With no transaction open, a keepalive's position is recorded and
 *   confirmed too: otherwise a quiet node's slot would pin WAL written for
 *   other tables until max_slot_wal_keep_size invalidates it.
 * - A new or wiped file, a slot that is missing or invalidated, a file from
 *   another PostgreSQL cluster, or a slot that has confirmed more than this
 *   file holds (a file restored from an older copy): the replica is rebuilt
 *   from the snapshot the new slot exports, in one SQLite transaction
 *   (readers keep the old rows until it commits), then follows the slot.
 * - Our own clock for the link: a status update asking for a reply every
 *   pingIntervalMs; nothing heard for staleAfterMs and the connection is
 *   dropped and made again (TCP alone takes ~15 minutes to notice a dead
 *   link). Before the stream, each command and copy query has
 *   commandTimeoutMs instead. The server's wal_sender_timeout should be a little longer than
 *   staleAfterMs so that it frees the slot for the reconnect; until then a
 *   reconnect is refused (SQLSTATE 55006) and retried.
 * - Errors never stop it: it reconnects with back-off (retryMinMs doubling
 *   to retryMaxMs), and the replica stays readable throughout.
 */

export interface ReplicaOptions {
  /** The node's SQLite store, opened with openDb (the single-box schema). This process is its only replica writer. */
  db: Db;
  target: PgTarget;
  /** Names the node's slot: vnum_<node>. */
  node: string;
  publication?: string;
  pingIntervalMs?: number;
  staleAfterMs?: number;
  connectTimeoutMs?: number;
  /** The longest a command or a copy query may take before the connection is given up. */
  commandTimeoutMs?: number;
  retryMinMs?: number;
  retryMaxMs?: number;
  /** After each transaction's SQLite commit, before PostgreSQL is told. */
  onApplied?: (transaction: AppliedTransaction) => void;
  /** What happened, for the log: one line each, never a row's values. */
  onEvent?: (event: ReplicaEvent) => void;
}

export { REPLICA_DEFAULTS, slotForNode };

export interface AppliedTransaction {
  endLsn: Lsn;
  /** PostgreSQL's commit time, ms since 1970 (µs fraction kept). */
  commitTimeMs: number;
  /** When its COMMIT message arrived here, and when its SQLite commit returned (same clock, ms). */
  receivedAtMs: number;
  appliedAtMs: number;
  changes: number;
}

export type ReplicaEvent =
  | { type: 'connected'; systemId: string; from: string }
  | { type: 'rebuilding'; reason: string }
  | { type: 'rebuilt'; lsn: string; rows: Record<string, number>; ms: number }
  | { type: 'stale'; silentMs: number }
  | { type: 'disconnected'; error: string; code: string | undefined; retryInMs: number };

export type ReplicaPhase = 'connecting' | 'copying' | 'streaming' | 'waiting' | 'stopped';

export interface ReplicaStatus {
  node: string;
  slot: string;
  phase: ReplicaPhase;
  /** Everything up to this WAL position is in the file. */
  appliedLsn: string | null;
  /** PostgreSQL's commit time of the last transaction applied (ms). */
  appliedCommitAt: number | null;
  /** When the file was last built from a snapshot (ms). */
  builtAt: number | null;
  /** The server's WAL position in its last message (how far it has decoded and sent). */
  serverWalEnd: string | null;
  /** serverWalEnd - appliedLsn, bytes. */
  lagBytes: number | null;
  /** When anything last came from the server (ms, this host's clock). */
  lastContactAt: number | null;
  /** The last moment the file was known to hold everything the server had sent (ms). */
  caughtUpAt: number | null;
  /** now - caughtUpAt: how old the replica's view may be. */
  lagMs: number | null;
  /** Nothing heard for longer than staleAfterMs (or never connected). */
  stale: boolean;
  lastError: string | null;
  lastErrorAt: number | null;
  transactions: number;
  changes: number;
  /** Transactions received again after a restart and skipped (already in the file). */
  skipped: number;
  connects: number;
  rebuilds: number;
}

export interface Replica {
  status(): ReplicaStatus;
  /** Stop following; the file stays as it is. */
  stop(): Promise<void>;
}


/** Why the file cannot follow the slot as it stands, or undefined when it can. */
export function rebuildReason(
  state: ReplicaState | undefined,
  identity: SystemIdentity,
  slot: SlotInfo | undefined,
  expected: { slot: string; publication: string; tables: readonly string[] },
): string | undefined {
  if (!state) return 'the replica has never been built';
  if (state.systemId !== identity.systemId || state.database !== identity.database) {
    return `the replica was built from another PostgreSQL (system ${state.systemId}, database ${state.database})`;
  }
  if (state.slot !== expected.slot || state.publication !== expected.publication) return `the replica followed slot ${state.slot} of ${state.publication}`;
  // A table that joined the publication brings rows the slot will never send: only a copy has them.
  const joined = expected.tables.filter((t) => !state.tables.includes(t));
  if (joined.length > 0) return `the publication now has ${joined.join(', ')}, which the replica was not built with`;
  if (!slot) return `slot ${expected.slot} does not exist`;
  if (slot.walStatus === 'lost') return `slot ${expected.slot} was invalidated (its WAL passed max_slot_wal_keep_size)`;
  if (slot.plugin !== 'pgoutput') return `slot ${expected.slot} uses ${slot.plugin}, not pgoutput`;
  if (slot.confirmedFlush !== null && slot.confirmedFlush > state.appliedLsn) {
    return `slot ${expected.slot} has confirmed ${formatLsn(slot.confirmedFlush)}, beyond this file's ${formatLsn(state.appliedLsn)} (a file restored from an older copy?)`;
  }
  return undefined;
}

export function startReplica(options: ReplicaOptions): Replica {
  const settings = { ...REPLICA_DEFAULTS, ...definedOnly(options) };
  const slot = slotForNode(options.node);
  const publication = options.publication ?? PUBLICATION;
  const store = new ReplicaStore(options.db);
  const emit = options.onEvent ?? (() => {});

  let phase: ReplicaPhase = 'connecting';
  let stopped = false;
  let connection: ReplicationConnection | undefined;
  let wake: (() => void) | undefined;
  const initial = store.state();
  let applied: Lsn | null = initial?.appliedLsn ?? null;
  let appliedCommitAt = initial?.appliedCommitAt ?? null;
  let builtAt = initial?.builtAt ?? null;
  let serverWalEnd: Lsn | null = null;
  let lastContactAt: number | null = null;
  let caughtUpAt: number | null = null;
  let lastError: string | null = null;
  let lastErrorAt: number | null = null;
  let streamingSince: number | null = null;
  const counters = { transactions: 0, changes: 0, skipped: 0, connects: 0, rebuilds: 0 };

  async function follow(): Promise<void> {
    phase = 'connecting';
    streamingSince = null;
    serverWalEnd = null; // another server (after a rebuild from another cluster) may be at a lower position
    const conn = await ReplicationConnection.open(options.target, settings.connectTimeoutMs, `vnum-replica-${options.node}`, settings.commandTimeoutMs);
    connection = conn;
    let pinger: NodeJS.Timeout | undefined;
    try {
      if (stopped) return;
      const identity = await conn.identifySystem();
      lastContactAt = Date.now();
      const info = await conn.slot(slot);
      const published = await conn.published(publication);
      // Before anything is dropped or copied: can this file hold what the authority publishes?
      const gaps = store.schemaGaps(published);
      if (gaps.length > 0) throw schemaGapError(gaps);
      const reason = rebuildReason(store.state(), identity, info, { slot, publication, tables: [...published.keys()] });
      if (reason !== undefined) {
        emit({ type: 'rebuilding', reason });
        if (info) await conn.dropSlot(slot); // 55006 while an old walsender still holds it: retried
        await rebuild(conn, identity);
      }
      const state = store.state()!;
      const from = state.appliedLsn;
      applied = from;
      counters.connects++;
      emit({ type: 'connected', systemId: identity.systemId, from: formatLsn(from) });

      const decoder = new PgoutputDecoder();
      let open: Change[] | null = null;
      const touch = (): void => {
        lastContactAt = Date.now();
      };
      let lastTick = Date.now();
      pinger = setInterval(() => {
        const t = Date.now();
        // A tick that comes late means this process was busy (a long apply), not that the server was silent: judge at the next one.
        const late = t - lastTick > 2 * settings.pingIntervalMs;
        lastTick = t;
        const silent = t - (lastContactAt ?? 0);
        if (!late && silent > settings.staleAfterMs) {
          emit({ type: 'stale', silentMs: silent });
          conn.destroy();
          return;
        }
        conn.sendStatus(applied!, true);
      }, settings.pingIntervalMs);

      await conn.stream(slot, publication, from, {
        started: () => {
          phase = 'streaming';
          streamingSince = Date.now();
          touch();
        },
        data: (frame) => {
          touch();
          const message = decoder.decode(frame.payload);
          if (message.kind === 'relation' && !state.tables.includes(message.table)) {
            throw new VnumError(ErrorCode.Database, `table ${message.table} joined the publication: the replica will be rebuilt`);
          }
          if (message.kind === 'begin') open = [];
          else if (message.kind === 'change') {
            if (open === null) throw new VnumError(ErrorCode.Database, 'a change came outside a transaction');
            open.push(message.change);
          } else if (message.kind === 'commit') {
            if (open === null) throw new VnumError(ErrorCode.Database, 'a commit came without its begin');
            const changes = open;
            open = null;
            const receivedAtMs = now();
            if (message.endLsn <= applied!) {
              counters.skipped++;
              return;
            }
            store.applyTransaction(changes, message.endLsn, message.commitTimeMs);
            applied = message.endLsn;
            appliedCommitAt = Math.round(message.commitTimeMs);
            counters.transactions++;
            counters.changes += changes.length;
            if (serverWalEnd === null || applied >= serverWalEnd) caughtUpAt = Date.now();
            options.onApplied?.({ endLsn: applied, commitTimeMs: message.commitTimeMs, receivedAtMs, appliedAtMs: now(), changes: changes.length });
            conn.sendStatus(applied, false);
          }
        },
        keepalive: (k) => {
          touch();
          serverWalEnd = serverWalEnd === null ? k.walEnd : maxLsn(serverWalEnd, k.walEnd);
          let moved = false;
          if (open === null) {
            // Everything the server sent before this keepalive is applied, and it has sent all it decoded up to walEnd.
            caughtUpAt = Date.now();
            if (k.walEnd > applied!) {
              store.advance(k.walEnd);
              applied = k.walEnd;
              moved = true;
            }
          }
          if (moved || k.replyRequested) conn.sendStatus(applied!, false);
        },
      });
    } finally {
      if (pinger) clearInterval(pinger);
      connection = undefined;
      conn.destroy();
    }
  }

  async function rebuild(conn: ReplicationConnection, identity: SystemIdentity): Promise<void> {
    phase = 'copying';
    const started = Date.now();
    const { consistentPoint, snapshotName } = await conn.createSlotWithSnapshot(slot);
    const sql = await openSqlClient(options.target, settings.connectTimeoutMs, `vnum-replica-${options.node}-copy`, settings.commandTimeoutMs);
    try {
      const { rebuild, rows } = await copySnapshot(sql, snapshotName, publication, (tables) => store.beginRebuild(tables));
      const tables = Object.keys(rows);
      rebuild.finish({ systemId: identity.systemId, database: identity.database, slot, publication, tables, consistentPoint, at: Date.now() });
      counters.rebuilds++;
      builtAt = Date.now();
      appliedCommitAt = null;
      emit({ type: 'rebuilt', lsn: formatLsn(consistentPoint), rows, ms: Date.now() - started });
    } finally {
      await closeSqlClient(sql);
    }
  }

  const running = (async () => {
    let delay: number = settings.retryMinMs;
    while (!stopped) {
      let error: unknown;
      try {
        await follow();
      } catch (e) {
        error = e;
      }
      if (stopped) break;
      // A link that worked for a while retries at once; one that keeps failing (refused, a slot in use, an apply error) backs off.
      if (streamingSince !== null && Date.now() - streamingSince > settings.staleAfterMs) delay = settings.retryMinMs;
      const message = error === undefined ? 'the server ended the stream' : error instanceof Error ? error.message : String(error);
      lastError = message;
      lastErrorAt = Date.now();
      emit({ type: 'disconnected', error: message, code: sqlState(error), retryInMs: delay });
      phase = 'waiting';
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
      delay = Math.min(delay * 2, settings.retryMaxMs);
    }
    phase = 'stopped';
  })();

  return {
    status(): ReplicaStatus {
      const t = Date.now();
      return {
        node: options.node,
        slot,
        phase,
        appliedLsn: applied === null ? null : formatLsn(applied),
        appliedCommitAt,
        builtAt,
        serverWalEnd: serverWalEnd === null ? null : formatLsn(serverWalEnd),
        lagBytes: serverWalEnd === null || applied === null ? null : Number(serverWalEnd > applied ? serverWalEnd - applied : 0n),
        lastContactAt,
        caughtUpAt,
        lagMs: caughtUpAt === null ? null : t - caughtUpAt,
        stale: lastContactAt === null || phase !== 'streaming' || t - lastContactAt > settings.staleAfterMs,
        lastError,
        lastErrorAt,
        ...counters,
      };
    },
    async stop() {
      stopped = true;
      connection?.destroy();
      wake?.();
      await running;
    },
  };
}

/** Wall clock with sub-ms precision, for delays measured against PostgreSQL's µs commit times. */
function now(): number {
  return performance.timeOrigin + performance.now();
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
