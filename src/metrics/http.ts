/**
 * What the HTTP API exports: requests by route template, method and status,
 * and how long they took. The route is the template the request matched
 * (`/v1/sessions/:id`), never the URL: a path or a query may carry a real
 * number or an order id, and every distinct URL would be a new series.
 * Requests that matched no route are counted under `unmatched`.
 */
import { Histogram, MetricsRegistry } from './prom.js';

/** From 1 ms to 10 s: an API request reads or writes the store, unlike a routing decision. */
const REQUEST_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];

interface RequestCount {
  labels: { route: string; method: string; status: string };
  value: number;
}

/** At most this many (route, method, status) series: the routes are fixed, but a status is whatever a hook answers. */
const MAX_SERIES = 1_000;

export class HttpMetrics {
  readonly registry = new MetricsRegistry();
  private readonly requests = new Map<string, RequestCount>();
  readonly durations = new Histogram(REQUEST_BUCKETS);

  constructor(prefix: string, what: string) {
    this.registry.labelled(
      `${prefix}_requests_total`,
      `${what} requests answered, by route template (unmatched: no route), method and status.`,
      'counter',
      ['route', 'method', 'status'],
      () => this.requests.values(),
    );
    this.registry.histogram(`${prefix}_request_duration_seconds`, `${what} requests, from the request to the response sent.`, this.durations);
    this.registry.withProcessMetrics();
  }

  /** One answered request: `route` is the matched template, undefined when none matched. */
  observe(method: string, route: string | undefined, status: number, seconds: number): void {
    const labels = { route: route ?? 'unmatched', method: /^[A-Z]{1,10}$/.test(method) ? method : 'OTHER', status: String(status) };
    this.durations.observe(seconds);
    const key = `${labels.method} ${labels.route} ${labels.status}`;
    let count = this.requests.get(key);
    if (count === undefined) {
      if (this.requests.size >= MAX_SERIES) return;
      count = { labels, value: 0 };
      this.requests.set(key, count);
    }
    count.value++;
  }
}
