/**
 * What `vnum serve` exports to Prometheus. The call path only adds to plain
 * numbers (a status's count, a histogram slot); everything else is read when
 * Prometheus scrapes: the FastAGI server's own counts, AMI's state, and the
 * store's figures from ./cached-figures.ts. No label ever holds a number,
 * a caller or a session: statuses, reasons and states only.
 */
import type { FastAgiCounts } from '../../agi/server.js';
import type { PushOutcome } from '../calls/slide-queue.js';
import type { Freshness } from '../replica/freshness.js';
import { ROUTE_STATUSES, type RouteStatus } from '../routing/decide.js';
import type { CachedFigures } from './cached-figures.js';
import { DECISION_BUCKETS, Histogram, MetricsRegistry } from './prom.js';
import { addWebhookMetrics } from './webhooks.js';

/** What the router's metrics read at scrape time. */
export interface RouterSources {
  agi: { connections(): number; counts(): FastAgiCounts; readonly maxConnections: number };
  /** Whether AMI is logged in; absent when AMI is not configured (the metric is then left out). */
  amiConnected?: () => boolean;
  figures: CachedFigures;
  /** A cluster node's sliding pushes to the authority, by outcome (src/calls/sliding.ts). */
  slidingPushes?: () => Record<PushOutcome, number>;
  /** A cluster node's call log shipped to the authority (src/calls/shipping.ts); absent without --authority. */
  callShipping?: () => { shipped: number; failures: number; backlog: number | null };
  /** The freshness gate's judgement (cluster node); the freshness metrics are left out on a single box. */
  freshness?: () => Freshness;
  now?: () => number;
}

export class RouterMetrics {
  /** Calls answered, by VNUM_STATUS. */
  readonly routed: Record<RouteStatus, number> = Object.fromEntries(ROUTE_STATUSES.map((s) => [s, 0])) as Record<RouteStatus, number>;
  /** The router's decision for each call, store lookup included, in seconds. */
  readonly decisions = new Histogram(DECISION_BUCKETS);
  private sources: RouterSources | undefined;
  readonly registry = new MetricsRegistry();

