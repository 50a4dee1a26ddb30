/**
 * What `vnum replica --metrics-port` exports: this node's replica (how old its
 * view is, how long since the authority was last heard, its phase, what it
 * applied), and the whole cluster as the authority sees it, read on the
 * connection the node already reports on (src/replica/report.ts): every
 * vnum_* slot's retained WAL, consumer, wal_status and safe_wal_size, and
 * every node's last report. A dead node cannot be scraped; its slot growing
 * without a consumer is seen from any living node. Everything is read at
 * scrape time from memory: a scrape never queries PostgreSQL.
 *
 * Labels hold node and slot names, phases and WAL states only.
 */
import type { ReplicaPhase, ReplicaStatus } from '../replica/consumer.js';
import type { NodeView } from '../replica/cluster.js';
import type { ClusterView } from '../replica/report.js';
import { MetricsRegistry } from './prom.js';

export const REPLICA_PHASES: readonly ReplicaPhase[] = Object.freeze(['connecting', 'copying', 'streaming', 'waiting', 'stopped']);
/** pg_replication_slots.wal_status's values (PostgreSQL 13+). */
export const WAL_STATUSES = Object.freeze(['reserved', 'extended', 'unreserved', 'lost'] as const);
/** cluster.ts's NodeView states. */
export const NODE_STATES: readonly NodeView['state'][] = Object.freeze(['ok', 'lost', 'no-slot', 'inactive', 'stale', 'unreported']);

export interface ReplicaSources {
  status: () => ReplicaStatus;
  /** The last cluster view the reporter read; undefined before the first read. */
  cluster: () => ClusterView | undefined;
  /** Reports or cluster reads that failed. */
  reportFailures: () => number;
  /**
   * A cluster view older than this is left out of the cluster_* series: a
   * node cut off from the authority would otherwise go on showing its last
   * view (its own slot active, say) beside the living nodes' current one.
   */
  viewMaxAgeMs: number;
  now?: () => number;
}

const seconds = (ms: number | null | undefined): number | undefined => (ms === null || ms === undefined ? undefined : ms / 1000);

export class ReplicaMetrics {
  readonly registry = new MetricsRegistry();
  private sources: ReplicaSources | undefined;

