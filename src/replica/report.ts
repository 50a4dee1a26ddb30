import { hostname } from 'node:os';
import pg from 'pg';
import { clusterStatus, type NodeView } from './cluster.js';
import type { ReplicaStatus } from './consumer.js';
import type { PgTarget } from './stream.js';

/**
 * A node's report to the authority (PostgreSQL's node_report, migration 3),
 * for `vnum cluster status`: what pg_replication_slots cannot know (the
 * node's phase, how old its view is, its last error). Best effort on a
 * connection of its own: a report that fails is retried at the next tick and
 * never touches the replica. No row values, only positions and times.
 *
 * With `clusterView`, each tick then reads the whole cluster as `vnum cluster
 * status` does (every vnum_* slot beside every node's report) on the same
 * connection, for this node's /metrics: a dead node's slot growing without a
 * consumer is then visible from any living node.
 */

/** The cluster as the authority saw it at one tick. */
export interface ClusterView {
  nodes: NodeView[];
  /** When it was read (ms, this host's clock). */
  at: number;
}

export interface AuthorityReporter {
  /** Report now (the next tick otherwise). Resolves when done or failed; never rejects. */
  report(): Promise<void>;
  /** The last cluster view read (with `clusterView`); undefined before the first or without it. */
  clusterView(): ClusterView | undefined;
  /** Ticks whose report or cluster read failed, since the start. */
  readonly failures: number;
  stop(): Promise<void>;
}

export interface ReporterOptions {
  target: PgTarget;
  status: () => ReplicaStatus;
  version: string;
  everyMs: number;
  connectTimeoutMs: number;
  /** A failure, once per run of failures (then silence until one succeeds). */
  onError?: (message: string) => void;
  /** Also read the cluster's slots and reports each tick (cluster.ts), judging staleness by this bound. */
  clusterView?: { staleAfterMs: number };
}

const UPSERT = `
  INSERT INTO node_report (node, host, pid, version, phase, applied_lsn, lag_ms, lag_bytes, last_error, reported_at)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, (extract(epoch FROM clock_timestamp()) * 1000)::bigint)
  ON CONFLICT (node) DO UPDATE SET host = excluded.host, pid = excluded.pid, version = excluded.version,
    phase = excluded.phase, applied_lsn = excluded.applied_lsn, lag_ms = excluded.lag_ms, lag_bytes = excluded.lag_bytes,
    last_error = excluded.last_error, reported_at = excluded.reported_at`;

export function startAuthorityReports(options: ReporterOptions): AuthorityReporter {
  let client: pg.Client | undefined;
  let failing = false;
  let running: Promise<void> | undefined;
  let stopped = false;
  let view: ClusterView | undefined;
  let failures = 0;

  const drop = (): void => {
    const c = client;
    client = undefined;
    c?.end().catch(() => {});
  };

  const once = async (): Promise<void> => {
    try {
      if (!client) {
        const c = new pg.Client({
          ...options.target,
          connectionTimeoutMillis: options.connectTimeoutMs,
          query_timeout: options.everyMs,
          application_name: `vnum-report-${options.status().node}`,
        });
        c.on('error', () => drop());
        client = c;
        await c.connect();
      }
      const s = options.status();
      await client.query(UPSERT, [
        s.node,
        hostname().slice(0, 255),
        process.pid,
        options.version,
        s.phase,
        s.appliedLsn,
        s.lagMs,
        s.lagBytes,
        s.lastError === null ? null : s.lastError.slice(0, 500),
      ]);
      if (options.clusterView) view = { nodes: await clusterStatus(client, options.clusterView.staleAfterMs), at: Date.now() };
      failing = false;
    } catch (error) {
      failures++;
      drop();
      if (!failing) options.onError?.(error instanceof Error ? error.message : String(error));
      failing = true;
    }
  };

  const report = (): Promise<void> => {
    running ??= once().finally(() => (running = undefined));
    return running;
  };
  const timer = setInterval(() => {
    if (!stopped) void report();
  }, options.everyMs);
  void report();

  return {
    report,
    clusterView: () => view,
    get failures() {
      return failures;
    },
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
      await report();
      const c = client;
      client = undefined;
      await c?.end().catch(() => {});
    },
  };
}
