import type { WebhookFigures } from '../webhooks/status.js';
import { MetricsRegistry } from './prom.js';

/**
 * The webhook outbox's series (README, "Monitoring"): exported by `vnum
 * serve --metrics-port` from its store's figures on a single box, and by
 * `vnum webhooks deliver --authority --metrics-port` from the authority's
 * in cluster mode (DelivererMetrics). The same names either way, so the
 * alert rules and dashboards hold for both.
 */
export function addWebhookMetrics(r: MetricsRegistry, webhooks: () => WebhookFigures | undefined, now: () => number): void {
  r.byLabel(
    'vnum_webhook_events',
    'Webhook events not yet delivered, by state: pending (due, the oldest of its session), retrying (of the pending, after a failure), queued (behind an earlier event of their session), blocked (of the queued, behind a parked one), parked.',
    'gauge',
    'state',
    () => webhooks()?.events,
  );
  r.single('vnum_webhook_backlog', 'Webhook events not yet delivered: pending, queued and parked.', 'gauge', () => webhooks()?.backlog);
  r.single('vnum_webhook_oldest_undelivered_age_seconds', 'How long the oldest undelivered webhook event has waited (0: none).', 'gauge', () => {
    const w = webhooks();
    return w && (w.oldestUndeliveredAt === null ? 0 : Math.max(0, (now() - w.oldestUndeliveredAt) / 1000));
  });
  r.single('vnum_webhook_recording', 'Whether facts are recorded as webhook events (vnum webhooks enable): 1, else 0.', 'gauge', () => {
    const w = webhooks();
    return w && Number(w.recording.on);
  });
  r.single('vnum_webhook_deliveries_total', 'Webhook events delivered (a 2xx from the receiver).', 'counter', () => webhooks()?.counters.delivered);
  r.single('vnum_webhook_failed_attempts_total', 'Webhook deliveries that failed and will be retried or parked.', 'counter', () => webhooks()?.counters.failed_attempts);
  r.single('vnum_webhook_parked_total', 'Webhook events parked after their retry window.', 'counter', () => webhooks()?.counters.parked);
  r.single('vnum_webhook_discarded_total', 'Parked webhook events the operator discarded.', 'counter', () => webhooks()?.counters.discarded);
  r.byLabel(
    'vnum_webhook_refusals_not_sent_total',
    'call.refused facts not sent as events, by reason: flood (over the flood bounds), no-session, invalid-caller.',
    'counter',
    'reason',
    () => {
      const c = webhooks()?.counters;
      return c && { flood: c.refusals_dropped, 'no-session': c.refused_no_session, 'invalid-caller': c.refused_invalid_caller };
    },
  );
}

/**
 * What `vnum webhooks deliver --authority --metrics-port` exports: the
 * authority's outbox figures, read in the background (a scrape never
 * queries PostgreSQL), and the process's own.
 */
export class DelivererMetrics {
  readonly registry = new MetricsRegistry();
  private figures: WebhookFigures | undefined;

  constructor(now: () => number = Date.now) {
    addWebhookMetrics(this.registry, () => this.figures, now);
    this.registry.withProcessMetrics();
  }

  /** The figures as last read. */
  update(figures: WebhookFigures): void {
    this.figures = figures;
  }
}
