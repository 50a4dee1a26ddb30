/**
 * The one module that imports prom-client: a registry of metrics whose values
 * are read when Prometheus scrapes, never pushed from the call path.
 *
 * What the router counts on its hot path is kept in plain numbers (an object's
 * fields, a Float64Array of buckets) by the code that owns it; each metric
 * here is a read of those numbers at scrape time. prom-client formats the
 * exposition, escapes labels and adds Node's process metrics. Its own
 * Histogram is not used on the call path: observe() hashes a label object and
 * allocates a closure per call, a measurable share of a decision that takes
 * a few microseconds (docs/operator-guide.md, "Monitoring").
 */
import { collectDefaultMetrics, Registry } from 'prom-client';

export type MetricType = 'counter' | 'gauge' | 'histogram';

interface Sample {
  metricName?: string;
  labels?: Record<string, string>;
  value: number;
}

/** Prometheus's rules for a metric or label name, and ours: vnum_ metrics, counters in _total. */
const METRIC_NAME = /^vnum_[a-z0-9_]+$/;
const LABEL_NAME = /^[a-z][a-z0-9_]*$/;

function checkName(name: string, type: MetricType): void {
  if (!METRIC_NAME.test(name)) throw new TypeError(`metric name ${name} must match ${METRIC_NAME}`);
  if ((type === 'counter') !== name.endsWith('_total')) throw new TypeError(`metric ${name}: counters, and only counters, end in _total`);
}

/**
 * Upper bounds in seconds, ascending, for a histogram of sub-millisecond
 * events with a tail: 10 µs to 1 s.
 */
export const DECISION_BUCKETS: readonly number[] = Object.freeze([
  0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.25, 1,
]);

/**
 * A histogram kept in a Float64Array: observe() is a short loop over the
 * bounds and two additions, nothing allocated.
 */
export class Histogram {
  readonly bounds: Float64Array;
  /** counts[i]: observations <= bounds[i] and > bounds[i - 1]; the last slot is above every bound. */
  readonly counts: Float64Array;
  sum = 0;

  constructor(bounds: readonly number[]) {
    for (let i = 1; i < bounds.length; i++) {
      if (!(bounds[i]! > bounds[i - 1]!)) throw new TypeError('histogram bounds must ascend');
    }
    this.bounds = Float64Array.from(bounds);
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(seconds: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && seconds > bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += seconds;
  }

  /** Cumulative buckets as Prometheus reads them, then _sum and _count. */
  samples(name: string): Sample[] {
    const samples: Sample[] = [];
    let cumulative = 0;
    for (let i = 0; i < this.bounds.length; i++) {
      cumulative += this.counts[i]!;
      samples.push({ metricName: `${name}_bucket`, labels: { le: String(this.bounds[i]) }, value: cumulative });
    }
    cumulative += this.counts[this.bounds.length]!;
    samples.push({ metricName: `${name}_bucket`, labels: { le: '+Inf' }, value: cumulative });
    samples.push({ metricName: `${name}_sum`, value: this.sum });
    samples.push({ metricName: `${name}_count`, value: cumulative });
    return samples;
  }
}

/**
 * A metric's values by one label, read at scrape time; undefined leaves the
 * metric out of that scrape (nothing known yet, or not configured).
 */
export type ByLabel = () => Readonly<Record<string, number>> | undefined;

export interface MetricSpec {
  name: string;
  help: string;
  type: MetricType;
}

export class MetricsRegistry {
  private readonly registry = new Registry();
  /** Every metric this registry exports, for the tests that hold the alert rules and the dashboard to them. */
  readonly specs: MetricSpec[] = [];

  /** Node's process metrics (CPU, memory, event loop lag, handles), under their usual names. */
  withProcessMetrics(labels?: Record<string, string>): this {
    if (labels) this.registry.setDefaultLabels(labels);
    collectDefaultMetrics({ register: this.registry });
    return this;
  }

  private add(spec: MetricSpec, samples: () => Sample[] | undefined): void {
    checkName(spec.name, spec.type);
    this.specs.push(spec);
    this.registry.registerMetric({
      name: spec.name,
      get: () => ({ name: spec.name, help: spec.help, type: spec.type, values: samples() ?? [], aggregator: 'sum' }),
    } as unknown as Parameters<Registry['registerMetric']>[0]);
  }

  /** One value (undefined: left out of this scrape). */
  single(name: string, help: string, type: Exclude<MetricType, 'histogram'>, read: () => number | undefined): void {
    this.add({ name, help, type }, () => {
      const value = read();
      return value === undefined ? undefined : [{ value }];
    });
  }

  /** Values by one label; every label value the reader returns is a sample, zeros included. */
  byLabel(name: string, help: string, type: Exclude<MetricType, 'histogram'>, label: string, read: ByLabel): void {
    if (!LABEL_NAME.test(label)) throw new TypeError(`label name ${label} must match ${LABEL_NAME}`);
    this.add({ name, help, type }, () => {
      const values = read();
      return values === undefined ? undefined : Object.entries(values).map(([key, value]) => ({ labels: { [label]: key }, value }));
    });
  }

  /** Values by several labels: each entry's labels, and its value. */
  labelled(
    name: string,
    help: string,
    type: Exclude<MetricType, 'histogram'>,
    labels: readonly string[],
    read: () => Iterable<{ labels: Readonly<Record<string, string>>; value: number }>,
  ): void {
    for (const label of labels) if (!LABEL_NAME.test(label)) throw new TypeError(`label name ${label} must match ${LABEL_NAME}`);
    this.add({ name, help, type }, () => [...read()].map(({ labels: l, value }) => ({ labels: { ...l }, value })));
  }

  histogram(name: string, help: string, histogram: Histogram): void {
    this.add({ name, help, type: 'histogram' }, () => histogram.samples(name));
  }

  /** The exposition text, and its content type. */
  async exposition(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