  constructor() {
    const r = this.registry;
    const now = (): number => (this.sources?.now ?? Date.now)();
    const status = (): ReplicaStatus | undefined => this.sources?.status();
    const view = (): ClusterView | undefined => {
      const v = this.sources?.cluster();
      return v && now() - v.at <= this.sources!.viewMaxAgeMs ? v : undefined;
    };
    const nodes = (): NodeView[] => view()?.nodes ?? [];

    // This node.
    r.single(
      'vnum_replica_lag_seconds',
      "How old this node's view is: since its file last held everything the authority had sent (as the authority's keepalives tell); grows while the node is behind or cut off. What vnum serve's --stale-after judges.",
      'gauge',
      () => seconds(status()?.lagMs),
    );
    r.single('vnum_replica_behind_bytes', "WAL the authority has sent beyond what this node's file holds.", 'gauge', () => status()?.lagBytes ?? undefined);
    r.single('vnum_replica_last_contact_age_seconds', 'Since anything last came from the authority on the replication link.', 'gauge', () => {
      const at = status()?.lastContactAt;
      return at === null || at === undefined ? undefined : Math.max(0, now() - at) / 1000;
    });
    r.byLabel(
      'vnum_replica_phase',
      "This node's replica phase, 1 for the current one: connecting, copying (building from a snapshot), streaming, waiting (to reconnect), stopped.",
      'gauge',
      'phase',
      () => {
        const s = status();
        return s && Object.fromEntries(REPLICA_PHASES.map((p) => [p, Number(s.phase === p)]));
      },
    );
    r.single('vnum_replica_transactions_applied_total', "Authority transactions applied to this node's file.", 'counter', () => status()?.transactions);
    r.single('vnum_replica_changes_applied_total', 'Row changes applied (inserts, updates, deletes).', 'counter', () => status()?.changes);
    r.single(
      'vnum_replica_transactions_skipped_total',
      'Transactions received again after a reconnect and skipped: the file already held them.',
      'counter',
      () => status()?.skipped,
    );
    r.single('vnum_replica_connects_total', 'Times the replication link was made and streaming began.', 'counter', () => status()?.connects);
    r.single('vnum_replica_rebuilds_total', "Times this node's file was rebuilt from a snapshot (new, wiped, or its slot lost).", 'counter', () => status()?.rebuilds);
    r.single('vnum_replica_report_failures_total', "Reports to the authority's node_report (and reads of the cluster view) that failed.", 'counter', () =>
      this.sources?.reportFailures(),
    );
    r.single(
      'vnum_cluster_view_age_seconds',
      'How old the cluster view below (slots, node reports) is: it is read with each report to the authority; past the view bound (three reports, at least 10 s) the cluster series are left out.',
      'gauge',
      () => {
        const at = this.sources?.cluster()?.at;
        return at === undefined ? undefined : Math.max(0, now() - at) / 1000;
      },
    );

    // The cluster, from the authority: every node's slot and report.
    const perNode = (read: (n: NodeView) => number | null | undefined) =>
      function* () {
        for (const n of nodes()) {
          const value = read(n);
          if (value !== null && value !== undefined) yield { labels: { node: n.node }, value };
        }
      };
    const perSlot = (read: (n: NodeView) => number | null | undefined) =>
      function* () {
        for (const n of nodes()) {
          const value = read(n);
          if (n.slot !== null && value !== null && value !== undefined) yield { labels: { node: n.node, slot: n.slot }, value };
        }
      };
    r.labelled(
      'vnum_cluster_slot_retained_wal_bytes',
      "WAL each vnum_* slot keeps on the authority's disk (pg_current_wal_lsn() - restart_lsn): what a node that stopped consuming costs, until max_slot_wal_keep_size.",
      'gauge',
      ['node', 'slot'],
      perSlot((n) => n.slotBytes),
    );
    r.labelled(
      'vnum_cluster_slot_behind_bytes',
      'WAL written on the authority since the position each slot confirmed.',
      'gauge',
      ['node', 'slot'],
      perSlot((n) => n.behindBytes),
    );
    r.labelled('vnum_cluster_slot_active', 'Whether a consumer (the node) is connected to each vnum_* slot: 1, else 0.', 'gauge', ['node', 'slot'], perSlot((n) => Number(n.active)));
    r.labelled(
      'vnum_cluster_slot_safe_wal_bytes',
      "Bytes each slot may still fall behind before max_slot_wal_keep_size invalidates it (pg_replication_slots.safe_wal_size); absent when the authority sets no limit.",
      'gauge',
      ['node', 'slot'],
      perSlot((n) => n.safeWalBytes),
    );
    r.labelled(
      'vnum_cluster_slot_wal_status',
      "Each slot's wal_status, 1 for the current one: reserved, extended, unreserved (past max_slot_wal_keep_size: about to be lost), lost (invalidated: the node rebuilds from a snapshot).",
      'gauge',
      ['node', 'slot', 'wal_status'],
      function* () {
        for (const n of nodes()) {
          if (n.slot === null || n.walStatus === null) continue;
          for (const w of WAL_STATUSES) yield { labels: { node: n.node, slot: n.slot, wal_status: w }, value: Number(n.walStatus === w) };
        }
      },
    );
    r.labelled(
      'vnum_cluster_node_last_contact_age_seconds',
      "Since the authority last heard each node: its walsender's last reply while connected, else its last report.",
      'gauge',
      ['node'],
      // As old as at the read, plus the view's own age: the age at this scrape.
      function* () {
        const v = view();
        for (const n of v?.nodes ?? []) {
          if (n.lastContactAgoMs !== null) yield { labels: { node: n.node }, value: (n.lastContactAgoMs + Math.max(0, now() - v!.at)) / 1000 };
        }
      },
    );
    r.labelled('vnum_cluster_node_lag_seconds', "How old each node's view was at its last report (that node's own clock).", 'gauge', ['node'], perNode((n) => seconds(n.lagMs)));
    r.labelled(
      'vnum_cluster_node_state',
      'Each node as vnum cluster status judges it, 1 for its state: ok, lost, no-slot, inactive, stale, unreported.',
      'gauge',
      ['node', 'state'],
      function* () {
        for (const n of nodes()) for (const s of NODE_STATES) yield { labels: { node: n.node, state: s }, value: Number(n.state === s) };
      },
    );
    r.withProcessMetrics();
  }

  /** Once the replica and its reporter run (the endpoint binds before either starts). */
  attach(sources: ReplicaSources): void {
    this.sources = sources;
  }
}