  constructor() {
    const r = this.registry;
    const from = <T>(read: (s: RouterSources) => T): (() => T | undefined) => () => (this.sources ? read(this.sources) : undefined);
    r.byLabel('vnum_calls_routed_total', 'Calls the router answered, by the VNUM_STATUS it gave the dialplan.', 'counter', 'status', () => this.routed);
    r.histogram('vnum_route_decision_seconds', "The router's decision for one call, store lookup included.", this.decisions);
    r.single('vnum_agi_connections_open', 'FastAGI connections open now.', 'gauge', from((s) => s.agi.connections()));
    r.single('vnum_agi_connections_max', 'The FastAGI connection cap (--max-connections).', 'gauge', from((s) => s.agi.maxConnections));
    r.byLabel(
      'vnum_agi_connections_refused_total',
      'FastAGI connections destroyed before a byte was read, by reason: not-allowed (allow-list), max-connections, closing, setup-failed.',
      'counter',
      'reason',
      from((s) => s.agi.counts().refused),
    );
    r.byLabel(
      'vnum_agi_connections_ended_total',
      'FastAGI connections served, by how they ended: answered, probe (vnum health), deadline, protocol, peer-closed, evicted, shutdown, internal.',
      'counter',
      'outcome',
      from((s) => s.agi.counts().ended),
    );
    r.single(
      'vnum_ami_connected',
      'Whether vnum serve is logged in to AMI (1) or not (0); absent when AMI is not configured.',
      'gauge',
      from((s) => (s.amiConnected ? Number(s.amiConnected()) : undefined)),
    );
    // A cluster node's freshness gate: left out on a single box (no replica process ever reported into the file, keep-routing).
    const node = (): Freshness | undefined => {
      const f = this.sources?.freshness?.();
      return f && (f.replica || f.stale) ? f : undefined;
    };
    r.single('vnum_freshness_stale', "Cluster node: whether its replica is older than --stale-after (1) or fresh (0).", 'gauge', () => {
      const f = node();
      return f && Number(f.stale);
    });
    r.single(
      'vnum_freshness_failing_closed',
      'Cluster node: 1 while it refuses every call because its replica is stale and --when-stale is fail-closed, else 0.',
      'gauge',
      () => {
        const f = node();
        return f && Number(f.refusal !== undefined);
      },
    );
    r.single("vnum_freshness_age_seconds", "Cluster node: how old its replica's view is, as vnum serve judges it (absent until it was first fresh).", 'gauge', () => {
      const f = node();
      return f?.ageMs === null || f?.ageMs === undefined ? undefined : f.ageMs / 1000;
    });
    const figures = from((s) => s.figures.latest());
    r.byLabel('vnum_sessions', 'Sessions by state: active, grace (released, still routing), ended.', 'gauge', 'state', () => figures()?.sessions);
    r.byLabel('vnum_pool_numbers', 'Pool numbers by state: available, reserved, retired.', 'gauge', 'state', () => {
      const f = figures();
      return f && { available: f.pool.available, reserved: f.pool.reserved, retired: f.pool.retired };
    });
    r.single('vnum_party_live_sessions_max', 'The most live sessions any one party is in.', 'gauge', () => figures()?.busiestPartyLive);
    r.single(
      'vnum_pool_headroom',
      "Available pool numbers minus the busiest party's live sessions: at 0 or below that party's next session may be refused (VNUM_POOL_EXHAUSTED).",
      'gauge',
      () => figures()?.headroom,
    );
    r.single(
      'vnum_store_figures_age_seconds',
      'How old the store figures (sessions, pool, headroom, webhooks) are: read in the background at most every --metrics-store-age.',
      'gauge',
      () => {
        const f = figures();
        return f && ((this.sources?.now ?? Date.now)() - f.at) / 1000;
      },
    );
    r.single('vnum_store_figures_read_seconds', 'How long the last read of the store figures took.', 'gauge', () => {
      const f = figures();
      return f && f.tookMs / 1000;
    });
    addWebhookMetrics(r, () => figures()?.webhooks, () => (this.sources?.now ?? Date.now)());
    r.byLabel(
      'vnum_sliding_pushes_total',
      "A cluster node's sliding-session pushes to the authority, by outcome: pushed (the authority moved the end), unchanged (its rule moved nothing: released, ended, not due), failed (dropped after bounded retries, or the queue was full), skipped (a replica file and no --authority). Always 0 on a single box, whose pushes are written into its file.",
      'counter',
      'outcome',
      from((s) => s.slidingPushes?.()),
    );
    r.single(
      'vnum_call_log_shipped_total',
      "Cluster node (vnum serve --authority): call-log changes the authority committed (a call's row each time it changed). Absent without --authority.",
      'counter',
      from((s) => s.callShipping?.().shipped),
    );
    r.single(
      'vnum_call_log_ship_failures_total',
      'Cluster node: shipments of the call log the authority did not take (tried again; nothing is dropped). Absent without --authority.',
      'counter',
      from((s) => s.callShipping?.().failures),
    );
    r.single(
      'vnum_call_log_ship_backlog',
      "Cluster node: call-log changes in this node's file not yet shipped to the authority. Absent without --authority, and until first read.",
      'gauge',
      from((s) => s.callShipping?.().backlog ?? undefined),
    );
    r.single('vnum_store_figures_failures_total', 'Reads of the store figures that failed.', 'counter', from((s) => s.figures.failures));
    r.withProcessMetrics();
  }

  /** Once the parts exist (the FastAGI server is listening). */
  attach(sources: RouterSources): void {
    this.sources = sources;
  }

  /** One answer written to the dialplan. */
  answered(status: RouteStatus): void {
    this.routed[status]++;
  }

  /** Times each decision `route` makes. */
  timed<C, D>(route: (call: C) => D): (call: C) => D {
    return (call) => {
      const started = performance.now();
      const decision = route(call);
      this.decisions.observe((performance.now() - started) / 1000);
      return decision;
    };
  }
}
