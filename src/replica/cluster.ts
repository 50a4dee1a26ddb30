import type pg from 'pg';

/**
 * The cluster as the authority sees it, for `vnum cluster status`: every
 * node's slot from pg_replication_slots (with its walsender from
 * pg_stat_replication while connected) beside the node's own report
 * (node_report, report.ts). Times are the authority's clock.
 */

export interface NodeView {
  node: string;
  slot: string | null;
  /** ok, or what is wrong: lost (slot invalidated), no-slot, inactive (no consumer), stale, unreported. */
  state: 'ok' | 'lost' | 'no-slot' | 'inactive' | 'stale' | 'unreported';
  /** How old the node's view was at its last report (ms, the node's own clock). */
  lagMs: number | null;
  /** WAL written since the position the node confirmed (bytes). */
  behindBytes: number | null;
  /** WAL the slot keeps on the authority's disk (bytes): what a dead node costs. */
  slotBytes: number | null;
  /** reserved, extended, unreserved (past max_slot_wal_keep_size, about to be lost) or lost. */
  walStatus: string | null;
  /** Bytes left before max_slot_wal_keep_size invalidates the slot (null: unlimited). */
  safeWalBytes: number | null;
  active: boolean;
  clientAddress: string | null;
  /** Ms since the authority last heard the node: its walsender's last reply while connected, else its last report. */
  lastContactAgoMs: number | null;
  reportedAgoMs: number | null;
  phase: string | null;
  host: string | null;
  version: string | null;
  lastError: string | null;
  /** Call-log changes the node had not shipped at its last shipment (vnum serve --authority); null: it never shipped. */
  callLogBacklog: number | null;
  /** Ms since the node's last shipment of its call log reached the authority. */
  callLogShippedAgoMs: number | null;
}

interface SlotRow {
  slot_name: string;
  active: boolean;
  wal_status: string | null;
  safe_wal_size: string | null;
  slot_bytes: string | null;
  behind_bytes: string | null;
  client_addr: string | null;
  reply_ago_ms: string | null;
}

interface ReportRow {
  node: string;
  host: string;
  version: string;
  phase: string;
  lag_ms: string | null;
  last_error: string | null;
  reported_ago_ms: string;
}

/** How old a node's report or view may be before cluster status (and /metrics' node state) calls it stale, by default. */
export const NODE_STALE_AFTER_MS = 10_000;

const num = (v: string | null): number | null => (v === null ? null : Number(v));

export async function clusterStatus(client: pg.Client, staleAfterMs: number): Promise<NodeView[]> {
  const slots = await client.query<SlotRow>(
    `SELECT s.slot_name, s.active, s.wal_status, s.safe_wal_size::text,
            pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::bigint::text AS slot_bytes,
            pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint::text AS behind_bytes,
            host(r.client_addr) AS client_addr,
            (extract(epoch FROM clock_timestamp() - r.reply_time) * 1000)::bigint::text AS reply_ago_ms
       FROM pg_replication_slots s LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
      WHERE s.slot_type = 'logical' AND s.slot_name LIKE 'vnum\\_%' AND s.database = current_database()`,
  );
  const reports = await client.query<ReportRow>(
    `SELECT node, host, version, phase, lag_ms::text, last_error,
            ((extract(epoch FROM clock_timestamp()) * 1000)::bigint - reported_at)::text AS reported_ago_ms
       FROM node_report`,
  );
  // Each node's call-log shipping (PostgreSQL migration 8): an authority without the table shows none.
  const shipping = await client
    .query<{ node: string; backlog: string; shipped_ago_ms: string }>(
      `SELECT node, backlog::text, ((extract(epoch FROM clock_timestamp()) * 1000)::bigint - shipped_at)::text AS shipped_ago_ms FROM node_shipping`,
    )
    .then((r) => new Map(r.rows.map((row) => [row.node, row])))
    .catch(() => new Map<string, { backlog: string; shipped_ago_ms: string }>());
  const bySlot = new Map(slots.rows.map((s) => [s.slot_name, s]));
  const nodes = new Map<string, ReportRow | undefined>();
  for (const r of reports.rows) nodes.set(r.node, r);
  for (const s of slots.rows) if (!nodes.has(s.slot_name.slice('vnum_'.length))) nodes.set(s.slot_name.slice('vnum_'.length), undefined);

  return [...nodes.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([node, report]) => {
      const slot = bySlot.get(`vnum_${node}`);
      const reportedAgoMs = report ? Math.max(0, Number(report.reported_ago_ms)) : null;
      const lagMs = report ? num(report.lag_ms) : null;
      const replyAgo = slot?.active ? num(slot.reply_ago_ms) : null;
      const view: NodeView = {
        node,
        slot: slot ? slot.slot_name : null,
        state: 'ok',
        lagMs,
        behindBytes: slot ? num(slot.behind_bytes) : null,
        slotBytes: slot ? num(slot.slot_bytes) : null,
        walStatus: slot?.wal_status ?? null,
        safeWalBytes: slot ? num(slot.safe_wal_size) : null,
        active: slot?.active ?? false,
        clientAddress: slot?.client_addr ?? null,
        lastContactAgoMs: replyAgo !== null ? Math.max(0, replyAgo) : reportedAgoMs,
        reportedAgoMs,
        phase: report?.phase ?? null,
        host: report?.host ?? null,
        version: report?.version ?? null,
        lastError: report?.last_error ?? null,
        callLogBacklog: shipping.has(node) ? Number(shipping.get(node)!.backlog) : null,
        callLogShippedAgoMs: shipping.has(node) ? Math.max(0, Number(shipping.get(node)!.shipped_ago_ms)) : null,
      };
      view.state = nodeState(view, staleAfterMs);
      return view;
    });
}

/** The worst thing about a node, first match wins. */
export function nodeState(v: Omit<NodeView, 'state'>, staleAfterMs: number): NodeView['state'] {
  if (v.slot === null) return 'no-slot';
  if (v.walStatus === 'lost') return 'lost';
  if (!v.active) return 'inactive';
  if (v.reportedAgoMs === null || v.reportedAgoMs > staleAfterMs) return 'unreported';
  if (v.lagMs === null || v.lagMs > staleAfterMs || v.phase !== 'streaming') return 'stale';
  return 'ok';
}
