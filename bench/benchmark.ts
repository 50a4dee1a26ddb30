/**
 * What every benchmark module exports. A benchmark is one file in bench/
 * (`bench/<name>.ts`) listed in bench/registry.ts; the runner runs it, prints
 * its figures and appends them to the report. Machines here are shared and
 * noisy, so every figure stands beside a baseline measured in the same run.
 */
export interface Benchmark {
  /** Selects it on the command line: `npm run bench -- <name>`. */
  name: string;
  description: string;
  run(context: BenchContext): Promise<BenchResult>;
}

export interface BenchContext {
  /** Tiny sizes, seconds in all: keeps the benchmark working in CI. Its figures mean nothing. */
  smoke: boolean;
  /** A fresh directory for this benchmark's files, removed afterwards. */
  workDir: string;
  /** Progress for the operator (stderr), not part of the report. */
  log(line: string): void;
}

export interface BenchResult {
  figures: Figure[];
  /** Versions of outside software the figures depend on (the real-Asterisk benchmark sets `asterisk`). */
  versions?: { asterisk?: string };
  /** Set when the benchmark cannot run here (e.g. it needs root): why, in one line. No figures then. */
  skipped?: string;
}

export interface Figure {
  /** What was measured, e.g. "creates/s at 1,000,000 sessions". */
  name: string;
  /** Unit of `value` and of the baseline's value: "/s", "µs", "MB", "numbers". */
  unit: string;
  value: number;
  /** The same kind of figure for the thing vnum is compared with, measured in the same run. */
  baseline: { name: string; value: number };
  /** The target for this figure, when it has one. */
  target?: { text: string; met: boolean };
  /** The workload size, e.g. "1,000,000 sessions, 1,000 numbers". */
  size: string;
}

/** Percentile of an ascending array (nearest rank). */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

/** The usual percentiles and the maximum of sorted latencies. */
export function latencySummary(sorted: ArrayLike<number>): { p50: number; p90: number; p99: number; p999: number; max: number } {
  return {
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    p999: percentile(sorted, 99.9),
    max: sorted.length > 0 ? sorted[sorted.length - 1]! : Number.NaN,
  };
}

/** How long one call took, in µs. */
export function elapsedMicros(call: () => unknown): number {
  const started = process.hrtime.bigint();
  call();
  return Number(process.hrtime.bigint() - started) / 1000;
}

export function formatCount(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}
